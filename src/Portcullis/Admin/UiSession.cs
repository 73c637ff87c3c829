using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;

namespace Portcullis.Admin;

/// <summary>
/// The dashboard's sign-in cookie. A browser cannot send a bearer header when it navigates, so
/// <c>POST /ui/login</c> trades an admin token for this cookie: the token's name, a digest of the token's
/// hash (rotating or removing the token ends its sessions) and an expiry, encrypted and signed with ASP.NET
/// Core Data Protection. It is read-only by construction: accepted only for GET/HEAD of the dashboard and
/// the analytics API (never for POST actions, so a cross-site form can do nothing with it), and its caller
/// has the <c>read</c> scope whatever the token's scope.
/// </summary>
internal sealed class UiSession
{
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(8);

    /// <summary>Cookie names: the __Secure- prefix makes browsers refuse it over plain HTTP.</summary>
    public const string CookieName = "portcullis-ui";
    public const string SecureCookieName = "__Secure-portcullis-ui";

    // One cookie per path, so the browser sends it nowhere else on this host (a route listener on the same
    // host name never sees it unless its paths start with these).
    private static readonly string[] CookiePaths = ["/ui", "/admin/analytics", "/admin/advice"];

    private const string Version = "1";

    private readonly IDataProtector _protector;
    private readonly TimeProvider _time;

    public UiSession(TimeProvider time, ILoggerFactory loggers)
    {
        _time = time;
        // Keys live in memory: a restart signs every dashboard user out, which is fine for an admin page of
        // one instance, and no key ring has to be stored or shared.
        _protector = new EphemeralDataProtectionProvider(loggers).CreateProtector("Portcullis.Admin.UiSession.v1");
    }

    /// <summary>Whether the cookie may authenticate this request: GET/HEAD of /ui/… or /admin/analytics/….</summary>
    public static bool Accepts(HttpRequest request)
    {
        if (!HttpMethods.IsGet(request.Method) && !HttpMethods.IsHead(request.Method)) return false;
        var path = request.Path.Value ?? "";
        // Reads only: the advisor's findings are listed with the cookie; acknowledging or muting needs an admin token.
        return path.StartsWith("/ui/", StringComparison.Ordinal) || path.StartsWith("/admin/analytics/", StringComparison.Ordinal)
            || path == "/admin/advice" || path.StartsWith("/admin/advice/", StringComparison.Ordinal);
    }

    /// <summary>Sets the cookie for <paramref name="token"/>; returns when it expires.</summary>
    public DateTimeOffset SignIn(HttpContext context, AdminToken token)
    {
        var expires = _time.GetUtcNow() + Lifetime;
        var payload = string.Join('\n', Version, expires.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture), Digest(token), token.Name);
        var value = _protector.Protect(payload);
        foreach (var path in CookiePaths) context.Response.Cookies.Append(Name(context), value, Options(context, path, expires));
        return expires;
    }

    public static void SignOut(HttpContext context)
    {
        foreach (var path in CookiePaths) context.Response.Cookies.Delete(Name(context), Options(context, path, null));
    }

    /// <summary>
    /// The read-scope caller of a valid cookie: not expired, and its token still configured with the same
    /// secret. Null without a cookie or with one that fails any check (tampered, from another process, old).
    /// </summary>
    public AdminCaller? Read(HttpContext context, CompiledAdminAuth auth)
    {
        var value = context.Request.Cookies[Name(context)];
        if (string.IsNullOrEmpty(value) || value.Length > 4096) return null;
        string payload;
        try
        {
            payload = _protector.Unprotect(value);
        }
        catch (CryptographicException)
        {
            return null;
        }

        var parts = payload.Split('\n', 4);
        if (parts.Length != 4 || parts[0] != Version || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var expires)) return null;
        if (_time.GetUtcNow().ToUnixTimeSeconds() >= expires) return null;
        foreach (var token in auth.Tokens)
        {
            if (token.Name == parts[3] && CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(parts[2]), Encoding.ASCII.GetBytes(Digest(token))))
            {
                return new AdminCaller("ui:" + token.Name, AdminScope.Read);
            }
        }

        return null;
    }

    private static string Name(HttpContext context) => context.Request.IsHttps ? SecureCookieName : CookieName;

    private static CookieOptions Options(HttpContext context, string path, DateTimeOffset? expires) => new()
    {
        HttpOnly = true,
        SameSite = SameSiteMode.Strict,
        Secure = context.Request.IsHttps,
        Path = path,
        Expires = expires,
        IsEssential = true,
    };

    // Not the token's hash itself: the cookie only needs to tell whether the token changed.
    private static string Digest(AdminToken token) =>
        Convert.ToHexStringLower(SHA256.HashData([.. "portcullis-ui:"u8, .. token.Hash]).AsSpan(0, 16));
}
