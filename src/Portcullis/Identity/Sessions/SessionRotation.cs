using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Portcullis.Identity.Sessions;

/// <summary>
/// Session fixation defence: every successful sign-in gets a new session id. The cookie handler would
/// otherwise <em>renew</em> the session named by a cookie already in the request (its RenewAsync under the
/// old key), so whoever held that cookie would become the user who just signed in. Before the sign-in, the
/// old session is removed from the store and its cookie taken out of the request, so the handler stores the
/// ticket under a fresh id and the old cookie resolves to nothing.
/// </summary>
internal static class SessionRotation
{
    // The claim CookieAuthenticationHandler puts in the cookie to name the store key (a private constant
    // of the framework, stable since ASP.NET Core 2.0; SessionHardeningStoreTests fail if it ever changes).
    private const string SessionIdClaim = "Microsoft.AspNetCore.Authentication.Cookies-SessionId";

    /// <summary>Call before the OIDC handler signs in (OnTicketReceived), while the cookie handler has not read the request yet.</summary>
    public static async Task DropPreviousAsync(HttpContext context, CompiledSessionProvider provider, ITicketStore? store)
    {
        var options = context.RequestServices.GetRequiredService<IOptionsMonitor<CookieAuthenticationOptions>>().Get(provider.CookieScheme);
        var name = options.Cookie.Name!;
        var value = options.CookieManager.GetRequestCookie(context, name);
        if (string.IsNullOrEmpty(value)) return;

        // A cookie that does not unprotect (tampered, from a key ring we no longer have) names no session.
        var id = options.TicketDataFormat.Unprotect(value)?.Principal.FindFirst(SessionIdClaim)?.Value;
        if (id is not null && store is not null) await store.RemoveAsync(id);
        RemoveRequestCookie(context.Request, name);
    }

    // Drops NAME and its chunks (NAME, NAMEC1, NAMEC2, ... of the chunking cookie manager) from the Cookie
    // header; Request.Cookies re-parses a changed header, so the cookie handler no longer sees them.
    private static void RemoveRequestCookie(HttpRequest request, string name)
    {
        var kept = new List<string>();
        foreach (var header in request.Headers.Cookie)
        {
            if (header is null) continue;
            foreach (var part in header.Split(';'))
            {
                var pair = part.Trim();
                if (pair.Length == 0) continue;
                var cookie = pair.Split('=', 2)[0].Trim();
                if (cookie == name || (cookie.StartsWith(name + "C", StringComparison.Ordinal) && cookie.Length > name.Length + 1 && cookie[(name.Length + 1)..].All(char.IsAsciiDigit))) continue;
                kept.Add(pair);
            }
        }

        if (kept.Count == 0) request.Headers.Remove("Cookie");
        else request.Headers.Cookie = new StringValues(string.Join("; ", kept));
    }
}
