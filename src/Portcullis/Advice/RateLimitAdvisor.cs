using System.Globalization;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Routing;

namespace Portcullis.Advice;

/// <summary>
/// Rate-limit suggestions (docs/advisor.md#rate-limit-suggestions): for every route without a rate limit, the
/// policy that would have refused at most advice.rateLimits.targetRefusalShare of its legitimate callers'
/// requests, replayed through the gateway's limiter arithmetic; for every existing limit, whether it is too loose,
/// too tight, or keyed on a part requests never carry (RateLimitAdvisor.Existing.cs). Reads the `arrivals` table.
/// </summary>
internal sealed partial class RateLimitAdvisor(ILogger<RateLimitAdvisor> logger) : IAdviceDetector
{
    /// <summary>Keys named in a finding's evidence (the most refused first).</summary>
    internal const int TopKeys = 5;

    // The first run over a large store reads and replays a week of arrivals (seconds to a minute): off the engine's
    // cycle when live. Later runs read and replay only what changed (RateLimitHistoryCache, RateLimitReplay).
    private readonly BackgroundDetection _background = new();
    private readonly RateLimitHistoryCache _cache = new();
    private readonly Lock _computing = new();

    public string Name => "ratelimits";

    /// <summary>The live computation (for the cycle benchmark).</summary>
    internal BackgroundDetection Background => _background;

    /// <summary>Minutes of arrivals the last computation read from the store.</summary>
    internal int LastMinutesRead => _cache.LastMinutesRead;

    public IReadOnlyList<Finding> Detect(AdviceContext context) => _background.Detect(context, Compute);

    private IReadOnlyList<Finding> Compute(AdviceContext context)
    {
        lock (_computing) return ComputeLocked(context);
    }

    private List<Finding> ComputeLocked(AdviceContext context)
    {
        if (context.Analytics is not { } analytics) return [];
        Dictionary<string, RouteHistory> history;
        using (var connection = analytics.OpenConnection(context.WindowStart, context.Now))
        {
            history = _cache.Load(connection, analytics.Identity, context.WindowStart, context.Now, context.Cancellation);
        }

        var findings = new List<Finding>();
        foreach (var route in context.Snapshot.Routes.Values.OrderBy(r => r.Name, StringComparer.Ordinal))
        {
            // A stopping gateway ends a cold run here (seconds of replay per route) rather than after every route.
            context.Cancellation.ThrowIfCancellationRequested();
            if (route.RateLimits.Length > 0 || !history.TryGetValue(route.Name, out var routeHistory)) continue;
            if (Suggest(context, route, routeHistory) is { } finding) findings.Add(finding);
        }

        findings.AddRange(CheckExisting(context, history, _cache));
        LogRun(logger, history.Count, findings.Count);
        return findings;
    }

