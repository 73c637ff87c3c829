using System.Collections.Frozen;
using System.Reflection;
using System.Text.Json;

namespace Portcullis.Advice;

/// <summary>The state a finding is listed with: decided by an operator, or resolved by the runs.</summary>
internal enum FindingState
{
    Open,
    Acknowledged,
    Muted,
    Resolved,
}

/// <summary>
/// The JSON of findings: the admin API (GET /admin/advice), the webhook's body and `portcullis advise --format json`
/// all write it here, so they never differ (docs/advisor.md#using-it).
/// </summary>
internal static class FindingJson
{
    /// <summary>Every kind of <see cref="FindingKinds"/> (the `kind` filter accepts only these).</summary>
    public static readonly FrozenSet<string> Kinds = typeof(FindingKinds).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Where(f => f.IsLiteral && f.FieldType == typeof(string)).Select(f => (string)f.GetRawConstantValue()!).ToFrozenSet(StringComparer.Ordinal);

    /// <summary>
    /// Resolved when the runs no longer return it; else muted or acknowledged as decided. A mute lasts until unmuted;
    /// an acknowledgement until the finding is resolved and forgotten (<see cref="AdviceStateStore.Published"/>),
    /// so a later recurrence is open again.
    /// </summary>
    public static FindingState StateOf(AdviceEntry entry, FindingDecisionRecord? decision) => entry.Resolved ? FindingState.Resolved : decision?.Decision switch
    {
        FindingDecision.Muted => FindingState.Muted,
        FindingDecision.Acknowledged => FindingState.Acknowledged,
        _ => FindingState.Open,
    };

    public static string Name(FindingState state) => state.ToString().ToLowerInvariant();

    public static string Name(FindingSeverity severity) => severity.ToString().ToLowerInvariant();

    public static void Write(Utf8JsonWriter w, AdviceEntry entry, FindingDecisionRecord? decision)
    {
        var f = entry.Finding;
        w.WriteStartObject();
        w.WriteString("id", f.Id);
        w.WriteString("kind", f.Kind);
        w.WriteString("severity", Name(f.Severity));
        w.WriteStartObject("subject");
        w.WriteString("kind", SubjectKindName(f.Subject.Kind));
        w.WriteString("name", f.Subject.Name);
        w.WriteString("route", f.Subject.Route);
        w.WriteEndObject();
        w.WriteString("firstSeen", Utc(f.FirstSeen));
        w.WriteString("lastSeen", Utc(f.LastSeen));
        w.WriteString("title", f.Title);
        w.WriteString("explanation", f.Explanation);
        w.WriteString("confidence", f.Confidence.ToString().ToLowerInvariant());
        w.WriteStartObject("evidence");
        w.WriteString("from", Utc(f.Evidence.From));
        w.WriteString("to", Utc(f.Evidence.To));
        w.WriteString("basis", f.Evidence.Basis);
        w.WriteString("dashboardLink", f.Evidence.DashboardLink);
        w.WriteStartArray("values");
        foreach (var value in f.Evidence.Values)
        {
            w.WriteStartObject();
            w.WriteString("name", value.Name);
            Number(w, "value", value.Value);
            w.WriteString("unit", value.Unit);
            if (value.Baseline is { } baseline) Number(w, "baseline", baseline);
            else w.WriteNull("baseline");
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
        if (f.Patch is { } patch)
        {
            w.WriteStartObject("patch");
            w.WriteString("yaml", patch.Yaml);
            w.WriteString("summary", patch.Summary);
            w.WriteString("file", patch.File);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("patch");
        }

        w.WriteString("state", Name(StateOf(entry, decision)));
        if (entry.ResolvedAt is { } resolvedAt) w.WriteString("resolvedAt", Utc(resolvedAt));
        if (decision is not null)
        {
            // Who decided and when, whatever the state now is (a muted finding that resolved is still muted).
            w.WriteStartObject("decision");
            w.WriteString("state", decision.Decision == FindingDecision.Muted ? "muted" : "acknowledged");
            w.WriteString("at", Utc(decision.At));
            w.WriteString("by", decision.By);
            w.WriteEndObject();
        }

        w.WriteEndObject();
    }

    /// <summary>The run's header: generatedAt, enabled, storeAvailable, lastRun.</summary>
    public static void WriteHeader(Utf8JsonWriter w, FindingSet set, bool enabled)
    {
        if (set.LastRun is null) w.WriteNull("generatedAt");
        else w.WriteString("generatedAt", Utc(set.GeneratedAt));
        w.WriteBoolean("enabled", enabled);
        w.WriteBoolean("storeAvailable", set.StoreAvailable);
        if (set.LastRun is not { } run)
        {
            w.WriteNull("lastRun");
            return;
        }

        w.WriteStartObject("lastRun");
        w.WriteString("at", Utc(run.At));
        Number(w, "durationMs", Math.Round(run.Duration.TotalMilliseconds, 3));
        w.WriteNumber("allocatedBytes", run.AllocatedBytes);
        w.WriteStartArray("detectors");
        foreach (var detector in run.Detectors)
        {
            w.WriteStartObject();
            w.WriteString("name", detector.Name);
            Number(w, "durationMs", Math.Round(detector.Duration.TotalMilliseconds, 3));
            w.WriteNumber("findings", detector.Findings);
            w.WriteNumber("allocatedBytes", detector.AllocatedBytes);
            w.WriteString("error", detector.Error);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    public static string SubjectKindName(SubjectKind kind) => kind switch
    {
        SubjectKind.ConsumerGroup => "consumerGroup",
        SubjectKind.RateLimit => "rateLimit",
        _ => kind.ToString().ToLowerInvariant(),
    };

    private static void Number(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteNull(name);
    }

    private static DateTime Utc(DateTime time) => DateTime.SpecifyKind(time.Kind == DateTimeKind.Local ? time.ToUniversalTime() : time, DateTimeKind.Utc);
}
