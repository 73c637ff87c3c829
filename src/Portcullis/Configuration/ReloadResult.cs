namespace Portcullis.Configuration;

/// <summary>What a reload attempt did.</summary>
internal sealed record ReloadResult(
    bool Applied,
    bool Changed,
    long Generation,
    string Trigger,
    DateTimeOffset At,
    IReadOnlyList<ConfigDiagnostic> Diagnostics,
    IReadOnlyList<string> RestartRequired)
{
    /// <summary>From the reload's start (once no other reload ran) to its answer; zero for the start-up result.</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>Where <see cref="Duration"/> went; null for the start-up result.</summary>
    public ReloadTimings? Timings { get; init; }

    /// <summary>Writes durationMs, phasesMs, phasesAllocatedMB, gcPauseMs and gcCollections (when the reload measured them: not for the start-up result).</summary>
    public void WriteTimings(System.Text.Json.Utf8JsonWriter w)
    {
        if (Timings is null) return;
        w.WriteNumber("durationMs", Math.Round(Duration.TotalMilliseconds, 1));
        w.WriteStartObject("phasesMs");
        foreach (var (phase, elapsed) in Timings.Measured) w.WriteNumber(phase, Math.Round(elapsed.TotalMilliseconds, 1));
        w.WriteEndObject();
        w.WriteStartObject("phasesAllocatedMB");
        foreach (var (phase, bytes) in Timings.Allocated) w.WriteNumber(phase, Math.Round(bytes / 1048576.0, 1));
        w.WriteEndObject();
        w.WriteNumber("gcPauseMs", Math.Round(Timings.GcPause.TotalMilliseconds, 1));
        w.WriteStartObject("gcCollections");
        for (var gen = 0; gen < 3; gen++) w.WriteNumber("gen" + gen, Timings.Collections[gen]);
        w.WriteEndObject();
    }

    /// <summary>Each participant's result (empty when nothing was prepared: unchanged or invalid file).</summary>
    public IReadOnlyList<ParticipantResult> Participants { get; init; } = [];

    /// <summary>Writes the reload answer's participants array (POST/GET /admin/reload, the audit log).</summary>
    public void WriteParticipants(System.Text.Json.Utf8JsonWriter w)
    {
        w.WriteStartArray("participants");
        foreach (var p in Participants)
        {
            w.WriteStartObject();
            w.WriteString("name", p.Participant);
            w.WriteString("result", p.Outcome);
            if (p.Reason is not null) w.WriteString("reason", p.Reason);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }
}
