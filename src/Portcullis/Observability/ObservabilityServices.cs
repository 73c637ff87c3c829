using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Portcullis.Observability;

internal static class ObservabilityServices
{
    /// <summary>Request ids, trace context and the access log (queue, background writer, sinks).</summary>
    public static IServiceCollection AddPortcullisObservability(this IServiceCollection services)
    {
        services.TryAddSingleton<AccessLog>();
        services.TryAddSingleton<RequestObserver>();
        services.TryAddSingleton<IAccessLogSinkFactory, AccessLogSinkFactory>();
        services.TryAddSingleton<AccessLogWriter>();
        services.AddHostedService(sp => sp.GetRequiredService<AccessLogWriter>());
        services.TryAddSingleton<AuditLog>();
        services.TryAddSingleton<AuditWriter>();
        services.AddHostedService(sp => sp.GetRequiredService<AuditWriter>());
        return services;
    }
}
