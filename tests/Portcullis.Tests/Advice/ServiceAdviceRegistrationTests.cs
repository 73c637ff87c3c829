using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Clusters;

namespace Portcullis.Tests.Advice;

/// <summary>AddAdviceDetectors registers the six service detectors and the live runtime, which is live only inside the gateway.</summary>
public sealed class ServiceAdviceRegistrationTests
{
    [Fact]
    public void ServiceDetectorsAndTheRuntimeAreRegistered()
    {
        using var offline = new ServiceCollection().AddLogging().AddSingleton(TimeProvider.System).AddAdviceDetectors().BuildServiceProvider();
        var names = offline.GetServices<IAdviceDetector>().Select(d => d.Name).Where(n => n.StartsWith("services.", StringComparison.Ordinal)).Order(StringComparer.Ordinal);
        Assert.Equal(["services.headers", "services.health", "services.routes", "services.timeouts", "services.trust", "services.upstream"], names);

        // A host that only built the detectors (the CLI) has no health history: offline.
        Assert.False(offline.GetRequiredService<IAdviceRuntime>().IsLive);

        using var gateway = new ServiceCollection().AddLogging().AddSingleton(TimeProvider.System).AddSingleton<DestinationHealthHistory>().AddAdviceDetectors().BuildServiceProvider();
        Assert.True(gateway.GetRequiredService<IAdviceRuntime>().IsLive);
    }
}
