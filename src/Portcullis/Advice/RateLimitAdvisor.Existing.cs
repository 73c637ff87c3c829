using System.Globalization;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using Portcullis.Routing;
using Portcullis.Traffic;

namespace Portcullis.Advice;

/// <summary>The checks of the limits already configured: too loose, too tight, keyed on a part requests never carry.</summary>
internal sealed partial class RateLimitAdvisor
{
    private static IEnumerable<Finding> CheckExisting(AdviceContext context, Dictionary<string, RouteHistory> history, RateLimitHistoryCache? cache)
    {
        var settings = context.Settings.RateLimits;
        foreach (var policy in context.Snapshot.RateLimits.Values.OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            context.Cancellation.ThrowIfCancellationRequested(); // a policy's replays can take seconds on a cold run
            var routes = context.Snapshot.Routes.Values.Where(r => r.RateLimits.Any(l => l.Name == policy.Name)).OrderBy(r => r.Name, StringComparer.Ordinal).ToList();
            var histories = routes.Select(r => history.GetValueOrDefault(r.Name)).OfType<RouteHistory>().ToList();
            if (histories.Count == 0) continue;
            foreach (var finding in KeyAbsent(context, policy, histories)) yield return finding;
            var total = histories.Sum(h => h.Total);
            if (total < settings.MinRequests) continue;
            var keys = GroupByPolicyKey(policy, histories, cache);
            if (keys is null)
            {
                if (ObservedTooTight(context, policy, routes, histories) is { } observed) yield return observed;
                continue;
            }

            var abusive = RateLimitFit.Abusive(keys);
            var legitimate = keys.Where(k => !abusive.Contains(k.Key)).ToList();
            if (legitimate.Count == 0) continue;
            var current = RatePolicy.Of(policy);
            var span = TimeSpan.FromSeconds(histories.Max(h => h.LastSecond) - histories.Min(h => h.FirstSecond) + 1);
            var (confidence, basis) = Confidence(settings, span, total, keys.Count, abusive.Count);
            var replays = legitimate.Select(k => (Key: k, Result: RateLimitReplay.Run(k, current))).ToList();
            var tight = replays.Where(r => r.Result.Refused >= 10 && (double)r.Result.Refused / r.Result.Requests >= settings.TooTightShare).ToList();
            var routeList = string.Join(", ", routes.Select(r => r.Name));
            var subject = new FindingSubject(SubjectKind.RateLimit, policy.Name, routes.Count == 1 ? routes[0].Name : null);
            var evidenceFrom = context.WindowStart;
            var link = DashboardLinks.Samples(context.WindowStart, context.Now, ("route", routes.Count == 1 ? routes[0].Name : null), ("reason", ReasonCodes.RateLimitExceeded.Code));
            var (first, last) = (Time(histories.Min(h => h.FirstSecond)), Time(histories.Max(h => h.LastSecond)));

            if (tight.Count > 0)
            {
                var suggested = RateLimitFit.Suggest(legitimate, settings.TargetRefusalShare, current.Algorithm, current.Per);
                var refused = replays.Sum(r => r.Result.Refused);
                var legitTotal = legitimate.Sum(k => k.Total);
                var worst = tight.MaxBy(r => (double)r.Result.Refused / r.Result.Requests);
                var values = new List<EvidenceValue>
                {
                    new("legitimate requests", legitTotal, "requests"),
                    new("legitimate requests refused (replay)", refused, "requests"),
                    new("callers with a large share refused", tight.Count, "keys"),
                    new("largest share of one caller refused", (double)worst.Result.Refused / worst.Result.Requests, "ratio", settings.TooTightShare),
                    new("refused by existing limits (recorded)", keys.Sum(k => k.Limited), "requests"),
                };
                values.AddRange(TopRefused(replays.Select(r => (r.Key, r.Result))));
                values.AddRange(PeakValues(PeakStats.Of(legitimate), null));
                var explanation = string.Create(CultureInfo.InvariantCulture,
                    $"Rate limit {policy.Name} ({RateLimitPatches.Describe(current)}, on {routeList}) refuses a large share of legitimate callers' requests: replayed over {Hours(span)} it refused {refused} of {legitTotal} ({Percent(refused, legitTotal)}); {tight.Count} caller(s) lost at least {settings.TooTightShare:0.#%} of their requests, {worst.Key.Key} {Percent(worst.Result.Refused, worst.Result.Requests)}.");
                ConfigPatch? patch = null;
                if (suggested is not null && suggested.PerMinuteCeiling > current.PerMinuteCeiling)
                {
                    var after = RateLimitReplay.Refused(legitimate, suggested);
                    explanation += string.Create(CultureInfo.InvariantCulture, $" {RateLimitPatches.Describe(suggested)} would have refused {after} ({Percent(after, legitTotal)}).");
                    patch = RateLimitPatches.Adjust(policy.Name, current, suggested);
                }

                yield return NewFinding(FindingKinds.RateLimitTooTight, FindingSeverity.Warning, subject, first, last,
                    $"Rate limit {policy.Name} refuses {Percent(refused, legitTotal)} of legitimate requests", explanation,
                    new Evidence(evidenceFrom, context.Now, values) { DashboardLink = link, Basis = basis }, confidence, patch);
                continue;
            }

            // Too loose: no caller came near it (peak over any `per` far below the limit) and it never refused.
            var perSeconds = Math.Max(1, (long)Math.Ceiling(current.Per.TotalSeconds));
            var scale = current.Per.TotalSeconds < 1 ? current.Per.TotalSeconds : 1; // a sub-second per: the peak second, scaled
            var peak = keys.Max(k => k.PeakIn(perSeconds) * scale);
            var use = peak / current.Limit;
            if (use < settings.TooLooseUse && keys.All(k => k.Limited == 0))
            {
                var suggested = RateLimitFit.Suggest(legitimate, settings.TargetRefusalShare, current.Algorithm, current.Per);
                var values = new List<EvidenceValue>
                {
                    new("requests", total, "requests"),
                    new("highest use of the limit", use, "ratio", settings.TooLooseUse),
                    new(string.Create(CultureInfo.InvariantCulture, $"highest requests of one caller in {DurationFormat.Format(current.Per)}"), peak, "requests", current.Limit),
                };
                values.AddRange(PeakValues(PeakStats.Of(legitimate), null));
                var explanation = string.Create(CultureInfo.InvariantCulture,
                    $"Rate limit {policy.Name} ({RateLimitPatches.Describe(current)}, on {routeList}) never came near triggering over {Hours(span)}: the busiest caller's most requests in any {DurationFormat.Format(current.Per)} was {peak:0.#}, {use:0.#%} of the limit, and it refused nothing. ") +
                    "A limit this far above real traffic does not cap an abusive caller before the upstream feels it.";
                ConfigPatch? patch = null;
                if (suggested is not null && suggested.PerMinuteCeiling < current.PerMinuteCeiling)
                {
                    var after = RateLimitReplay.Refused(legitimate, suggested);
                    explanation += string.Create(CultureInfo.InvariantCulture, $" {RateLimitPatches.Describe(suggested)} would have refused {after} of the {legitimate.Sum(k => k.Total)} legitimate requests (replayed).");
                    patch = RateLimitPatches.Adjust(policy.Name, current, suggested);
                }

                if (confidence == FindingConfidence.Low) explanation += " Confidence is low: " + basis + ".";
                yield return NewFinding(FindingKinds.RateLimitTooLoose, FindingSeverity.Info, subject, first, last,
                    string.Create(CultureInfo.InvariantCulture, $"Rate limit {policy.Name} is never approached (peak use {use:0.#%})"), explanation,
                    new Evidence(evidenceFrom, context.Now, values) { DashboardLink = DashboardLinks.Route(routes[0].Name, context.WindowStart, context.Now), Basis = basis }, confidence, patch);
            }
        }
    }

