using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;
using Portcullis.Configuration;

namespace Portcullis.Routing;

/// <summary>
/// One header of the transforms.securityHeaders preset (Helmet's and OWASP's usual set), added to an upstream answer
/// that lacks it. Values are fixed strings made once, so adding one allocates nothing.
/// </summary>
internal sealed class SecurityHeader(string name, string value, SecurityHeader.Condition condition = SecurityHeader.Condition.Always)
{
    public enum Condition
    {
        Always,
        /// <summary>Only over HTTPS: a browser ignores HSTS on plain HTTP (RFC 6797 §7.2) and it would only mislead.</summary>
        HttpsOnly,
        /// <summary>Not when a Content-Security-Policy already says frame-ancestors (which supersedes X-Frame-Options).</summary>
        NoFrameAncestors,
    }

    public string Name { get; } = name;

    public StringValues Value { get; } = new(value);

    public bool AppliesTo(bool https, IHeaderDictionary headers)
    {
        if (headers.ContainsKey(Name)) return false; // the upstream's (or the route's response.set) wins
        return condition switch
        {
            Condition.HttpsOnly => https,
            Condition.NoFrameAncestors => !HasFrameAncestors(headers.ContentSecurityPolicy),
            _ => true,
        };
    }

    // A loop over the struct enumerator: LINQ's Any would box the StringValues on every answer.
    private static bool HasFrameAncestors(StringValues policies)
    {
        foreach (var policy in policies)
        {
            if (policy?.Contains("frame-ancestors", StringComparison.OrdinalIgnoreCase) == true) return true;
        }

        return false;
    }

    private static readonly SecurityHeader[] Default =
    [
        new(HeaderNames.XContentTypeOptions, "nosniff"),
        new("Referrer-Policy", "strict-origin-when-cross-origin"), // not in HeaderNames
        new(HeaderNames.XFrameOptions, "SAMEORIGIN", Condition.NoFrameAncestors),
        new(HeaderNames.StrictTransportSecurity, "max-age=31536000; includeSubDomains", Condition.HttpsOnly),
    ];

    /// <summary>The preset's headers for a route, leaving out any the route removes or sets itself.</summary>
    public static SecurityHeader[] Preset(SecurityHeadersPreset preset, ResponseTransformOptions response)
    {
        if (preset == SecurityHeadersPreset.Off) return [];
        return [.. Default.Where(h => !response.Remove.Contains(h.Name, StringComparer.OrdinalIgnoreCase)
            && !response.Set.Keys.Contains(h.Name, StringComparer.OrdinalIgnoreCase))];
    }
}
