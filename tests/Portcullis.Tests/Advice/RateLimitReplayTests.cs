using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Xunit.Abstractions;

namespace Portcullis.Tests.Advice;

/// <summary>
/// The incremental rate-limit advice (kept histories, kept replays) gives exactly what a replay from scratch gives:
/// per key and policy over random edits of the history, and end to end, an advisor that lives through many runs
/// over a store being appended to (late flushes included) against a new advisor on the same store at each run.
/// </summary>
public sealed class RateLimitReplayTests(ITestOutputHelper output) : ConfigBuildTestBase("portcullis-advice-replay-")
{
    private static readonly RatePolicy[] Policies =
    [
        new(RateLimitAlgorithm.TokenBucket, 5, TimeSpan.FromSeconds(1), 5),
        new(RateLimitAlgorithm.TokenBucket, 3, TimeSpan.FromSeconds(1), 30),
        new(RateLimitAlgorithm.TokenBucket, 10, TimeSpan.FromMinutes(1), 15),
        new(RateLimitAlgorithm.TokenBucket, 2, TimeSpan.FromMinutes(1), 20),
        new(RateLimitAlgorithm.SlidingWindow, 6, TimeSpan.FromSeconds(1), null),
        new(RateLimitAlgorithm.SlidingWindow, 40, TimeSpan.FromMinutes(1), null),
        new(RateLimitAlgorithm.SpikeArrest, 4, TimeSpan.FromSeconds(1), null),
    ];

    [Theory]
    [InlineData(1, 0.02)] // sparse: long gaps, many reset points
    [InlineData(2, 0.5)] // dense: few reset points, most updates replay from far back or from scratch
    [InlineData(3, 0.1)]
    public void A_kept_replay_equals_a_replay_from_scratch_after_every_change_of_the_history(int seed, double busy)
    {
        var random = new Random(seed);
        var replays = new KeyReplays();
        var data = new SortedDictionary<long, int>();
        long start = 1_700_000_000, end = start;
        void Append(long until)
        {
            for (; end < until; end++)
            {
                if (random.NextDouble() < busy) data[end] = 1 + (int)(random.NextDouble() * random.NextDouble() * 25);
            }
        }

        Append(start + 3600);
        var history = Snapshot(data, replays);
        var checks = 0;
        for (var step = 0; step < 60; step++)
        {
            replays.Cycle = step;
            var changedFrom = long.MaxValue;
            switch (random.Next(4))
            {
                case 0: // appended (a minute, as each run)
                    changedFrom = end;
                    Append(end + 60);
                    break;
                case 1: // the window start moved
                    start += random.Next(1, 300);
                    foreach (var s in data.Keys.Where(s => s < start).ToList()) data.Remove(s);
                    break;
                case 2: // a late flush changed recent seconds, and more came
                    changedFrom = end - random.Next(1, 120);
                    foreach (var s in data.Keys.Where(s => s >= changedFrom).ToList()) data[s] += random.Next(0, 3);
                    data[changedFrom] = data.GetValueOrDefault(changedFrom) + 1;
                    Append(end + 30);
                    break;
                default: // both
                    start += random.Next(1, 120);
                    foreach (var s in data.Keys.Where(s => s < start).ToList()) data.Remove(s);
                    changedFrom = end;
                    Append(end + 90);
                    break;
            }

            if (data.Count == 0) continue;
            replays.Advance(changedFrom);
            history = Snapshot(data, replays);
            var scratch = Snapshot(data, null);

            // Not every policy is asked every run: some catch up over several changes.
            foreach (var policy in Policies.Where((_, i) => (step + i) % 3 != 0))
            {
                var expected = RateLimitReplay.Run(scratch, policy);
                Assert.Equal(expected, RateLimitReplay.Run(history, policy));
                Assert.Equal(expected.Refused <= 7, RateLimitReplay.Fits([history], policy, 7));
                checks++;
            }

            replays.Sweep();
        }

        output.WriteLine($"{checks} comparisons; {replays.Count} replays kept");
        Assert.True(checks > 100);
    }

