using System.Text.Json;
using System.Text.RegularExpressions;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// The reload answer and its log line say how long a reload took and where the time went (issue 20: at 50,000
/// routes the operator needs to see that the file's parse, not the gateway, is most of a reload).
/// </summary>
public sealed partial class ReloadTimingsTests
{
    private static string Config(string upstream, string path) => $$"""
        advice: { enabled: false }
        routes:
          - { name: a, match: { pathPrefix: {{path}} }, cluster: up }
        clusters:
          up: { destinations: [{{upstream}}] }
        """;

    private static Dictionary<string, double> Phases(JsonElement body) =>
        body.GetProperty("phasesMs").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());

    [Fact]
    public async Task Each_reload_answers_its_duration_and_the_phases_it_reached()
    {
        await using var up = await TestUpstream.StartAsync("up");
        await using var gateway = await TestGateway.StartAsync(Config(up.Url, "/a"));

        // Nothing changed: answered from the input digests, before any phase.
        var (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.False(body.GetProperty("changed").GetBoolean());
        Assert.True(body.GetProperty("durationMs").GetDouble() >= 0);
        Assert.Empty(Phases(body));

        // An invalid file: read, parsed and bound (where the error is found), nothing prepared or swapped.
        await gateway.WriteConfigAsync(Config(up.Url, "/a").Replace("cluster: up", "cluster: missing", StringComparison.Ordinal));
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(422, status);
        var phases = Phases(body);
        Assert.Equal(["parse", "bind", "compile"], phases.Keys);
        Assert.All(phases.Values, ms => Assert.True(ms >= 0));
        Assert.True(body.GetProperty("gcPauseMs").GetDouble() >= 0);
        Assert.Equal(["gen0", "gen1", "gen2"], body.GetProperty("gcCollections").EnumerateObject().Select(p => p.Name));
        Assert.True(body.GetProperty("durationMs").GetDouble() >= phases.Values.Sum() - 0.5);

        // A valid change: every phase, in order. The file watcher may apply it before this call does (the call
        // then finds nothing changed), so the applied reload's own numbers are read from its log line (event 1001).
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(Config(up.Url, "/b"));
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        await gateway.WaitForGenerationAsync(generation);
        if (body.GetProperty("changed").GetBoolean())
        {
            Assert.Equal(["parse", "bind", "compile", "restartDiff", "prepare", "swap"], Phases(body).Keys);
        }

        var line = Assert.Single(gateway.Logs.Lines, l => l.Contains("Configuration reloaded", StringComparison.Ordinal) && l.Contains($"generation {generation + 1},", StringComparison.Ordinal));
        var logged = AppliedLine().Match(line);
        Assert.True(logged.Success, line);
        Assert.True(double.Parse(logged.Groups["total"].Value, System.Globalization.CultureInfo.InvariantCulture) >= 0);
        using var response = await gateway.Client.GetAsync("/b/x");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
    }

    [GeneratedRegex(@"; in (?<total>\d+) ms \(parse \d+ ms, bind \d+ ms, compile \d+ ms, restartDiff \d+ ms, prepare \d+ ms, swap \d+ ms; GC paused \d+ ms \(collections: gen0 \d+, gen1 \d+, gen2 \d+\)\)")]
    private static partial Regex AppliedLine();
}
