using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Portcullis.Advice;

internal static partial class AdviceServices
{
    static partial void AddServiceDetectors(IServiceCollection services)
    {
        services.AddSingleton<IAdviceDetector, ServiceUpstreamDetector>();
        services.AddSingleton<IAdviceDetector, ServiceTimeoutDetector>();
        services.AddSingleton<IAdviceDetector, ServiceHealthDetector>();
        services.AddSingleton<IAdviceDetector, ServiceRouteDetector>();
        services.AddSingleton<IAdviceDetector, ServiceHeaderDetector>();
        services.AddSingleton<IAdviceDetector, ServiceTrustDetector>();

        // The live state; the CLI's offline run registers OfflineAdviceRuntime first (TryAdd keeps it).
        services.TryAddSingleton<IAdviceRuntime, LiveAdviceRuntime>();
    }
}
