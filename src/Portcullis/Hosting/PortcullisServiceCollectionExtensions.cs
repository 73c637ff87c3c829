using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Matching;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Portcullis.Admin;
using Portcullis.Clusters;
using Portcullis.Configuration;
using Portcullis.Hosting;
using Portcullis.Identity;
using Portcullis.Listeners;
using Portcullis.Routing;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Health;
using Portcullis.Pipeline;

namespace Microsoft.Extensions.DependencyInjection;

public static class PortcullisServiceCollectionExtensions
{
    /// <summary>
    /// Registers the gateway and loads its configuration; an invalid file throws a <see cref="ConfigException"/>
    /// carrying every error. Includes hot reload, YARP with Portcullis's health, drain and
    /// retry policies, the admin API, and (by default) Kestrel listeners from the config file.
    /// </summary>
    public static IServiceCollection AddPortcullis(this IServiceCollection services, Action<PortcullisOptions> configure)
    {
        var options = new PortcullisOptions();
        configure(options);
        services.AddSingleton(options);
        services.TryAddSingleton(TimeProvider.System);

        // Load now: an invalid file stops the host before anything listens (never half-configured).
        var store = new SnapshotStore();
        // Shared with the validation container below: YARP's first apply does not validate again what the compile accepted.
        var validated = new ValidatedProxyConfigs();
        services.AddSingleton(validated);
        using (var validation = new ServiceCollection().AddLogging().AddSingleton(validated).AddPortcullisProxy().BuildServiceProvider())
        {
            var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            var result = new SnapshotBuilder(options.Environment, validation.GetRequiredService<IConfigValidator>()) { Rewrite = options.Rewrite }.Build([options.ConfigPath, .. options.Overlays]);
            if (result.Snapshot is null) throw new ConfigException(result.Diagnostics);
            store.Initialize(result.Snapshot, result.Diagnostics);
            // This thread's own count: a process hosting several gateways (tests) must not count the others' starts.
            services.AddSingleton(new StartBuildCost(GC.GetAllocatedBytesForCurrentThread() - allocatedBefore));
        }

        // Browser sign-in: authentication schemes for the providers of the first snapshot.
        Portcullis.Identity.Sessions.SessionServiceCollectionExtensions.AddPortcullisSessions(services, store.Current);

        services.AddSingleton(store);
        services.AddSingleton(sp => new SnapshotBuilder(options.Environment, sp.GetRequiredService<IConfigValidator>(), sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton(sp => new ConfigReloader(sp.GetRequiredService<SnapshotStore>(), sp.GetRequiredService<SnapshotBuilder>(),
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<ConfigReloader>>(), sp.GetRequiredService<TimeProvider>(),
            sp.GetServices<ISnapshotParticipant>(), sp.GetService<Portcullis.Observability.AuditLog>()) { Trim = sp.GetService<HeapTrim>() });
        services.AddHostedService(sp => sp.GetRequiredService<ConfigReloader>());
        // Shutdown: /readyz 503, limits.shutdownDelay, route listeners closed apart from the admin listener, logged.
        RouteListenerGate.DecorateTransports(services);
        services.AddHostedService<Portcullis.Hosting.GatewayShutdown>();
        services.AddSingleton(sp => new HeapTrim(sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<HeapTrim>>(), sp.GetRequiredService<TimeProvider>(),
            store: sp.GetRequiredService<SnapshotStore>()));
        services.AddHostedService<GatewayWarmup>();
        AddAdminAndHealth(services);
        services.AddSingleton<Portcullis.Tls.CertificateStore>();
        services.AddSingleton<Portcullis.Upstream.UpstreamTlsStore>();
        services.AddSingleton<Portcullis.Upstream.UpstreamCredentialsStore>();
        services.AddHttpClient(Portcullis.Upstream.ClientCredentialsTokenSource.HttpClientName, client => client.DefaultRequestHeaders.UserAgent.ParseAdd("Portcullis"))
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5), AllowAutoRedirect = false, UseCookies = false });
        Portcullis.Observability.ObservabilityServices.AddPortcullisObservability(services);
        Portcullis.Observability.MetricsServices.AddPortcullisTelemetry(services, store.Current);
        Portcullis.Analytics.AnalyticsServices.AddPortcullisAnalytics(services, store.Current);
        Portcullis.Advice.AdviceServices.AddPortcullisAdvice(services, store.Current);
        services.AddPortcullisProxy();
        // YARP's per-failure Warning lines carry a stack trace each: the gateway logs one line with the cause instead.
        services.AddLogging(logging =>
        {
            foreach (var category in Portcullis.Clusters.UpstreamFailureLog.Filtered)
            {
                Microsoft.Extensions.Logging.FilterLoggingBuilderExtensions.AddFilter(logging, category, Microsoft.Extensions.Logging.LogLevel.Error);
            }
        });
        // Access-log lines for the requests Kestrel refuses before the pipeline runs.
        services.TryAddSingleton(sp => new KestrelRejectionLog(
            sp.GetService<System.Diagnostics.DiagnosticListener>(), store, sp.GetRequiredService<Portcullis.Observability.AccessLog>(), sp.GetRequiredService<TimeProvider>()));
        services.AddHostedService(sp => sp.GetRequiredService<KestrelRejectionLog>());
        // Kestrel's HTTP/2 flood mitigations log per refused operation: count them, log a summary.
        Http2FloodLog.Decorate(services);