    /// <summary>
    /// The histories as the policy counts them: by consumer (the rate key), consumer group, route, or the client
    /// address when every caller is anonymous, and combinations of these. Null when the key has another part
    /// (a header, claim, query, path …, or ip with authenticated callers): the arrivals do not hold it, so the
    /// policy cannot be replayed, only its recorded refusals read.
    /// </summary>
    internal static List<KeyHistory>? GroupByPolicyKey(CompiledRateLimit policy, List<RouteHistory> histories, RateLimitHistoryCache? cache = null)
    {
        var groups = new Dictionary<string, List<KeyHistory>>(StringComparer.Ordinal);
        foreach (var route in histories)
        {
            foreach (var key in route.Keys)
            {
                var parts = new List<string>();
                foreach (var part in policy.Key.Parts)
                {
                    switch (part.Kind)
                    {
                        case RequestSourceKind.Consumer:
                            parts.Add(key.Key);
                            break;
                        case RequestSourceKind.ConsumerGroup:
                            parts.Add(key.Group ?? key.Key);
                            break;
                        case RequestSourceKind.Route:
                            parts.Add(route.Route);
                            break;
                        case RequestSourceKind.ClientIp when key.Anonymous:
                            parts.Add(key.Key);
                            break;
                        default:
                            return null;
                    }
                }

                var composite = string.Join('\u001f', parts);
                if (!groups.TryGetValue(composite, out var list)) groups[composite] = list = [];
                list.Add(key);
            }
        }

        return [.. groups.Select(g => cache?.Merged(policy.Name, g.Key, g.Value) ?? KeyHistory.Merge(g.Key, g.Value))];
    }

