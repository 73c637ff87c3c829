
namespace Portcullis.Configuration;

/// <summary>
/// Runtime state that follows the configuration (key caches, counter stores, upstream TLS and tokens ...).
/// A reload prepares every participant with the new snapshot; only when all of them prepared does it
/// commit them all and put the snapshot in place, otherwise it aborts the prepared ones and rejects the
/// reload whole. Register with
/// <c>services.TryAddEnumerable(ServiceDescriptor.Singleton&lt;ISnapshotParticipant, X&gt;())</c>.
/// </summary>
internal interface ISnapshotParticipant
{
    /// <summary>Short name shown in the reload answer, the log and the audit record.</summary>
    string Name { get; }

    /// <summary>
    /// Builds what <paramref name="next"/> needs without touching what <paramref name="current"/> runs on
    /// (requests keep using it until the commit). May fail (return <see cref="PreparedChange.Failed"/> or
    /// throw): the reload is then rejected and nothing is applied.
    /// </summary>
    PreparedChange Prepare(GatewaySnapshot next, GatewaySnapshot current);
}

/// <summary>What a participant reports for one reload.</summary>
internal enum ParticipantOutcome
{
    /// <summary>Nothing of this participant's changed.</summary>
    Unchanged,

    /// <summary>The change takes effect with the reload.</summary>
    Applied,

    /// <summary>The change is kept pending: it takes effect only after a restart.</summary>
    RestartRequired,

    /// <summary>Prepare failed: the reload was rejected.</summary>
    Failed,

    /// <summary>Prepared, then released because another participant failed.</summary>
    Aborted,
}

/// <summary>One participant's result, for the reload answer and the audit record.</summary>
internal sealed record ParticipantResult(string Participant, string Outcome, string? Reason)
{
    internal static string Name(ParticipantOutcome outcome) => outcome switch
    {
        ParticipantOutcome.Unchanged => "unchanged",
        ParticipantOutcome.Applied => "applied",
        ParticipantOutcome.RestartRequired => "restart-required",
        ParticipantOutcome.Failed => "failed",
        _ => "aborted",
    };
}

/// <summary>
/// A prepared change: its outcome, and how to commit it (must not fail: everything that can fail belongs in
/// Prepare) or release what Prepare made when the reload is rejected.
/// </summary>
internal sealed class PreparedChange
{
    private readonly Action? _commit;
    private readonly Action? _abort;

    private PreparedChange(ParticipantOutcome outcome, string? reason, Action? commit, Action? abort)
    {
        Outcome = outcome;
        Reason = reason;
        _commit = commit;
        _abort = abort;
    }

    public ParticipantOutcome Outcome { get; }

    /// <summary>Why a restart is required, or why Prepare failed.</summary>
    public string? Reason { get; }

    public static PreparedChange Unchanged(Action? commit = null) => new(ParticipantOutcome.Unchanged, null, commit, null);

    public static PreparedChange Applied(Action commit, Action? abort = null) => new(ParticipantOutcome.Applied, null, commit, abort);

    public static PreparedChange RestartRequired(string reason, Action? commit = null) => new(ParticipantOutcome.RestartRequired, reason, commit, null);

    public static PreparedChange Failed(string reason) => new(ParticipantOutcome.Failed, reason, null, null);

    public void Commit() => _commit?.Invoke();

    public void Abort() => _abort?.Invoke();
}
