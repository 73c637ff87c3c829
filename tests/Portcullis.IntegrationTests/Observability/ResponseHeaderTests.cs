using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Observability;

namespace Portcullis.IntegrationTests.Observability;

/// <summary>Response-header validation: log, strip and block against a real upstream, with access-log findings and counters.</summary>
public sealed class ResponseHeaderTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;

    private string LogPath => Path.Combine(_gateway.Directory, "access.log");

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("api");
        _upstream.Handler = static async context =>
        {
            var body = Encoding.UTF8.GetBytes("{\"secret\":\"upstream-body\"}");
            context.Response.Headers["X-Powered-By"] = "PHP/5.4";
            context.Response.Headers.CacheControl = "public, max-age=60";
            context.Response.Headers["X-Kept"] = "yes";
            context.Response.ContentType = "text/html; charset=utf-8";
            context.Response.ContentLength = body.Length;
            await context.Response.Body.WriteAsync(body);
        };
        const string Policy = "require: [X-Api-Version], forbid: [X-Powered-By], rules: [{ header: Cache-Control, regex: no-store }, { header: Content-Type, oneOf: [application/json] }]";
        _gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: logged, match: { pathPrefix: /log }, cluster: api, responseHeaders: { {{Policy}} } }
              - { name: stripped, match: { pathPrefix: /strip }, cluster: api, responseHeaders: { {{Policy}}, action: strip } }
              - { name: blocked, match: { pathPrefix: /block }, cluster: api, responseHeaders: { {{Policy}}, action: block } }
              - { name: clean, match: { pathPrefix: /clean }, cluster: api, responseHeaders: { forbid: [X-Other], action: block } }
              - { name: cluster-only, match: { pathPrefix: /cluster }, cluster: guarded }
            clusters:
              api: { destinations: ["{{_upstream.Url}}"] }
              guarded: { destinations: ["{{_upstream.Url}}"], responseHeaders: { forbid: [X-Powered-By], action: strip } }
            observability:
              accessLog: { enabled: true, target: file, path: access.log }
            """);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    private static readonly string[] AllFindings = ["forbid:X-Powered-By", "require:X-Api-Version", "rule:Cache-Control", "rule:Content-Type"];

    private async Task<(HttpResponseMessage Response, string Body, JsonElement Line)> GetAsync(string path)
    {
        var response = await _gateway.Client.GetAsync(path);
        var body = await response.Content.ReadAsStringAsync();
        var line = await AccessLogFile.LineAsync(LogPath, AccessLogFile.RequestId(response));
        return (response, body, line);
    }

    private static string[] Findings(JsonElement line) =>
        line.TryGetProperty("responseFindings", out var findings) ? [.. findings.EnumerateArray().Select(f => f.GetString()!).Order(StringComparer.Ordinal)] : [];

    [Fact]
    public async Task Log_passes_the_answer_unchanged_and_records_the_findings()
    {
        var (response, body, line) = await GetAsync("/log");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("upstream-body", body, StringComparison.Ordinal);
        Assert.Equal("PHP/5.4", response.Headers.GetValues("X-Powered-By").Single());
        Assert.Equal("text/html; charset=utf-8", response.Content.Headers.ContentType!.ToString());
        Assert.Equal(AllFindings, Findings(line));
        var counters = _gateway.Services.GetRequiredService<ResponseHeaderFindings>();
        Assert.Equal(1, counters.Count("logged", "forbid:X-Powered-By"));
        Assert.Equal(1, counters.Count("logged", "rule:Content-Type"));

        // The same counts on the Prometheus endpoint, per route and finding.
        var samples = await PrometheusText.ScrapeAsync(_gateway.Admin);
        Assert.Equal(1, samples.Sum("portcullis_response_header_findings_total", ("route", "logged"), ("finding", "forbid:X-Powered-By")));
        Assert.Equal(1, samples.Sum("portcullis_response_header_findings_total", ("route", "logged"), ("finding", "require:X-Api-Version")));
    }

    [Fact]
    public async Task Strip_removes_forbidden_and_failing_headers_and_keeps_the_rest()
    {
        var (response, body, line) = await GetAsync("/strip");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("upstream-body", body, StringComparison.Ordinal);
        Assert.False(response.Headers.Contains("X-Powered-By"));
        Assert.Null(response.Headers.CacheControl);
        Assert.Null(response.Content.Headers.ContentType);
        Assert.Equal("yes", response.Headers.GetValues("X-Kept").Single());
        Assert.Equal(AllFindings, Findings(line));
        Assert.Equal(1, _gateway.Services.GetRequiredService<ResponseHeaderFindings>().Count("stripped", "rule:Cache-Control"));
    }

    [Fact]
    public async Task Block_answers_502_problem_json_and_never_sends_the_upstream_body()
    {
        var (response, body, line) = await GetAsync("/block");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.DoesNotContain("upstream-body", body, StringComparison.Ordinal);
        Assert.False(response.Headers.Contains("X-Powered-By"));
        Assert.False(response.Headers.Contains("X-Kept"));
        using var problem = JsonDocument.Parse(body);
        Assert.Equal("response.header-policy", problem.RootElement.GetProperty("reason").GetString());
        Assert.Equal(502, problem.RootElement.GetProperty("status").GetInt32());
        Assert.Equal(502, line.GetProperty("status").GetInt32());
        Assert.Equal("response.header-policy", line.GetProperty("reason").GetString());
        Assert.Equal(AllFindings, Findings(line));
        Assert.Equal(1, _gateway.Services.GetRequiredService<ResponseHeaderFindings>().Count("blocked", "require:X-Api-Version"));
    }

    [Fact]
    public async Task A_compliant_answer_passes_a_block_policy_without_findings()
    {
        var (response, body, line) = await GetAsync("/clean");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("upstream-body", body, StringComparison.Ordinal);
        Assert.False(line.TryGetProperty("responseFindings", out _));
    }

    [Fact]
    public async Task A_cluster_policy_applies_to_routes_without_their_own()
    {
        var (response, _, line) = await GetAsync("/cluster");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(response.Headers.Contains("X-Powered-By"));
        Assert.Equal(["forbid:X-Powered-By"], Findings(line));
        Assert.Equal(1, _gateway.Services.GetRequiredService<ResponseHeaderFindings>().Count("cluster-only", "forbid:X-Powered-By"));
    }
}
