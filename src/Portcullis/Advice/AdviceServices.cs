using Microsoft.Extensions.DependencyInjection;

namespace Portcullis.Advice;

/// <summary>
/// Registration of the advisor. The detectors of each group are registered in that group's file
/// (AdviceServices.RateLimits.cs, .Anomalies.cs, .Services.cs) so the CLI's offline run
/// (`portcullis advise`) builds exactly the same set with <see cref="AddAdviceDetectors"/>.
/// </summary>
internal static partial class AdviceServices
{
    /// <summary>Every detector (as IAdviceDetector singletons); nothing else.</summary>
    public static IServiceCollection AddAdviceDetectors(this IServiceCollection services)
    {
        AddRateLimitDetectors(services);
        AddAnomalyDetectors(services);
        AddServiceDetectors(services);
        return services;
    }

    static partial void AddRateLimitDetectors(IServiceCollection services);

    static partial void AddAnomalyDetectors(IServiceCollection services);

    /// <summary>Also registers the live <see cref="IAdviceRuntime"/>.</summary>
    static partial void AddServiceDetectors(IServiceCollection services);
}