    // A policy the arrivals cannot replay: too tight from the refusals recorded on routes where it is the only rate limit.
    private static Finding? ObservedTooTight(AdviceContext context, CompiledRateLimit policy, List<CompiledRoute> routes, List<RouteHistory> histories)
    {
        var settings = context.Settings.RateLimits;
        var only = histories.Where(h => routes.First(r => r.Name == h.Route).RateLimits.Length == 1).SelectMany(h => h.Keys).ToList();
        var tight = only.Where(k => k.Limited >= 10 && (double)k.Limited / k.Total >= settings.TooTightShare).OrderByDescending(k => (double)k.Limited / k.Total).ToList();
        var abusive = RateLimitFit.Abusive(only);
        tight.RemoveAll(k => abusive.Contains(k.Key));
        if (tight.Count == 0) return null;
        var worst = tight[0];
        var span = TimeSpan.FromSeconds(histories.Max(h => h.LastSecond) - histories.Min(h => h.FirstSecond) + 1);
        var (confidence, basis) = Confidence(settings, span, only.Sum(k => k.Total), only.Count, abusive.Count);
        var values = new List<EvidenceValue>
        {
            new("callers with a large share refused", tight.Count, "keys"),
            new("largest share of one caller refused (recorded)", (double)worst.Limited / worst.Total, "ratio", settings.TooTightShare),
        };
        values.AddRange(tight.Take(TopKeys).Select(k => new EvidenceValue("refused (recorded): " + k.Key, k.Limited, "requests", k.Total)));
        var subject = new FindingSubject(SubjectKind.RateLimit, policy.Name, routes.Count == 1 ? routes[0].Name : null);
        var explanation = string.Create(CultureInfo.InvariantCulture,
            $"Rate limit {policy.Name} (key {policy.Key}) refused {Percent(worst.Limited, worst.Total)} of {worst.Key}'s requests over {Hours(span)}, and at least {settings.TooTightShare:0.#%} of {tight.Count} legitimate caller(s)'. ") +
            "Its key has parts the advisor's history does not hold, so it is not replayed and no new limit is suggested: raise the limit, or check the key.";
        return NewFinding(FindingKinds.RateLimitTooTight, FindingSeverity.Warning, subject, Time(histories.Min(h => h.FirstSecond)), Time(histories.Max(h => h.LastSecond)),
            $"Rate limit {policy.Name} refuses {Percent(worst.Limited, worst.Total)} of {worst.Key}'s requests", explanation,
            new Evidence(context.WindowStart, context.Now, values) { DashboardLink = DashboardLinks.Samples(context.WindowStart, context.Now, ("reason", ReasonCodes.RateLimitExceeded.Code)), Basis = basis }, confidence, null);
    }

    // Parts of the policy's key that (nearly) no request of a route carried: the traffic stage records each missing part.
    private static IEnumerable<Finding> KeyAbsent(AdviceContext context, CompiledRateLimit policy, List<RouteHistory> histories)
    {
        var settings = context.Settings.RateLimits;
        var parts = policy.Key.Parts.Select(p => p.ToString()).ToList();
        foreach (var route in histories)
        {
            var total = route.Total;
            if (total < settings.MinRequests) continue;
            var absent = new List<(string Part, long Missing)>();
            for (var i = 0; i < parts.Count; i++)
            {
                var missing = route.Missing.GetValueOrDefault(policy.MissingLabels[i]);
                if ((double)missing / total >= settings.KeyAbsentShare) absent.Add((parts[i], missing));
            }

            if (absent.Count == 0) continue;
            var subject = new FindingSubject(SubjectKind.RateLimit, policy.Name, route.Route);
            var names = string.Join(", ", absent.Select(a => a.Part));
            var values = absent.Select(a => new EvidenceValue($"requests without {a.Part}", a.Missing, "requests", total)).ToList();
            var explanation = string.Create(CultureInfo.InvariantCulture,
                $"Rate limit {policy.Name} counts by [{string.Join(", ", parts)}], but {Percent(absent.Min(a => a.Missing), total)} of the {total} requests on route {route.Route} over the window carried no {names}. ") +
                "A missing part is replaced by the client address, so the limit counts per address instead of what it names: callers behind one proxy share a budget and the intended separation does not happen. " +
                "Have clients send it, key on a part they carry, or (the patch) say explicitly what it counts today.";
            yield return NewFinding(FindingKinds.RateLimitKeyAbsent, FindingSeverity.Warning, subject, Time(route.FirstSecond), Time(route.LastSecond),
                $"Rate limit {policy.Name} is keyed on {names}, which requests on {route.Route} do not carry", explanation,
                new Evidence(context.WindowStart, context.Now, values) { DashboardLink = DashboardLinks.Route(route.Route, context.WindowStart, context.Now), Basis = string.Create(CultureInfo.InvariantCulture, $"{Hours(route.Span)} of data, {total:N0} requests") },
                route.Span < TimeSpan.FromDays(1) ? FindingConfidence.Medium : FindingConfidence.High,
                RateLimitPatches.Rekey(policy.Name, parts, [.. absent.Select(a => a.Part)]));
        }
    }

    private static Finding NewFinding(string kind, FindingSeverity severity, FindingSubject subject, DateTime first, DateTime last, string title, string explanation, Evidence evidence, FindingConfidence confidence, ConfigPatch? patch) => new()
    {
        Id = Finding.MakeId(kind, subject, subject.Route),
        Kind = kind,
        Severity = severity,
        Subject = subject,
        FirstSeen = first,
        LastSeen = last,
        Title = title,
        Explanation = explanation,
        Evidence = evidence,
        Confidence = confidence,
        Patch = patch,
    };

    private static DateTime Time(long unixSeconds) => DateTimeOffset.FromUnixTimeSeconds(unixSeconds).UtcDateTime;
}
