using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;

namespace Portcullis.Advice;

internal static partial class AdviceServices
{
    /// <summary>
    /// The advisor in the gateway, when the first snapshot has it on (advice.enabled, the default): the detectors,
    /// the engine and its background service, the acknowledged/muted state, the webhook and the metrics. Turning it
    /// on later (a reload) needs a restart; turning it off by a reload pauses the runs.
    /// </summary>
    public static IServiceCollection AddPortcullisAdvice(IServiceCollection services, GatewaySnapshot snapshot)
    {
        if (snapshot.Advice is not { } advice) return services;
        services.AddAdviceDetectors();
        services.TryAddSingleton(sp => new AdvicePatchValidator(sp.GetService<PortcullisOptions>()?.Environment, sp.GetService<IConfigValidator>(), sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton(sp => new AdviceStateStore(advice.StatePath, sp.GetRequiredService<ILogger<AdviceStateStore>>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAdviceListener, AdviceStateStore>(sp => sp.GetRequiredService<AdviceStateStore>()));
        services.TryAddSingleton<AdviceEngine>();
        services.TryAddSingleton<AdviceService>();
        services.AddHostedService(sp => sp.GetRequiredService<AdviceService>());
        return services;
    }
}
