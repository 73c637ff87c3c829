namespace Portcullis.Configuration;

// The reload's transaction over its participants: prepare every one, and only when all prepared commit them all.
internal sealed partial class ConfigReloader
{
    private void Commit(List<(ISnapshotParticipant Participant, PreparedChange Change)> prepared)
    {
        foreach (var (participant, change) in prepared)
        {
            try
            {
                change.Commit();
            }
            catch (Exception ex)
            {
                // Commit must not fail (everything that can fail belongs in Prepare); if one does anyway, the
                // others are committed already: go on, and say so.
                Log.CommitFailed(_logger, participant.Name, ex);
            }
        }
    }

    /// <summary>
    /// Prepares every participant in order; at the first that fails (or throws) aborts those prepared and
    /// returns false, with the failed one last in <paramref name="results"/>.
    /// </summary>
    private bool TryPrepare(GatewaySnapshot next, GatewaySnapshot current, out List<(ISnapshotParticipant Participant, PreparedChange Change)> prepared, out List<ParticipantResult> results)
    {
        prepared = [];
        results = [];
        foreach (var participant in _participants)
        {
            PreparedChange change;
            try
            {
                change = participant.Prepare(next, current);
            }
            catch (Exception ex)
            {
                change = PreparedChange.Failed($"{ex.GetType().Name}: {ex.Message}");
            }

            if (change.Outcome == ParticipantOutcome.Failed)
            {
                foreach (var (done, doneChange) in prepared)
                {
                    try
                    {
                        doneChange.Abort();
                    }
                    catch (Exception ex)
                    {
                        Log.AbortFailed(_logger, done.Name, ex);
                    }
                }

                results = [.. prepared.Select(p => new ParticipantResult(p.Participant.Name, ParticipantResult.Name(ParticipantOutcome.Aborted), null)),
                    new ParticipantResult(participant.Name, ParticipantResult.Name(ParticipantOutcome.Failed), change.Reason)];
                prepared = [];
                return false;
            }

            prepared.Add((participant, change));
            results.Add(new ParticipantResult(participant.Name, ParticipantResult.Name(change.Outcome), change.Reason));
        }

        return true;
    }
}