    private static Finding? Suggest(AdviceContext context, CompiledRoute route, RouteHistory history)
    {
        var settings = context.Settings.RateLimits;
        var total = history.Total;
        if (total < settings.MinRequests) return null; // never a suggestion from a handful of requests
        var abusive = RateLimitFit.Abusive(history.Keys);
        var legitimate = history.Keys.Where(k => !abusive.Contains(k.Key)).ToList();
        if (legitimate.Count == 0 || RateLimitFit.Suggest(legitimate, settings.TargetRefusalShare) is not { } policy) return null;

        var replays = history.Keys.Select(k => (Key: k, Result: RateLimitReplay.Run(k, policy))).ToList();
        var legitTotal = legitimate.Sum(k => k.Total);
        var legitRefused = replays.Where(r => !abusive.Contains(r.Key.Key)).Sum(r => r.Result.Refused);
        var abusiveTotal = total - legitTotal;
        var abusiveRefused = replays.Where(r => abusive.Contains(r.Key.Key)).Sum(r => r.Result.Refused);
        var anonymousOnly = history.Keys.All(k => k.Anonymous);
        string[] key = anonymousOnly ? ["ip"] : ["consumer"];
        var name = FreeName(context.Snapshot, "suggested-" + route.Name);
        var (confidence, basis) = Confidence(settings, history.Span, total, history.Keys.Count, abusive.Count);
        var stats = PeakStats.Of(legitimate);
        var from = DateTimeOffset.FromUnixTimeSeconds(history.FirstSecond).UtcDateTime;
        var to = DateTimeOffset.FromUnixTimeSeconds(history.LastSecond).UtcDateTime;

        var values = new List<EvidenceValue>
        {
            new("legitimate requests", legitTotal, "requests"),
            new("legitimate callers", legitimate.Count, "keys"),
            new("abusive callers (set aside)", abusive.Count, "keys"),
        };
        values.AddRange(PeakValues(stats, null));
        values.Add(new("legitimate requests refused by the suggestion (replay)", legitRefused, "requests"));
        values.Add(new("legitimate share refused (replay)", legitTotal == 0 ? 0 : (double)legitRefused / legitTotal, "ratio", settings.TargetRefusalShare));
        if (abusiveTotal > 0)
        {
            values.Add(new("abusive requests", abusiveTotal, "requests"));
            values.Add(new("abusive share refused (replay)", (double)abusiveRefused / abusiveTotal, "ratio"));
        }

        values.AddRange(TopRefused(replays.Select(r => (r.Key, r.Result))));
        values.AddRange(GroupValues(legitimate, policy));

        var who = anonymousOnly ? "client address" : "consumer (client address when anonymous)";
        var explanation = string.Create(CultureInfo.InvariantCulture,
            $"Route {route.Name} has no rate limit. Over {Hours(history.Span)} its {legitimate.Count} legitimate callers peaked at {stats.SecondP99:0.#} requests per second (p99 of the per-caller peaks; max {stats.SecondMax:0.#}) and {stats.MinuteP99:0.#} per minute (max {stats.MinuteMax:0.#}). A {(policy.Algorithm == RateLimitAlgorithm.SlidingWindow ? "sliding window" : "token bucket")} per {who} of {RateLimitPatches.Describe(policy)}, replayed through the gateway's limiter over this history (each second's requests spread evenly over it), would have refused {legitRefused} of {legitTotal} legitimate requests ({Percent(legitRefused, legitTotal)}, target at most {settings.TargetRefusalShare:0.###%})");
        explanation += abusiveTotal > 0
            ? string.Create(CultureInfo.InvariantCulture, $" and {abusiveRefused} of the {abusiveTotal} requests of the {abusive.Count} caller(s) whose peaks stand far above the others ({Percent(abusiveRefused, abusiveTotal)}).")
            : ".";
        if (confidence == FindingConfidence.Low) explanation += " Confidence is low: " + basis + " is little history to set a limit from; let it learn longer before relying on it.";
        if (history.Keys.Count < RateLimitFit.MinKeysForOutliers) explanation += " With so few callers no caller is set aside as abusive.";

        var subject = new FindingSubject(SubjectKind.Route, route.Name);
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.RateLimitSuggested, subject),
            Kind = FindingKinds.RateLimitSuggested,
            Severity = FindingSeverity.Info,
            Subject = subject,
            FirstSeen = from,
            LastSeen = to,
            Title = $"Suggest {RateLimitPatches.Describe(policy)} per {key[0]} on route {route.Name}",
            Explanation = explanation,
            Evidence = new Evidence(context.WindowStart, context.Now, values) { DashboardLink = DashboardLinks.Route(route.Name, context.WindowStart, context.Now), Basis = basis },
            Confidence = confidence,
            Patch = RateLimitPatches.AddPolicy(name, policy, key, route.Name, [.. route.RateLimits.Select(l => l.Name)]),
        };
    }

    internal static (FindingConfidence Confidence, string Basis) Confidence(AdviceRateLimitOptions settings, TimeSpan span, long requests, int keys, int abusive)
    {
        var basis = string.Create(CultureInfo.InvariantCulture, $"{Hours(span)} of data, {requests:N0} requests from {keys} caller(s)");
        if (abusive > 0) basis += string.Create(CultureInfo.InvariantCulture, $", {abusive} set aside as abusive");
        var confidence = span < TimeSpan.FromDays(1) || requests < 1_000 ? FindingConfidence.Low
            : requests < settings.ConfidentRequests || keys < RateLimitFit.MinKeysForOutliers ? FindingConfidence.Medium
            : FindingConfidence.High;
        return (confidence, basis);
    }

    internal static IEnumerable<EvidenceValue> PeakValues(PeakStats stats, string? prefix)
    {
        var p = prefix is null ? "" : prefix + ": ";
        yield return new($"{p}per-second peak p50", stats.SecondP50, "req/s");
        yield return new($"{p}per-second peak p95", stats.SecondP95, "req/s");
        yield return new($"{p}per-second peak p99", stats.SecondP99, "req/s");
        yield return new($"{p}per-second peak max", stats.SecondMax, "req/s");
        yield return new($"{p}per-minute peak p50", stats.MinuteP50, "req/min");
        yield return new($"{p}per-minute peak p95", stats.MinuteP95, "req/min");
        yield return new($"{p}per-minute peak p99", stats.MinuteP99, "req/min");
        yield return new($"{p}per-minute peak max", stats.MinuteMax, "req/min");
    }

    /// <summary>The most refused keys: value = refused by the replay, baseline = the key's requests.</summary>
    internal static IEnumerable<EvidenceValue> TopRefused(IEnumerable<(KeyHistory Key, ReplayResult Result)> replays) =>
        replays.Where(r => r.Result.Refused > 0).OrderByDescending(r => r.Result.Refused).ThenBy(r => r.Key.Key, StringComparer.Ordinal).Take(TopKeys)
            .Select(r => new EvidenceValue("refused (replay): " + r.Key.Key, r.Result.Refused, "requests", r.Result.Requests));

    // The config has no per-group limit: each group's peaks and what the route's suggestion would refuse of it are evidence.
    private static IEnumerable<EvidenceValue> GroupValues(List<KeyHistory> legitimate, RatePolicy policy)
    {
        var groups = legitimate.Where(k => k.Group is not null).GroupBy(k => k.Group!, StringComparer.Ordinal).ToList();
        if (groups.Count < 2) yield break;
        foreach (var group in groups.OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var stats = PeakStats.Of([.. group]);
            yield return new($"group {group.Key}: per-second peak p99", stats.SecondP99, "req/s");
            yield return new($"group {group.Key}: per-minute peak p99", stats.MinuteP99, "req/min");
            yield return new($"group {group.Key}: refused (replay)", RateLimitReplay.Refused(group, policy), "requests", stats.Requests);
        }
    }

    private static string FreeName(GatewaySnapshot snapshot, string name)
    {
        if (!snapshot.Config.RateLimits.ContainsKey(name)) return name;
        for (var i = 2; ; i++)
        {
            var candidate = name + "-" + i.ToString(CultureInfo.InvariantCulture);
            if (!snapshot.Config.RateLimits.ContainsKey(candidate)) return candidate;
        }
    }

    internal static string Hours(TimeSpan span) => span >= TimeSpan.FromDays(2) ? string.Create(CultureInfo.InvariantCulture, $"{span.TotalDays:0.#} days")
        : span >= TimeSpan.FromHours(1) ? string.Create(CultureInfo.InvariantCulture, $"{span.TotalHours:0.#} h")
        : string.Create(CultureInfo.InvariantCulture, $"{Math.Max(1, Math.Round(span.TotalMinutes)):0} min");

    internal static string Percent(long part, long whole) => whole == 0 ? "0 %" : string.Create(CultureInfo.InvariantCulture, $"{100.0 * part / whole:0.###} %");

    [LoggerMessage(EventId = 8400, Level = LogLevel.Debug, Message = "Rate-limit advice: {Routes} route(s) with arrivals, {Findings} finding(s)")]
    private static partial void LogRun(ILogger logger, int routes, int findings);
}
