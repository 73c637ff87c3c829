using Microsoft.Extensions.DependencyInjection;

namespace Portcullis.Advice;

internal static partial class AdviceServices
{
    static partial void AddAnomalyDetectors(IServiceCollection services)
    {
        services.AddSingleton<IAdviceDetector, AnomalyUnmatchedDetector>();
        services.AddSingleton<IAdviceDetector, AnomalyRouteDetector>();
        services.AddSingleton<IAdviceDetector, AnomalyConsumerDetector>();
        services.AddSingleton<IAdviceDetector, AnomalyAuthBurstDetector>();
        services.AddSingleton<IAdviceDetector, AnomalyPathShapeDetector>();
    }
}
