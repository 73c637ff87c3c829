using Microsoft.Extensions.DependencyInjection;

namespace Portcullis.Advice;

internal static partial class AdviceServices
{
    static partial void AddRateLimitDetectors(IServiceCollection services) => services.AddSingleton<IAdviceDetector, RateLimitAdvisor>();
}
