using System.Globalization;
using DuckDB.NET.Data;
using Portcullis.Pipeline;

namespace Portcullis.Advice;

/// <summary>
/// auth.failure-burst: many 401/403 refusals of the identity, authorization or session stage from one client address
/// (or one consumer) in the burst window, far above that caller's usual pace. Credential stuffing and key guessing
/// try many credentials fast; a client whose token expired repeats one stale-credential reason at the pace it
/// always calls, and is not a burst.
/// </summary>
internal sealed class AnomalyAuthBurstDetector : IAdviceDetector
{
    /// <summary>Reasons a legitimate client gets when its own credential went stale or is missing: not guessing.</summary>
    internal static readonly HashSet<string> StaleReasons = new(StringComparer.Ordinal)
    {
        ReasonCodes.JwtExpired, ReasonCodes.JwtNotYetValid, ReasonCodes.JwtLifetime, ReasonCodes.ApiKeyExpired, ReasonCodes.ApiKeyRevoked,
        ReasonCodes.ApiKeyNotYetValid, ReasonCodes.IntrospectionInactive, ReasonCodes.SessionMissing, ReasonCodes.SessionInvalid, ReasonCodes.AuthMissing,
    };

    // The stale reasons as bound parameters ($s0, $s1, …) of an IN list.
    private static readonly (string Name, object? Value)[] StaleParameters = [.. StaleReasons.Order(StringComparer.Ordinal).Select((r, i) => ("s" + i.ToString(CultureInfo.InvariantCulture), (object?)r))];
    private static readonly string StaleIn = string.Join(", ", StaleParameters.Select(p => "$" + p.Name));

    public string Name => "anomalies.auth";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        if (!AnomalyStore.Runs(context)) return [];
        var options = context.Settings.Anomalies;
        var now = context.Now;
        var from = now - options.BurstWindow;
        var paceFrom = from.AddHours(-1);
        var successRate = context.Snapshot.Analytics?.SuccessRate ?? 0.01;
        using var connection = context.Analytics!.OpenConnection(paceFrom, now.AddMinutes(1));
        var storeStart = AnomalyStore.FirstMinute(connection, paceFrom) ?? from;
        var failures = Failures(connection, from, now);
        var findings = new List<Finding>();
        var reportedClients = new HashSet<string>(StringComparer.Ordinal);

        foreach (var group in failures.Where(r => r.Client is not null).GroupBy(r => r.Client!, StringComparer.Ordinal))
        {
            if (!CouldBurst(options, group)) continue; // no pace query for an address Burst would pass over whatever its pace
            var pace = ClientPace(connection, group.Key, paceFrom > storeStart ? paceFrom : storeStart, from, successRate);
            if (Burst(context, from, new FindingSubject(SubjectKind.Client, group.Key), [.. group], pace) is { } finding)
            {
                findings.Add(finding);
                reportedClients.Add(group.Key);
            }
        }

        // One consumer failing from several addresses (403s name the consumer; 401s rarely can).
        foreach (var group in failures.Where(r => r.Consumer is not null).GroupBy(r => r.Consumer!, StringComparer.Ordinal))
        {
            var addresses = group.Select(r => r.Client).Distinct().ToList();
            if (addresses.Count == 1 && addresses[0] is { } only && reportedClients.Contains(only)) continue;
            if (!CouldBurst(options, group)) continue;
            var pace = ConsumerPace(connection, group.Key, paceFrom > storeStart ? paceFrom : storeStart, from);
            if (Burst(context, from, new FindingSubject(SubjectKind.Consumer, group.Key), [.. group], pace) is { } finding) findings.Add(finding);
        }

