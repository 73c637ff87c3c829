using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// GET /admin/advice and the acknowledge/mute actions through a real gateway: the engine runs in the background
/// over a detector registered by the test (DI), the API lists what it found with the JSON of docs/advisor.md,
/// filters answer 400 for bad values, and decisions are written to advice.statePath and survive a restart.
/// </summary>
public sealed class AdviceApiTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-advice-api-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string StatePath => Path.Combine(_directory, "advice-state.json");

    private string Config => $$"""
        advice:
          interval: 5s
          statePath: "{{StatePath}}"
        routes:
          - { name: reports, match: { pathPrefix: /reports }, respond: { status: 200 } }
        """;

    /// <summary>A detector that always finds the same two things (a warning with evidence and a valid patch, an info).</summary>
    internal sealed class FixedDetector : IAdviceDetector
    {
        public string Name => "test.fixed";

        public IReadOnlyList<Finding> Detect(AdviceContext context)
        {
            var route = new FindingSubject(SubjectKind.Route, "reports");
            var client = new FindingSubject(SubjectKind.Client, "10.0.0.7");
            return
            [
                new Finding
                {
                    Id = Finding.MakeId(FindingKinds.RateLimitSuggested, route),
                    Kind = FindingKinds.RateLimitSuggested,
                    Severity = FindingSeverity.Info,
                    Subject = route,
                    FirstSeen = context.Now,
                    LastSeen = context.Now,
                    Title = "Suggest 12/s per consumer on route reports",
                    Explanation = "Test suggestion.",
                    Confidence = FindingConfidence.Low,
                    Evidence = new Evidence(context.WindowStart, context.Now, [new EvidenceValue("p99 per-consumer rate", 9.5, "req/s", 4)]) { Basis = "1 h of data", DashboardLink = DashboardLinks.Route("reports", context.WindowStart, context.Now) },
                    Patch = new ConfigPatch("rateLimits:\n  suggested-reports: { key: consumer, limit: 12, per: 1s, burst: 30 }\nroutes:\n  - name: reports\n    rateLimits: [suggested-reports]\n", "adds rateLimits.suggested-reports and uses it on route reports"),
                },
                new Finding
                {
                    Id = Finding.MakeId(FindingKinds.UnmatchedScanner, client),
                    Kind = FindingKinds.UnmatchedScanner,
                    Severity = FindingSeverity.Warning,
                    Subject = client,
                    FirstSeen = context.Now,
                    LastSeen = context.Now,
                    Title = "10.0.0.7 probes for /.env and /wp-admin",
                    Explanation = "Test scanner.",
                    Evidence = new Evidence(context.Now.AddMinutes(-5), context.Now, [new EvidenceValue("unmatched requests", 120, "req")]),
                },
            ];
        }
    }

    private Task<TestGateway> StartAsync() =>
        TestGateway.StartAsync(Config, configureServices: services => services.AddSingleton<IAdviceDetector, FixedDetector>());

    private static async Task<(HttpStatusCode Status, JsonElement Body, string? MediaType)> SendAsync(TestGateway gateway, HttpMethod method, string path)
    {
        using var request = new HttpRequestMessage(method, path);
        using var response = await gateway.Admin.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone(), response.Content.Headers.ContentType?.MediaType);
    }

    private static async Task<JsonElement> WaitForFindingsAsync(TestGateway gateway, int count, string query = "")
    {
        JsonElement body = default;
        await Eventually.TrueAsync(async () =>
        {
            (_, body, _) = await SendAsync(gateway, HttpMethod.Get, "/admin/advice" + query);
            return body.GetProperty("findings").GetArrayLength() == count;
        }, $"{count} finding(s) at /admin/advice{query}", context: () => Task.FromResult(gateway.Logs.ToString()));
        return body;
    }

    [Fact]
    public async Task TheApiListsWhatTheEngineFoundWithEvidenceAndPatchAndFilters()
    {
        await using var gateway = await StartAsync();
        var body = await WaitForFindingsAsync(gateway, 2);

        Assert.True(body.GetProperty("enabled").GetBoolean());
        Assert.False(body.GetProperty("storeAvailable").GetBoolean());
        var run = body.GetProperty("lastRun");
        var detector = run.GetProperty("detectors").EnumerateArray().Single(d => d.GetProperty("name").GetString() == "test.fixed");
        Assert.Equal(2, detector.GetProperty("findings").GetInt32());
        Assert.Equal(JsonValueKind.Null, detector.GetProperty("error").ValueKind);
        Assert.True(run.GetProperty("durationMs").GetDouble() >= 0);
        // What the run allocated covers its detectors (and the patch check); the fixed detector builds two findings.
        Assert.True(detector.GetProperty("allocatedBytes").GetInt64() > 0);
        Assert.True(run.GetProperty("allocatedBytes").GetInt64() >= run.GetProperty("detectors").EnumerateArray().Sum(d => d.GetProperty("allocatedBytes").GetInt64()));

        // Warnings first.
        var findings = body.GetProperty("findings").EnumerateArray().ToList();
        Assert.Equal(FindingKinds.UnmatchedScanner, findings[0].GetProperty("kind").GetString());
        var suggestion = findings[1];
        Assert.Equal("info", suggestion.GetProperty("severity").GetString());
        Assert.Equal("route", suggestion.GetProperty("subject").GetProperty("kind").GetString());
        Assert.Equal("reports", suggestion.GetProperty("subject").GetProperty("name").GetString());
        Assert.Equal("low", suggestion.GetProperty("confidence").GetString());
        Assert.Equal("open", suggestion.GetProperty("state").GetString());
        Assert.StartsWith("/ui/route?from=", suggestion.GetProperty("evidence").GetProperty("dashboardLink").GetString(), StringComparison.Ordinal);
        var value = suggestion.GetProperty("evidence").GetProperty("values")[0];
        Assert.Equal(9.5, value.GetProperty("value").GetDouble());
        Assert.Equal(4, value.GetProperty("baseline").GetDouble());
        Assert.Contains("suggested-reports", suggestion.GetProperty("patch").GetProperty("yaml").GetString(), StringComparison.Ordinal);
        Assert.EndsWith("Z", suggestion.GetProperty("firstSeen").GetString(), StringComparison.Ordinal);

        Assert.Single((await SendAsync(gateway, HttpMethod.Get, "/admin/advice?severity=warning")).Body.GetProperty("findings").EnumerateArray());
        Assert.Single((await SendAsync(gateway, HttpMethod.Get, "/admin/advice?kind=ratelimit.suggested")).Body.GetProperty("findings").EnumerateArray());
        Assert.Single((await SendAsync(gateway, HttpMethod.Get, "/admin/advice?subject=10.0.0.7")).Body.GetProperty("findings").EnumerateArray());
        Assert.Empty((await SendAsync(gateway, HttpMethod.Get, "/admin/advice?state=muted")).Body.GetProperty("findings").EnumerateArray());

        var id = suggestion.GetProperty("id").GetString()!;
        var one = await SendAsync(gateway, HttpMethod.Get, "/admin/advice/" + id);
        Assert.Equal(HttpStatusCode.OK, one.Status);
        Assert.Equal(id, one.Body.GetProperty("id").GetString());

        foreach (var bad in (string[])["?severity=loud", "?kind=nope", "?state=closed", "?color=red", "?severity=info&severity=warning"])
        {
            var (status, problem, mediaType) = await SendAsync(gateway, HttpMethod.Get, "/admin/advice" + bad);
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal("application/problem+json", mediaType);
            Assert.Equal("admin.advice-bad-parameter", problem.GetProperty("reason").GetString());
        }

        var unknown = await SendAsync(gateway, HttpMethod.Get, "/admin/advice/000000000000");
        Assert.Equal(HttpStatusCode.NotFound, unknown.Status);
        Assert.Equal("admin.advice-unknown-finding", unknown.Body.GetProperty("reason").GetString());
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(gateway, HttpMethod.Post, "/admin/advice/000000000000/mute")).Status);
    }

    [Fact]
    public async Task AcknowledgeAndMuteAreWrittenToTheStateFileAndSurviveARestart()
    {
        string scanner, suggestion;
        await using (var gateway = await StartAsync())
        {
            var body = await WaitForFindingsAsync(gateway, 2);
            scanner = body.GetProperty("findings")[0].GetProperty("id").GetString()!;
            suggestion = body.GetProperty("findings")[1].GetProperty("id").GetString()!;

            var muted = await SendAsync(gateway, HttpMethod.Post, $"/admin/advice/{scanner}/mute");
            Assert.Equal(HttpStatusCode.OK, muted.Status);
            Assert.Equal("muted", muted.Body.GetProperty("state").GetString());
            Assert.Equal("loopback", muted.Body.GetProperty("decision").GetProperty("by").GetString());
            var acknowledged = await SendAsync(gateway, HttpMethod.Post, $"/admin/advice/{suggestion}/acknowledge");
            Assert.Equal("acknowledged", acknowledged.Body.GetProperty("state").GetString());

            Assert.Empty((await SendAsync(gateway, HttpMethod.Get, "/admin/advice")).Body.GetProperty("findings").EnumerateArray());
            Assert.True(File.Exists(StatePath));
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(StatePath));
            Assert.Empty(Directory.GetFiles(_directory, "*.tmp-*", SearchOption.AllDirectories));
        }

        await using (var restarted = await StartAsync())
        {
            // The findings come back with the new process's first run, still muted / acknowledged.
            var all = await WaitForFindingsAsync(restarted, 2, "?state=all");
            Assert.Equal("muted", all.GetProperty("findings").EnumerateArray().Single(f => f.GetProperty("id").GetString() == scanner).GetProperty("state").GetString());
            Assert.Equal("acknowledged", all.GetProperty("findings").EnumerateArray().Single(f => f.GetProperty("id").GetString() == suggestion).GetProperty("state").GetString());
            Assert.Empty((await SendAsync(restarted, HttpMethod.Get, "/admin/advice")).Body.GetProperty("findings").EnumerateArray());
            Assert.Equal(scanner, Assert.Single((await SendAsync(restarted, HttpMethod.Get, "/admin/advice?state=muted")).Body.GetProperty("findings").EnumerateArray()).GetProperty("id").GetString());

            var unmuted = await SendAsync(restarted, HttpMethod.Post, $"/admin/advice/{scanner}/unmute");
            Assert.Equal("open", unmuted.Body.GetProperty("state").GetString());
            Assert.Equal(scanner, Assert.Single((await SendAsync(restarted, HttpMethod.Get, "/admin/advice")).Body.GetProperty("findings").EnumerateArray()).GetProperty("id").GetString());
        }
    }
}