    [Fact]
    public void An_advisor_kept_across_runs_finds_exactly_what_a_new_one_finds_on_the_same_store()
    {
        const string config = """
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            clusters:
              api: { destinations: [http://127.0.0.1:5001] }
            analytics: { path: analytics.duckdb }
            advice: { window: 2h }
            rateLimits:
              generous: { key: [consumer], limit: 1000, per: 1s }
              tight: { key: [consumer], limit: 1, per: 1s, burst: 2 }
              per-group: { key: [consumerGroup], limit: 3, per: 1s, burst: 6 }
            routes:
              - { name: reports, match: { pathPrefix: /reports }, cluster: api }
              - { name: orders, match: { pathPrefix: /orders }, cluster: api, rateLimits: [generous] }
              - { name: search, match: { pathPrefix: /search }, cluster: api, rateLimits: [tight] }
              - { name: search2, match: { pathPrefix: /search2 }, cluster: api, rateLimits: [tight] }
              - { name: teams, match: { pathPrefix: /teams }, cluster: api, rateLimits: [per-group] }
            """;
        var result = Build(config);
        Assert.True(result.Succeeded, Dump(result));
        var snapshot = result.Snapshot!;
        var database = new AnalyticsDatabase(snapshot.Analytics!.Path);
        var now = new DateTime(2026, 12, 1, 12, 0, 17, DateTimeKind.Utc);
        var unixNow = new DateTimeOffset(now).ToUnixTimeSeconds();

        // 3 h of history before the first run: the 2 h window slides over its start as the runs go on.
        var random = new Random(23);
        void Traffic(long from, int minutes)
        {
            var data = new ArrivalData();
            data.Legitimate(random, "reports", from, minutes, 12, 1.5, groups: ["gold", "free"]);
            data.Legitimate(random, "orders", from, minutes, 6, 1.5);
            data.Legitimate(random, "search", from, minutes, 6, 2);
            data.Legitimate(random, "search2", from, minutes, 4, 2);
            data.Legitimate(random, "teams", from, minutes, 8, 1, groups: ["a", "b"]);
            data.WriteTo(database);
        }

        var first = unixNow - (unixNow % 60) - (180 * 60);
        Traffic(first, 180);
        var kept = new RateLimitAdvisor(NullLogger<RateLimitAdvisor>.Instance);
        var source = AnalyticsSource.Local(database);
        var compared = 0;
        for (var run = 0; run < 14; run++)
        {
            if (run > 0)
            {
                var step = run == 9 ? 7 : 1; // one run skips ahead several minutes
                var previous = now;
                now = now.AddMinutes(step);
                var from = new DateTimeOffset(previous).ToUnixTimeSeconds();
                Traffic(from - (from % 60), step);
                if (run % 4 == 2)
                {
                    // A late second flush of an earlier minute: a row for a minute the kept history already holds.
                    var late = new ArrivalData();
                    late.Add("search", "c1", from - 150, 3);
                    late.Add("reports", "late-caller", from - 200, 2, "gold");
                    late.WriteTo(database);
                }
            }

            var context = new AdviceContext { Now = now, Snapshot = snapshot, Settings = snapshot.Advice!, Analytics = AnalyticsSource.Local(database), Runtime = OfflineAdviceRuntime.Instance };
            var incremental = Describe(kept.Detect(context));
            var scratch = Describe(new RateLimitAdvisor(NullLogger<RateLimitAdvisor>.Instance).Detect(context));
            Assert.Equal(scratch, incremental);
            Assert.Contains(FindingKinds.RateLimitSuggested, scratch, StringComparison.Ordinal);
            compared++;
        }

        // A run back in time (an offline `advise --since` after a live one, a clock set back) starts over, still exact.
        var back = new AdviceContext { Now = now.AddMinutes(-30), Snapshot = snapshot, Settings = snapshot.Advice!, Analytics = source, Runtime = OfflineAdviceRuntime.Instance };
        Assert.Equal(Describe(new RateLimitAdvisor(NullLogger<RateLimitAdvisor>.Instance).Detect(back)), Describe(kept.Detect(back)));
        output.WriteLine($"{compared} runs compared");
    }

    private static KeyHistory Snapshot(SortedDictionary<long, int> data, KeyReplays? replays) => new()
    {
        Key = "k",
        Seconds = [.. data.Keys],
        Counts = [.. data.Values],
        Total = data.Values.Sum(c => (long)c),
        Replays = replays,
    };

    // Everything a finding says, in order.
    private static string Describe(IReadOnlyList<Finding> findings)
    {
        var text = new StringBuilder();
        foreach (var f in findings)
        {
            text.Append(CultureInfo.InvariantCulture, $"{f.Id} {f.Kind} {f.Severity} {f.Subject} {f.Confidence} {f.FirstSeen:O} {f.LastSeen:O}\n{f.Title}\n{f.Explanation}\n{f.Evidence.Basis}\n");
            foreach (var v in f.Evidence.Values) text.Append(CultureInfo.InvariantCulture, $"  {v.Name} = {v.Value:R} {v.Unit} {v.Baseline:R}\n");
            text.Append(f.Patch?.Yaml).Append('\n');
        }

        return text.ToString();
    }
}