        return findings;
    }

    // Burst's own first two tests with the smallest pace it uses (1 a minute): a group failing them is never a
    // finding, so the per-address or per-consumer pace query (one scan each; thousands of ordinary 401s a cycle on
    // a busy store) is not run for it.
    private static bool CouldBurst(Configuration.AdviceAnomalyOptions options, IEnumerable<FailureRow> rows)
    {
        var count = rows.Sum(r => r.Count);
        return count >= options.MinAuthFailures && count / options.BurstWindow.TotalMinutes >= options.AuthBurstRatio;
    }

    internal sealed record FailureRow(string? Client, string? Consumer, string? Route, string Reason, int Status, long Count, DateTime First, DateTime Last);

    private static Finding? Burst(AdviceContext context, DateTime from, FindingSubject subject, List<FailureRow> rows, (double PerMinute, TimeSpan Over) pace)
    {
        var options = context.Settings.Anomalies;
        var count = rows.Sum(r => r.Count);
        if (count < options.MinAuthFailures) return null;
        var minutes = options.BurstWindow.TotalMinutes;
        var rate = count / minutes;
        if (rate < options.AuthBurstRatio * Math.Max(pace.PerMinute, 1)) return null;

        var consumers = rows.Where(r => r.Consumer is not null).Select(r => r.Consumer!).Distinct(StringComparer.Ordinal).ToList();
        var addresses = rows.Where(r => r.Client is not null).Select(r => r.Client!).Distinct(StringComparer.Ordinal).ToList();
        var routes = rows.Where(r => r.Route is not null).Select(r => r.Route!).Distinct(StringComparer.Ordinal).ToList();
        var reasons = rows.GroupBy(r => r.Reason).OrderByDescending(g => g.Sum(r => r.Count)).Select(g => (Reason: g.Key, Count: g.Sum(r => r.Count))).ToList();
        var staleOnly = reasons.All(r => StaleReasons.Contains(r.Reason)) && consumers.Count <= 1;
        var severity = staleOnly ? FindingSeverity.Info : count >= 10 * options.MinAuthFailures || consumers.Count >= 10 ? FindingSeverity.Critical : FindingSeverity.Warning;
        var who = subject.Kind == SubjectKind.Client ? $"client {subject.Name}" : $"consumer {subject.Name}";
        var pattern = staleOnly
            ? $"Every refusal is a stale or missing credential ({string.Join(", ", reasons.Select(r => r.Reason))}) for at most one consumer: a client retrying in a loop with a credential that stopped working, not guessing. It is reported because it calls {rate / Math.Max(pace.PerMinute, 1):0.#}× faster than it used to."
            : consumers.Count >= 3
                ? $"{consumers.Count} different consumers were refused from it: the pattern of credential stuffing (trying many stolen credentials) or of probing which routes each identity may call."
                : $"The refusals ({string.Join(", ", reasons.Take(4).Select(r => string.Create(CultureInfo.InvariantCulture, $"{r.Reason} ×{r.Count}")))}) are the pattern of key or token guessing.";
        var paceText = pace.Over > TimeSpan.Zero
            ? string.Create(CultureInfo.InvariantCulture, $"its usual pace was {pace.PerMinute:0.#} requests a minute over the {AnomalyStore.Span(pace.Over)} before")
            : "it had not been seen before";
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.AuthFailureBurst, subject),
            Kind = FindingKinds.AuthFailureBurst,
            Severity = severity,
            Subject = subject,
            FirstSeen = rows.Min(r => r.First),
            LastSeen = rows.Max(r => r.Last),
            Title = string.Create(CultureInfo.InvariantCulture, $"{count} authentication failures from {who} in {minutes:0} minutes") + (consumers.Count >= 3 ? $" across {consumers.Count} consumers" : ""),
            Explanation = string.Create(CultureInfo.InvariantCulture,
                $"The gateway refused {count} requests from {who} with 401/403 in the last {minutes:0} minutes ({rate:0.#} a minute, on {routes.Count} route(s){(addresses.Count > 1 ? $", from {addresses.Count} addresses" : "")}); {paceText}. ") + pattern,
            Evidence = new Evidence(from, context.Now,
                [new EvidenceValue("auth failures per minute", Math.Round(rate, 2), "req/min", Math.Round(pace.PerMinute, 2)), new EvidenceValue("auth failures", count, "requests"),
                 new EvidenceValue("distinct consumers", consumers.Count), new EvidenceValue("distinct routes", routes.Count),
                 .. reasons.Take(5).Select(r => new EvidenceValue("reason " + r.Reason, r.Count, "requests"))])
            {
                DashboardLink = subject.Kind == SubjectKind.Consumer
                    ? DashboardLinks.Samples(from, context.Now, ("consumer", subject.Name), ("status", "4xx"))
                    : DashboardLinks.Samples(from, context.Now, ("status", "4xx")),
                Basis = pace.Over > TimeSpan.Zero ? $"samples of the last {minutes:0} minutes; pace from the {AnomalyStore.Span(pace.Over)} before" : $"samples of the last {minutes:0} minutes; no earlier traffic from it",
            },
            Confidence = staleOnly ? FindingConfidence.Medium : FindingConfidence.High,
        };
    }

    // Every 401/403 of the identity, authorization or session stage (by its reason code, never its status text).
    private static List<FailureRow> Failures(DuckDBConnection connection, DateTime from, DateTime now)
    {
        using var command = AnomalyStore.Command(connection, """
            SELECT client, consumer, route, reason, status, count(*)::BIGINT, min(ts), max(ts)
            FROM samples WHERE ts >= $from AND ts <= $now AND status IN (401, 403) AND reason IS NOT NULL
            GROUP BY client, consumer, route, reason, status
            """, ("from", from), ("now", now));
        using var reader = command.ExecuteReader();
        var result = new List<FailureRow>();
        while (reader.Read())
        {
            var reason = reader.GetString(3);
            if (ReasonCodes.Find(reason) is not { Stage: ReasonStage.Identity or ReasonStage.Authorization or ReasonStage.Session }) continue;
            result.Add(new FailureRow(AnomalyStore.NullableString(reader, 0), AnomalyStore.NullableString(reader, 1), AnomalyStore.NullableString(reader, 2), reason,
                reader.GetInt16(4), reader.GetInt64(5), AnomalyStore.Utc(reader.GetValue(6)), AnomalyStore.Utc(reader.GetValue(7))));
        }

        return result;
    }

    // Requests a minute from this address before the window: its sampled successes scaled up by the success
    // sampling rate (samples are all there is per address), plus every other sampled request except guessing-like
    // auth refusals (stale-credential ones count: an expired token repeated at its old pace is that pace), so a
    // burst that goes on does not become its own baseline.
    private static (double, TimeSpan) ClientPace(DuckDBConnection connection, string client, DateTime from, DateTime to, double successRate)
    {
        if (to <= from) return (0, TimeSpan.Zero);
        using var command = AnomalyStore.Command(connection, $"""
            SELECT count(*) FILTER (WHERE status < 400)::BIGINT,
                   count(*) FILTER (WHERE status >= 400 AND (status NOT IN (401, 403) OR reason IS NULL OR reason IN ({StaleIn})))::BIGINT
            FROM samples WHERE client = $client AND ts >= $from AND ts < $to
            """, [("client", client), ("from", from), ("to", to), .. StaleParameters]);
        using var reader = command.ExecuteReader();
        reader.Read();
        var estimate = (successRate > 0 ? reader.GetInt64(0) / successRate : 0) + reader.GetInt64(1);
        return (estimate / (to - from).TotalMinutes, to - from);
    }

    private static (double, TimeSpan) ConsumerPace(DuckDBConnection connection, string consumer, DateTime from, DateTime to)
    {
        if (to <= from) return (0, TimeSpan.Zero);
        using var command = AnomalyStore.Command(connection, $"""
            SELECT coalesce(sum(requests), 0)::BIGINT FROM rollups
            WHERE consumer = $consumer AND minute >= $from AND minute < $to AND (status NOT IN (401, 403) OR reason IS NULL OR reason IN ({StaleIn}))
            """, [("consumer", consumer), ("from", AnomalyWindows.Floor(from, TimeSpan.FromMinutes(1))), ("to", AnomalyWindows.Floor(to, TimeSpan.FromMinutes(1))), .. StaleParameters]);
        var total = Convert.ToInt64(command.ExecuteScalar(), CultureInfo.InvariantCulture);
        return (total / (to - from).TotalMinutes, to - from);
    }
}