        AddIdentity(services, store);
        services.AddSingleton<Portcullis.Traffic.TrafficStores>();

        // What follows the configuration across reloads, prepared and committed together (ConfigReloader).
        AddParticipant<Portcullis.Identity.Sessions.SessionRuntime>(services);
        AddParticipant<IssuerRegistry>(services);
        AddParticipant<Portcullis.Traffic.TrafficStores>(services);
        AddParticipant<Portcullis.Upstream.UpstreamTlsStore>(services);
        AddParticipant<Portcullis.Upstream.UpstreamCredentialsStore>(services);
        services.AddHostedService<Portcullis.Traffic.TrafficStartup>();

        // Each capability's observable instruments on the gateway's meter (GatewayMetrics registers them).
        AddMetrics<Portcullis.Clusters.ClusterMetrics>(services);
        AddMetrics<Portcullis.Identity.IdentityMetrics>(services);
        AddMetrics<Portcullis.Tls.CertificateMetrics>(services);
        AddMetrics<Portcullis.Traffic.TrafficMetrics>(services);
        AddMetrics<Portcullis.Clusters.OutlierMetrics>(services);
        services.TryAddSingleton<MirrorMetrics>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Portcullis.Observability.IMetricsContributor, MirrorMetrics>(sp => sp.GetRequiredService<MirrorMetrics>()));

        if (options.ConfigureKestrel)
        {
            services.AddSingleton<KestrelSetup>();
            services.AddSingleton<IConfigureOptions<KestrelServerOptions>>(sp => sp.GetRequiredService<KestrelSetup>());
            services.AddSingleton<IConfigureOptions<HostOptions>>(sp => sp.GetRequiredService<KestrelSetup>());
        }

        return services;
    }

    // The admin API and readiness: the admin listener's own endpoints (mapped by AdminEndpoints).
    private static void AddAdminAndHealth(IServiceCollection services)
    {
        services.AddSingleton<AdminListenerFilter>();
        services.AddSingleton<AdminApi>();
        // Fleet-wide drains: read from Redis at start, on a pub/sub message and every few seconds.
        services.AddSingleton<FleetDrains>();
        services.AddHostedService(sp => sp.GetRequiredService<FleetDrains>());
        // healthCheck.outlierDetection: judged per cluster interval, off the request path.
        services.AddSingleton<OutlierDetector>();
        services.AddHostedService(sp => sp.GetRequiredService<OutlierDetector>());
        services.AddSingleton<AdminTrafficApi>();
        services.AddSingleton<AdminAnalyticsApi>();
        services.AddSingleton<AdminAdviceApi>();
        services.AddSingleton<UiSession>();
        services.AddSingleton<UiAssets>();
        services.AddSingleton<AdminUi>();
        services.AddSingleton<ReadinessWriter>();
        // The gateway's own paths are matched only as spelled (admin API, session paths, assertion JWKS).
        services.TryAddEnumerable(ServiceDescriptor.Singleton<MatcherPolicy, ExactPathMatcherPolicy>());
        services.TryAddSingleton(static _ => RouteMatcherSettings.FromEnvironment());
        services.TryAddSingleton<RouteTableSource>();
        // Readiness per capability, served at /readyz on the admin listener. The checks read state the
        // capabilities keep (no probes of their own) and the answer says what is wrong, so the health
        // service's own log lines (a warning per degraded check per probe) are left out.
        services.AddHealthChecks()
            .AddCheck<LifetimeHealthCheck>("lifetime", tags: [AdminEndpoints.ReadyTag])
            .AddCheck<Portcullis.Clusters.ClustersHealthCheck>("clusters", tags: [AdminEndpoints.ReadyTag])
            .AddCheck<IssuerKeysHealthCheck>("issuers", tags: [AdminEndpoints.ReadyTag])
            .AddCheck<Portcullis.Traffic.RedisStoreHealthCheck>("redis", tags: [AdminEndpoints.ReadyTag])
            .AddCheck<Portcullis.Identity.Sessions.SessionStoreHealthCheck>("sessionStore", tags: [AdminEndpoints.ReadyTag])
            .AddCheck<Portcullis.Identity.Sessions.SessionProvidersHealthCheck>("sessionProviders", tags: [AdminEndpoints.ReadyTag])
            .AddCheck<Portcullis.Tls.CertificatesHealthCheck>("certificates", tags: [AdminEndpoints.ReadyTag]);
        services.AddLogging(logging => Microsoft.Extensions.Logging.FilterLoggingBuilderExtensions.AddFilter(logging, "Microsoft.Extensions.Diagnostics.HealthChecks", Microsoft.Extensions.Logging.LogLevel.None));
    }

    // Issuer key caches, the assertion signer and its JWKS, token validation and introspection.
    private static void AddIdentity(IServiceCollection services, SnapshotStore store)
    {
        // No IHttpClientFactory request logging: it wrote 4 info lines per discovery/JWKS fetch; the key
        // cache logs each outcome once (fetched, failed, recovered) itself.
        services.AddHttpClient(IssuerRegistry.HttpClientName, client => client.DefaultRequestHeaders.UserAgent.ParseAdd("Portcullis"))
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5), AllowAutoRedirect = false })
            .RemoveAllLoggers();
        services.AddSingleton<IssuerRegistry>();
        services.AddHostedService<IssuerStartup>();
        services.AddSingleton(sp => new AssertionSigner(sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<AssertionJwksEndpoint>();
        services.AddSingleton(sp => new JwtAuthenticator(
            sp.GetRequiredService<IssuerRegistry>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<JwtAuthenticator>>(),
            store.Current.Config.Identity.TokenCacheSize));
        services.AddSingleton(sp => new TokenIntrospector(sp.GetRequiredService<IHttpClientFactory>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<TokenIntrospector>>(), store.Current.Config.Identity.TokenCacheSize));
    }

    // The participant is the capability's own singleton (the one requests read), not a second instance.
    private static void AddParticipant<T>(IServiceCollection services)
        where T : class, ISnapshotParticipant =>
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISnapshotParticipant, T>(sp => sp.GetRequiredService<T>()));
    private static void AddMetrics<T>(IServiceCollection services)
        where T : class, Portcullis.Observability.IMetricsContributor =>
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Portcullis.Observability.IMetricsContributor, T>());


    /// <summary>
    /// YARP plus Portcullis's policies (health thresholds, passive ejection, draining, connect timeout,
    /// forwarded headers) and the snapshot store they read. Also used on its own by `portcullis validate`
    /// so that YARP's validator knows our policy names.
    /// </summary>
    internal static IServiceCollection AddPortcullisProxy(this IServiceCollection services)
    {
        services.TryAddSingleton<SnapshotStore>();
        services.TryAddSingleton<IProxyConfigProvider>(sp => sp.GetRequiredService<SnapshotStore>());
        // Binds route endpoints to generations, and moves the endpoints YARP keeps across a reload to the new one.
        services.TryAddSingleton<RouteBindings>();
        services.AddSingleton<IConfigChangeListener>(sp => sp.GetRequiredService<RouteBindings>());
        services.TryAddSingleton<DrainRegistry>();
        services.TryAddSingleton<Portcullis.Observability.ResponseHeaderFindings>();
        services.AddReverseProxy().AddTransforms(context =>
        {
            context.UseDefaultForwarders = false;
            context.RequestTransforms.Add(new ForwardedHeadersTransform());
            // Upstream tokens (client credentials); absent where only validation runs.
            if (context.Services.GetService<Portcullis.Upstream.UpstreamCredentialsStore>() is { } upstreamCredentials)
            {
                context.RequestTransforms.Add(new Portcullis.Upstream.UpstreamCredentialsTransform(upstreamCredentials));
            }

            context.RequestTransforms.Add(new Portcullis.Observability.TraceContextRequestTransform());
            // First: a status the cluster retries is held back before any other transform writes to the response.
            context.ResponseTransforms.Add(new Portcullis.Clusters.RetryStatusTransform(context.Services.GetService<TimeProvider>() ?? TimeProvider.System));
            context.ResponseTransforms.Add(new Portcullis.Observability.UpstreamTimingResponseTransform());
            context.ResponseTransforms.Add(new Portcullis.Routing.ResponseTransformsTransform());
            context.ResponseTransforms.Add(new Portcullis.Routing.ResponseHeaderTransform(context.Services.GetService<Portcullis.Observability.ResponseHeaderFindings>()));
            if (context.Route.OutputCachePolicy == RouteOutputCachePolicy.Name) context.ResponseTransforms.Add(new CacheDecisionTransform());
        });
        // routes[].cache: one named output-cache policy; YARP checks route names against it when validating.
        services.AddOutputCache(options =>
        {
            options.AddPolicy(RouteOutputCachePolicy.Name, new RouteOutputCachePolicy());
            options.SizeLimit = CompiledCache.TotalSize;
            options.MaximumBodySize = CompiledCache.MaxEntrySize;
        });
        services.Replace(ServiceDescriptor.Singleton<IForwarderHttpClientFactory, ConnectTimeoutHttpClientFactory>());
        // YARP's validator, skipping the route and cluster objects it accepted before (unchanged across a reload).
        services.TryAddSingleton<ValidatedProxyConfigs>();
        var validator = services.Last(d => d.ServiceType == typeof(IConfigValidator)).ImplementationType
            ?? throw new InvalidOperationException("YARP's IConfigValidator registration changed: expected an implementation type");
        services.Replace(ServiceDescriptor.Singleton<IConfigValidator>(sp =>
            new CachedConfigValidator((IConfigValidator)ActivatorUtilities.CreateInstance(sp, validator), sp.GetRequiredService<ValidatedProxyConfigs>())));
        // YARP's forwarder, given each try's own timer (clusters.*.retries.perTryTimeout, deadline).
        var forwarder = services.Last(d => d.ServiceType == typeof(IHttpForwarder)).ImplementationType
            ?? throw new InvalidOperationException("YARP's IHttpForwarder registration changed: expected an implementation type");
        services.Replace(ServiceDescriptor.Singleton<IHttpForwarder>(sp => new Portcullis.Clusters.TryTimeoutForwarder((IHttpForwarder)ActivatorUtilities.CreateInstance(sp, forwarder))));
        services.TryAddSingleton<DestinationHealthHistory>();
        services.TryAddSingleton<DestinationCounterTable>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IActiveHealthCheckPolicy, ThresholdActiveHealthPolicy>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPassiveHealthCheckPolicy, ConsecutiveFailuresPassivePolicy>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAvailableDestinationsPolicy, HealthyNotDrainedPolicy>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<Yarp.ReverseProxy.LoadBalancing.ILoadBalancingPolicy, ConsistentHashPolicy>());
        services.AddCors();
        // routes[].compression: ASP.NET Core's middleware, its decisions made per route (RouteCompressionProvider).
        services.AddResponseCompression();
        services.Replace(ServiceDescriptor.Singleton<Microsoft.AspNetCore.ResponseCompression.IResponseCompressionProvider, Portcullis.Routing.RouteCompressionProvider>());
        services.Replace(ServiceDescriptor.Singleton<Microsoft.AspNetCore.Cors.Infrastructure.ICorsPolicyProvider, Portcullis.Routing.RouteCorsPolicyProvider>());
        return services;
    }

    /// <summary>
    /// Adds the gateway's request pipeline: admin API on the admin listener, limits, routing (YARP),
    /// identity and authorization, map-driven cluster choice, retries, load balancing and passive health,
    /// traffic control (rate limits, quotas, concurrency), and a problem+json 404.
    /// </summary>
    public static WebApplication UsePortcullis(this WebApplication app)
    {
        if (app.Services.GetService<PortcullisOptions>() is null)
        {
            throw new InvalidOperationException("Portcullis services are missing: call builder.Services.AddPortcullis(...) before app.UsePortcullis().");
        }

        // WebApplication inserts ASP.NET Core's authentication and authorization middleware on its own once
        // their services exist (sessions register authentication; YARP, authorization). Neither does anything
        // here: routes carry no ASP.NET authorization metadata, and the session endpoints run the sign-in
        // handlers itself, only on its own paths. Per request they still enumerated schemes (creating every
        // OpenID Connect handler) and endpoint metadata, so mark them as placed (the keys UseAuthentication
        // and UseAuthorization set) and keep them out.
        ((IApplicationBuilder)app).Properties["__AuthenticationMiddlewareSet"] = true;
        ((IApplicationBuilder)app).Properties["__AuthorizationMiddlewareSet"] = true;

        var store = app.Services.GetRequiredService<SnapshotStore>();
        app.UseMiddleware<ListenerPolicyMiddleware>(); // HSTS, redirect to HTTPS (per listener)
        app.UseAdminListener(); // the admin listener's own pipeline and route table: admin API, health, metrics
        app.UseMiddleware<GatewayMiddleware>();
        app.UseMiddleware<PathNormalizationMiddleware>(); // one canonical path for routing, auth and the upstream
        app.UseMiddleware<InboundHeaderScrubMiddleware>(); // spoofed identity headers (any spelling), underscore headers
        app.UseMiddleware<Portcullis.Identity.Sessions.SessionStoreGuard>(); // a session store down at sign-in or logout: 503, not 500

        // Issuers' key caches, counter stores and concurrency limiters start from the first snapshot; reloads
        // bring them along as snapshot participants (ConfigReloader).
        app.Services.GetRequiredService<IssuerRegistry>().Sync(IssuerRegistry.Fetched(store.Current));
        app.Services.GetRequiredService<Portcullis.Traffic.TrafficStores>().Sync(store.Current);

        // Upstream tokens are fetched from start-up on (in the background), not by the first request.
        app.Services.GetRequiredService<Portcullis.Upstream.UpstreamCredentialsStore>();

        // The gateway's own paths on the route listeners, ahead of every route and answered as soon as routing
        // chose them (short-circuit): sign-in callbacks, login and logout; the assertion JWKS.
        Portcullis.Identity.Sessions.SessionEndpoints.Map(app);
        ((IEndpointRouteBuilder)app).DataSources.Add(app.Services.GetRequiredService<AssertionJwksEndpoint>());

        // Routes are matched by the gateway's route table (built in one pass on each reload); ASP.NET Core's routing
        // middleware then sees the endpoint set and matches nothing itself (its DFA is never built).
        var routeTable = app.Services.GetRequiredService<RouteTableSource>();
        app.UseMiddleware<RouteTableMiddleware>();
        app.UseRouting();
        app.UseMiddleware<RouteGenerationMiddleware>(); // the request's generation is its route's from here on
        app.UseResponseCompression(); // routes[].compression; every later answer of such a route, problem bodies included
        // routes[].cors: preflights answered here, before auth; headers added to the rest. Only for requests with an
        // Origin header: CorsMiddleware takes its policy provider as an Invoke parameter, resolved from
        // RequestServices, which creates (and disposes) a DI scope for every request it sees.
        app.UseWhen(static context => context.Request.Headers.ContainsKey(Microsoft.Net.Http.Headers.HeaderNames.Origin), static cors => cors.UseCors());
        app.UseMiddleware<IdentityMiddleware>();
        app.UseMiddleware<Portcullis.Traffic.TrafficMiddleware>();
        app.UseMiddleware<RouteResponseMiddleware>();
        app.UseMiddleware<JsonLimitsMiddleware>(); // routes[].jsonLimits, checked while the body streams
        app.UseOutputCache(); // routes[].cache: after auth and limits, so a cached answer goes only to an admitted caller
        var bindings = app.Services.GetRequiredService<RouteBindings>();
        app.MapReverseProxy(pipeline =>
        {
            pipeline.UseMiddleware<RouteActionMiddleware>();
            pipeline.UseMiddleware<MirrorMiddleware>(); // routes[].mirror: a copy after the route's header edits
            pipeline.UseMiddleware<Portcullis.Traffic.ClusterConcurrencyMiddleware>();
            pipeline.UseSessionAffinity();
            pipeline.UseMiddleware<RetryMiddleware>();
            pipeline.UseLoadBalancing();
            pipeline.UsePassiveHealthChecks();
        }).Add(bindings.Bind);
        app.MapFallback("{**path}", NoRoute);
        routeTable.Attach(new CompositeEndpointDataSource(((IEndpointRouteBuilder)app).DataSources));
        return app;
    }

    private static Task NoRoute(HttpContext context)
    {
        if (context.Features.Get<GatewayFeature>() is { } gateway) gateway.Refusal = ReasonCodes.RouteUnmatched;
        return ProblemWriter.WriteAsync(context, StatusCodes.Status404NotFound, "No route", "No route matches this request.", ReasonCodes.RouteUnmatched);
    }
}
