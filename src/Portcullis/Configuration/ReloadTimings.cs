using System.Diagnostics;

namespace Portcullis.Configuration;

/// <summary>
/// Where a reload's time went, phase by phase, in the order they run: reading and parsing the files, binding them
/// to the config records, compiling the snapshot, the restart-required diff, preparing the participants, and the
/// swap (YARP's apply, the endpoints and the route table). Shown in the reload answer and its log line: at tens of
/// thousands of routes it says which part of a slow reload is the file and which is the gateway.
/// </summary>
internal sealed class ReloadTimings
{
    public static readonly string[] Phases = ["parse", "bind", "compile", "restartDiff", "prepare", "swap"];

    private readonly TimeSpan[] _elapsed = new TimeSpan[Phases.Length];
    private readonly bool[] _measured = new bool[Phases.Length];

    /// <summary>Each phase measured so far, by name (phases a rejected or unchanged reload never reached are absent).</summary>
    public IEnumerable<(string Phase, TimeSpan Elapsed)> Measured
    {
        get
        {
            for (var i = 0; i < Phases.Length; i++)
            {
                if (_measured[i]) yield return (Phases[i], _elapsed[i]);
            }
        }
    }

    /// <summary>Adds the time since <paramref name="startedTimestamp"/> (a <see cref="Stopwatch"/> timestamp) to <paramref name="phase"/>; returns now's timestamp.</summary>
    public long Add(string phase, long startedTimestamp)
    {
        var now = Stopwatch.GetTimestamp();
        var index = Array.IndexOf(Phases, phase);
        if (index < 0) throw new ArgumentOutOfRangeException(nameof(phase), phase, "not a reload phase");
        _elapsed[index] += Stopwatch.GetElapsedTime(startedTimestamp, now);
        _measured[index] = true;
        return now;
    }

    /// <summary>"parse 812 ms, bind 455 ms, …" for the log line.</summary>
    public override string ToString() =>
        string.Join(", ", Measured.Select(m => $"{m.Phase} {m.Elapsed.TotalMilliseconds:F0} ms"));
}
