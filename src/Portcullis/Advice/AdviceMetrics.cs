using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Observability;

namespace Portcullis.Advice;

/// <summary>
/// The advisor's instruments on the gateway's meter: open findings by kind and severity (what GET /admin/advice
/// lists by default: not acknowledged, muted or resolved), each run's duration, and webhook deliveries that failed.
/// </summary>
internal sealed class AdviceMetrics(AdviceStateStore state, IServiceProvider services) : IMetricsContributor, IAdviceListener
{
    // Resolved when observed: the engine itself depends on every listener, this one included.
    private AdviceEngine Engine => services.GetRequiredService<AdviceEngine>();

    private Histogram<double>? _runDuration;

    public void Register(Meter meter)
    {
        meter.CreateObservableGauge("portcullis.advice.findings", ObserveFindings, "{finding}", "Open findings of the traffic advisor (not acknowledged, muted or resolved), by kind and severity.");
        _runDuration = meter.CreateHistogram("portcullis.advice.run.duration", "s", "Time one advisor run (every detector) took.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
        meter.CreateObservableCounter("portcullis.advice.webhook.failures", ObserveWebhook, "{finding}",
            "New findings the webhook did not deliver: reason attempts (every attempt failed) or queue-full (dropped before sending).");
    }

    public void Published(FindingSet set, IReadOnlyList<Finding> newFindings)
    {
        if (set.LastRun is { } run) _runDuration?.Record(run.Duration.TotalSeconds);
    }

    private IEnumerable<Measurement<long>> ObserveFindings()
    {
        var decisions = state.Current;
        return Engine.Current.Entries
            .Where(e => FindingJson.StateOf(e, decisions.GetValueOrDefault(e.Finding.Id)) == FindingState.Open)
            .GroupBy(e => (e.Finding.Kind, e.Finding.Severity))
            .Select(g => new Measurement<long>(g.LongCount(), new KeyValuePair<string, object?>("kind", g.Key.Kind), new KeyValuePair<string, object?>("severity", FindingJson.Name(g.Key.Severity))));
    }

    private IEnumerable<Measurement<long>> ObserveWebhook()
    {
        if (services.GetService<AdviceWebhook>() is not { } webhook) yield break;
        yield return new Measurement<long>(webhook.GaveUp, new KeyValuePair<string, object?>("reason", "attempts"));
        yield return new Measurement<long>(webhook.Dropped, new KeyValuePair<string, object?>("reason", "queue-full"));
    }
}
