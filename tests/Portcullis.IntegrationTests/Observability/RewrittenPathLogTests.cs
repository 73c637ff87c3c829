using System.Net;
using DuckDB.NET.Data;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Analytics;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests.Observability;

/// <summary>
/// A route's pathRewrite, through the real gateway to a real upstream: the access log's `path` is what the
/// client asked for and `upstreamPath` what the upstream got (only when the rewrite changed it), and an
/// analytics sample with rawPaths keeps the client's path. Both used to show the rewritten path as `path`.
/// </summary>
public sealed class RewrittenPathLogTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-rewrite-it-").FullName;
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;

    private string LogPath => Path.Combine(_gateway.Directory, "access.log");

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("items");
        var database = Path.Combine(_directory, "analytics.duckdb");
        _gateway = await TestGateway.StartAsync($$"""
            analytics:
              path: "{{database}}"
              flushInterval: 200ms
              samples: { successRate: 1, rawPaths: true }
            observability:
              accessLog: { enabled: true, target: file, path: access.log }
            routes:
              - name: legacy
                match: { pathPrefix: /v1/items }
                transforms:
                  pathRewrite: { regex: '^/v1/items/([0-9]+)$', replacement: '/items/$1' }
                cluster: items
            clusters:
              items: { destinations: ["{{_upstream.Url}}"] }
            """);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task The_access_log_records_the_clients_path_and_the_rewritten_upstream_path_beside_it()
    {
        using var response = await _gateway.Client.GetAsync("/v1/items/42?x=1");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var seen = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal("/items/42", seen.Path);

        var line = await AccessLogFile.LineAsync(LogPath, AccessLogFile.RequestId(response));
        Assert.Equal("/v1/items/42", line.GetProperty("path").GetString());
        Assert.Equal("/items/42", line.GetProperty("upstreamPath").GetString());
        Assert.Equal("legacy", line.GetProperty("route").GetString());
        Assert.Equal("?x=*", line.GetProperty("query").GetString());

        // The same route, a path its regex leaves alone: no upstreamPath, the path as sent.
        using var untouched = await _gateway.Client.GetAsync("/v1/items/new");
        Assert.Equal("/v1/items/new", (await UpstreamAnswer.ReadAsync(untouched)).Path);
        var plain = await AccessLogFile.LineAsync(LogPath, AccessLogFile.RequestId(untouched));
        Assert.Equal("/v1/items/new", plain.GetProperty("path").GetString());
        Assert.False(plain.TryGetProperty("upstreamPath", out _));

        // Analytics (rawPaths) keeps the client's path too, never the rewritten one.
        var store = _gateway.Services.GetRequiredService<AnalyticsDatabase>();
        await Eventually.TrueAsync(() => { using var c = store.OpenConnection(); return Count(c, "SELECT count(*) FROM samples") == 2; },
            "both requests flushed", context: () => Task.FromResult(_gateway.Logs.ToString()));
        using var connection = store.OpenConnection();
        Assert.Equal(1, Count(connection, "SELECT count(*) FROM samples WHERE path = '/v1/items/42'"));
        Assert.Equal(0, Count(connection, "SELECT count(*) FROM samples WHERE path = '/items/42'"));
    }

    private static long Count(DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }
}
