using System.Text;
using System.Text.RegularExpressions;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// What the unusual-routes-and-callers checks know about paths: the well-known probe paths scanners try, the shape
/// of a path (its id segments replaced by {id}), which routes are sensitive, and the literal prefix of a route.
/// </summary>
internal static partial class AnomalyPaths
{
    /// <summary>
    /// Paths vulnerability scanners probe on any web server (secrets, VCS folders, admin panels of common products,
    /// framework debug endpoints). Matched case-insensitively on the whole first segment(s) or the file name.
    /// A short list on purpose: each entry is something no API gateway's clients call by accident.
    /// </summary>
    public static readonly string[] ProbePrefixes =
    [
        "/.env", "/.git", "/.svn", "/.hg", "/.aws", "/.ssh", "/.DS_Store", "/.htaccess", "/.htpasswd", "/.vscode", "/.idea",
        "/wp-admin", "/wp-login.php", "/wp-content", "/wp-includes", "/xmlrpc.php", "/wordpress",
        "/phpmyadmin", "/pma", "/myadmin", "/phpinfo.php", "/info.php", "/adminer.php", "/administrator",
        "/cgi-bin", "/actuator", "/server-status", "/console", "/manager/html", "/solr", "/jenkins", "/HNAP1",
        "/vendor/phpunit", "/boaform", "/owa", "/config.json", "/backup", "/db.sql", "/dump.sql", "/.well-known/security.txt.bak",
    ];

    /// <summary>File endings a probe for leaked files or server-side scripts uses on a JSON API gateway.</summary>
    private static readonly string[] ProbeEndings = [".php", ".asp", ".aspx", ".jsp", ".cgi", ".sql", ".bak", ".old", ".swp", "/.env", "/.git/config"];

    /// <summary>The probe family of a path ("/.env", "/wp-admin", "*.php", …) or null when it is not a probe.</summary>
    public static string? Probe(string path)
    {
        foreach (var prefix in ProbePrefixes)
        {
            if (path.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)
                && (path.Length == prefix.Length || path[prefix.Length] is '/' or '.' or '?' || prefix.EndsWith(".php", StringComparison.Ordinal)))
            {
                return prefix;
            }
        }

        foreach (var ending in ProbeEndings)
        {
            if (path.EndsWith(ending, StringComparison.OrdinalIgnoreCase)) return "*" + ending;
        }

        return null;
    }

    /// <summary>
    /// The path with its id-like segments replaced by {id}: numbers, UUIDs, long hex strings and long opaque tokens
    /// with digits. /orders/123/items/9 and /orders/77/items/1 have the shape /orders/{id}/items/{id}.
    /// </summary>
    public static string Shape(string path)
    {
        var text = new StringBuilder(path.Length);
        foreach (var segment in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            text.Append('/').Append(IsId(segment) ? "{id}" : segment.ToLowerInvariant());
        }

        return text.Length == 0 ? "/" : text.ToString();
    }

    public static bool IsId(string segment) =>
        segment.Length > 0 && (segment.All(char.IsAsciiDigit) || Uuid().IsMatch(segment) || (segment.Length >= 8 && segment.All(char.IsAsciiHexDigit))
            || (segment.Length >= 16 && segment.Any(char.IsAsciiDigit) && segment.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_')));

    /// <summary>Whether the route's template has a parameter (a value callers vary: ids).</summary>
    public static bool HasParameter(string? template) => template is not null && template.Contains('{', StringComparison.Ordinal);

    /// <summary>The literal start of a route's path (/orders of /orders/{id}, or its pathPrefix); null for "/" or none.</summary>
    public static string? LiteralPrefix(RouteOptions route)
    {
        var path = route.Match.PathPrefix ?? route.Match.Path;
        if (string.IsNullOrEmpty(path)) return null;
        var brace = path.IndexOf('{', StringComparison.Ordinal);
        var literal = (brace >= 0 ? path[..brace] : path).TrimEnd('/');
        return literal.Length == 0 ? null : literal;
    }

    /// <summary>True when <paramref name="path"/> is <paramref name="prefix"/> or below it (on a segment boundary).</summary>
    public static bool IsUnder(string path, string prefix) =>
        path.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && (path.Length == prefix.Length || path[prefix.Length] == '/');

    /// <summary>
    /// Why a route is sensitive (null when it is not): it restricts callers (scopes, groups, consumers, claim rules),
    /// or its name or path looks administrative. A consumer calling such a route for the first time is worth a look.
    /// </summary>
    public static string? Sensitive(RouteOptions route)
    {
        if (route.Auth is { } auth)
        {
            if (auth.Scopes.Count > 0) return "it requires scopes (" + string.Join(", ", auth.Scopes) + ")";
            if (auth.Groups.Count > 0) return "it is restricted to groups (" + string.Join(", ", auth.Groups) + ")";
            if (auth.Consumers.Count > 0) return "it is restricted to named consumers";
            if (auth.Claims.Count > 0) return "it has claim rules";
        }

        var path = route.Match.PathPrefix ?? route.Match.Path ?? "";
        if (Administrative().IsMatch(route.Name) || Administrative().IsMatch(path)) return "its name or path looks administrative";
        return null;
    }

    [GeneratedRegex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    private static partial Regex Uuid();

    [GeneratedRegex(@"(^|[^a-z])(admin|administration|internal|manage|management|backoffice|debug|actuator|ops|sudo|superuser|root|console)([^a-z]|$)", RegexOptions.IgnoreCase)]
    private static partial Regex Administrative();
}
