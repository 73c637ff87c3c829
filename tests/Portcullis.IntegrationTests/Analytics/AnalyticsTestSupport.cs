using System.Net;
using DuckDB.NET.Data;
using Portcullis.Analytics;
using Portcullis.Cli;

namespace Portcullis.IntegrationTests.Analytics;

/// <summary>Config, keys and queries the analytics store tests share.</summary>
internal static class AnalyticsTestSupport
{
    /// <summary>Routes: orders (API key), public (template /public/{id}), teapot (fixed 418); {{DB}} and {{UPSTREAM}} replaced.</summary>
    public const string Config = """
        analytics:
          path: "{{DB}}"
          flushInterval: {{FLUSH}}
          samples: { successRate: 1 }
        identity:
          apiKeys: { file: keys.yaml }
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            auth: { apiKey: true }
            cluster: orders
          - name: public
            match: { path: "/public/{id}" }
            cluster: orders
          - name: teapot
            match: { path: /teapot }
            respond: { status: 418, body: "short and stout\n" }
        clusters:
          orders:
            destinations: [{{UPSTREAM}}]
        """;

    public static string ConfigFor(string database, string upstream, string flush = "200ms") =>
        Config.Replace("{{DB}}", database, StringComparison.Ordinal)
            .Replace("{{UPSTREAM}}", upstream, StringComparison.Ordinal)
            .Replace("{{FLUSH}}", flush, StringComparison.Ordinal);

    /// <summary>A key file with alice (group gold) and bob (group free); returns the file text and both keys.</summary>
    public static async Task<(string File, string Alice, string Bob)> KeysAsync(string directory)
    {
        var file = Path.Combine(directory, "keys.yaml");
        await File.WriteAllTextAsync(file, "consumers: {}\n");
        var alice = await CreateKeyAsync(file, "alice", "gold");
        var bob = await CreateKeyAsync(file, "bob", "free");
        return (await File.ReadAllTextAsync(file), alice, bob);
    }

    private static async Task<string> CreateKeyAsync(string file, string consumer, string group)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await PortcullisCli.RunAsync(["keys", "create", "--file", file, "--consumer", consumer, "--group", group], output, errors);
        Assert.True(code == 0, errors.ToString());
        return output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];
    }

    public static HttpRequestMessage Request(string path, string? key = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (key is not null) request.Headers.TryAddWithoutValidation("X-Api-Key", key);
        return request;
    }

    /// <summary>Total requests in the rollups (0 when the table is empty).</summary>
    public static long Requests(DuckDBConnection connection) => Scalar(connection, "SELECT coalesce(sum(requests), 0)::BIGINT FROM rollups");

    public static long Scalar(DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }

    /// <summary>Requests per "route|consumer|group|status|reason" in the rollups.</summary>
    public static Dictionary<string, long> CountsByKey(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT coalesce(route, '-') || '|' || coalesce(consumer, '-') || '|' || coalesce(consumer_group, '-') || '|' || status || '|' || coalesce(reason, '-'),
                   sum(requests)::BIGINT
            FROM rollups GROUP BY ALL
            """;
        using var reader = command.ExecuteReader();
        var counts = new Dictionary<string, long>();
        while (reader.Read()) counts[reader.GetString(0)] = reader.GetInt64(1);
        return counts;
    }

    /// <summary>The merged total-latency sketch of every rollup row (dense counts by bucket).</summary>
    public static long[] MergedLatency(DuckDBConnection connection, string where = "true")
    {
        var dense = new long[LatencySketch.BucketCount];
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT latency_buckets, latency_counts FROM rollups WHERE {where}";
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            var buckets = reader.GetFieldValue<List<short>>(0);
            var counts = reader.GetFieldValue<List<long>>(1);
            LatencySketch.Merge(dense, buckets.ToArray(), counts.ToArray());
        }

        return dense;
    }

    public static async Task<HttpStatusCode> SendAsync(HttpClient client, string path, string? key = null)
    {
        using var response = await client.SendAsync(Request(path, key));
        await response.Content.ReadAsByteArrayAsync();
        return response.StatusCode;
    }
}
