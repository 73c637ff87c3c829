using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// Runs a service detector against a running gateway: its live snapshot, its analytics store and its live runtime
/// (health history, certificates, issuer key caches), as the advisor's engine does each run. Polls until the
/// expected finding appears, within a generous deadline.
/// </summary>
internal static class ServiceAdviceGateway
{
    public static AdviceContext Context(TestGateway gateway)
    {
        var snapshot = gateway.Services.GetRequiredService<SnapshotStore>().Current;
        var database = gateway.Services.GetService<AnalyticsDatabase>();
        return new AdviceContext
        {
            Now = DateTime.UtcNow,
            Snapshot = snapshot,
            Settings = snapshot.Advice!,
            Analytics = database is null ? null : AnalyticsSource.Local(database),
            Runtime = new LiveAdviceRuntime(gateway.Services),
        };
    }

    /// <summary>Runs the detector until it returns a finding of the kind (while <paramref name="drive"/> sends traffic between runs).</summary>
    public static async Task<Finding> UntilAsync(TestGateway gateway, IAdviceDetector detector, string kind, Func<Task>? drive = null, TimeSpan? timeout = null)
    {
        var watch = Stopwatch.StartNew();
        var limit = timeout ?? TimeSpan.FromSeconds(90);
        IReadOnlyList<Finding> last = [];
        while (true)
        {
            if (drive is not null) await drive();
            last = detector.Detect(Context(gateway));
            if (last.FirstOrDefault(f => f.Kind == kind) is { } finding) return finding;
            Assert.True(watch.Elapsed < limit, $"no {kind} finding within {limit}; last run: [{string.Join("; ", last.Select(f => f.Kind + " " + f.Title))}]");
            if (drive is null) await Task.Delay(200);
        }
    }
}
