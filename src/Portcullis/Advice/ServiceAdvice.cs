using System.Globalization;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>What the service checks share: building findings, formatting numbers and durations for evidence and patches.</summary>
internal static class ServiceAdvice
{
    public static Finding Make(AdviceContext context, string kind, FindingSeverity severity, FindingSubject subject, string title, string explanation,
        Evidence evidence, FindingConfidence confidence = FindingConfidence.High, ConfigPatch? patch = null, string? discriminator = null) => new()
        {
            Id = Finding.MakeId(kind, subject, discriminator),
            Kind = kind,
            Severity = severity,
            Subject = subject,
            FirstSeen = evidence.From < context.Now ? evidence.From : context.Now,
            LastSeen = context.Now,
            Title = title,
            Explanation = explanation,
            Evidence = evidence,
            Confidence = confidence,
            Patch = patch,
        };

    /// <summary>
    /// Each route with each cluster it sends to (its cluster, or each of its split's): the checks fold what they need
    /// per cluster from it. The advisor runs every minute over the whole config, and a list of routes per cluster,
    /// rebuilt each run, was most of what an idle gateway allocated at 50,000 routes (5 MB a run, never collected
    /// while nothing else allocates).
    /// </summary>
    public static IEnumerable<(RouteOptions Route, string Cluster)> RouteClusters(PortcullisConfig config)
    {
        foreach (var route in config.Routes)
        {
            if (route.Cluster is { } cluster)
            {
                yield return (route, cluster);
            }
            else if (route.Split is { } split)
            {
                foreach (var target in split.Clusters) yield return (route, target.Cluster);
            }
        }
    }

    /// <summary>Requests per cluster since <paramref name="from"/> (from the store's rollups); empty without a store.</summary>
    public static Dictionary<string, long> ClusterTraffic(AdviceContext context, DateTime from)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        if (context.Analytics is null) return result;
        using var connection = context.Analytics.OpenConnection(from, context.Now);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT cluster, sum(requests)::BIGINT FROM rollups WHERE minute >= $from AND minute < $to AND cluster IS NOT NULL GROUP BY cluster";
        command.Parameters.Add(new DuckDB.NET.Data.DuckDBParameter("from", from));
        command.Parameters.Add(new DuckDB.NET.Data.DuckDBParameter("to", context.Now));
        using var reader = command.ExecuteReader();
        while (reader.Read()) result[reader.GetString(0)] = reader.GetInt64(1);
        return result;
    }

    /// <summary>A duration as the config writes it, rounded up to whole seconds (at least 1s): "10s", "2m".</summary>
    public static string ConfigDuration(TimeSpan value)
    {
        var seconds = Math.Max(1, (long)Math.Ceiling(value.TotalSeconds));
        return DurationFormat.Format(TimeSpan.FromSeconds(seconds));
    }

    /// <summary>A latency for text: "850 ms", "4.6 s".</summary>
    public static string Latency(double seconds) => seconds < 1
        ? (seconds * 1000).ToString("0.#", CultureInfo.InvariantCulture) + " ms"
        : seconds.ToString("0.##", CultureInfo.InvariantCulture) + " s";

    public static string Percent(double share) => (share * 100).ToString(share < 0.01 ? "0.##" : "0.#", CultureInfo.InvariantCulture) + " %";

    public static string Number(double value) => value.ToString("#,0.##", CultureInfo.InvariantCulture);

    /// <summary>A YAML plain-or-quoted scalar for a name (cluster, route): quoted unless plainly safe.</summary>
    public static string Yaml(string value)
    {
        var plain = value.Length > 0 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' || c is '_' || c is '.' || c is '/')
            && !char.IsAsciiDigit(value[0]) && value is not ("true" or "false" or "null" or "yes" or "no" or "on" or "off" or "y" or "n" or "~");
        return plain ? value : "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
    }

    /// <summary>The clusters section of a patch: clusters: { NAME: BODY } with BODY's lines indented under it.</summary>
    public static string ClusterPatch(string cluster, string body) =>
        "clusters:\n  " + Yaml(cluster) + ":\n" + string.Join('\n', body.TrimEnd('\n').Split('\n').Select(line => "    " + line)) + "\n";

    /// <summary>A routes patch for one route, merged by name: routes: [ { name: NAME, BODY } ].</summary>
    public static string RoutePatch(string route, string body) =>
        "routes:\n  - name: " + Yaml(route) + "\n" + string.Join('\n', body.TrimEnd('\n').Split('\n').Select(line => "    " + line)) + "\n";

    public static string FlowList(IEnumerable<string> values) => "[" + string.Join(", ", values.Select(Yaml)) + "]";
}
