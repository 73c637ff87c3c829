using System.Globalization;

namespace Portcullis.Advice;

/// <summary>Links to the dashboard (/ui/) rows behind a finding's evidence, with its window.</summary>
internal static class DashboardLinks
{
    public static string Route(string route, DateTime from, DateTime to) => Link("/ui/route", from, to, ("route", route));

    public static string Consumer(string consumer, DateTime from, DateTime to) => Link("/ui/consumer", from, to, ("consumer", consumer));

    /// <summary>The samples page filtered by any of route, cluster, consumer, status ("4xx", "503"), reason, minStatus.</summary>
    public static string Samples(DateTime from, DateTime to, params (string Name, string? Value)[] filters) => Link("/ui/samples", from, to, filters);

    public static string Finding(string id) => "/ui/advice?id=" + Uri.EscapeDataString(id);

    private static string Link(string path, DateTime from, DateTime to, params (string Name, string? Value)[] filters)
    {
        var query = new List<string>
        {
            "from=" + Uri.EscapeDataString(from.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)),
            "to=" + Uri.EscapeDataString(to.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)),
        };
        foreach (var (name, value) in filters)
        {
            if (!string.IsNullOrEmpty(value)) query.Add(name + "=" + Uri.EscapeDataString(value));
        }

        return path + "?" + string.Join('&', query);
    }
}
