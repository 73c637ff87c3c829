using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Portcullis.Clusters;
using Portcullis.Configuration;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;
using Portcullis.Pipeline;

namespace Portcullis.Admin;

/// <summary>
/// The admin listener's API: effective config (secrets redacted), clusters and their destinations' health,
/// reload, and draining destinations; <see cref="AdminEndpoints"/> maps them, with health and readiness.
/// Every request is authenticated first (<see cref="AdminAuthenticator"/>); actions and denials go to the
/// audit log with their actor.
/// </summary>
internal sealed partial class AdminApi(
    SnapshotStore store,
    ConfigReloader reloader,
    IProxyStateLookup proxyState,
    IClusterDestinationsUpdater destinationsUpdater,
    DrainRegistry drains,
    FleetDrains fleetDrains,
    OutlierDetector outliers,
    Identity.IssuerRegistry issuers,
    Tls.CertificateStore certificates,
    AdminListenerFilter listener,
    UiSession uiSession,
    ILogger<AdminApi> logger)
{
    private static readonly JsonWriterOptions WriterOptions = new() { Indented = true };

    /// <summary>
    /// Runs for every request on the admin listener once routing chose its endpoint, matched or not: unknown
    /// paths are answered only after authentication, so they tell an anonymous caller nothing.
    /// </summary>
    public Task AuthorizeAsync(HttpContext context, RequestDelegate next)
    {
        if (AdminUi.IsSignInPath(context.Request))
        {
            context.Features.Set(AdminCaller.Anonymous);
            return next(context);
        }

        var auth = store.Current.AdminAuth;
        var decision = AdminAuthenticator.Decide(context, auth, listener.OnLoopback);
        // No credential at all: the dashboard's sign-in cookie may stand in, for reads of the dashboard and analytics only.
        if (decision.Reason == ReasonCodes.AdminUnauthenticated.Code && auth is not null && UiSession.Accepts(context.Request) && uiSession.Read(context, auth) is { } cookieCaller)
        {
            decision = new AdminDecision(cookieCaller);
        }

        if (!decision.Allowed) return DenyAsync(context, decision);
        context.Features.Set(decision.Caller);
        return next(context);
    }

    /// <summary>The caller <see cref="AuthorizeAsync"/> let in.</summary>
    private static AdminCaller Caller(HttpContext context) => context.Features.Get<AdminCaller>()!;

    /// <summary>Every other path: the metrics scrape (its path follows reloads), else 404.</summary>
    public static Task NotFoundAsync(HttpContext context)
    {
        var metrics = Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<Observability.MetricsEndpoint>(context.RequestServices);
        if (metrics.Matches(context)) return metrics.HandleAsync(context);
        return ProblemWriter.WriteAsync(context, 404, "Not found", "No admin endpoint has this method and path.", ReasonCodes.AdminNotFound);
    }

    public Task LastReload(HttpContext context) => Json(context, 200, w => WriteReload(w, reloader.LastResult));

    public Task Certificates(HttpContext context) => Json(context, 200, certificates.WriteStatus);

    public static Task UpstreamTls(HttpContext context) =>
        Json(context, 200, Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<Upstream.UpstreamTlsStore>(context.RequestServices).WriteStatus);

    public static Task UpstreamCredentials(HttpContext context) =>
        Json(context, 200, Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<Upstream.UpstreamCredentialsStore>(context.RequestServices).WriteStatus);

    public Task ObservabilityStatus(HttpContext context) => Json(context, 200, w =>
    {
        Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<Observability.AccessLog>(context.RequestServices).WriteStatus(w, store.Current);
        Audit(context)?.WriteStatus(w, store.Current);
    });

    internal static void WriteStoreHealth(Utf8JsonWriter w, State.StoreHealth health)
    {
        w.WriteStartObject();
        w.WriteString("state", health.State == State.StoreState.Up ? "up" : "down");
        w.WriteString("since", health.Since);
        if (health.LastError is { } error) w.WriteString("lastError", error);
        w.WriteEndObject();
    }

    public Task Config(HttpContext context)
    {
        var snapshot = store.Current;
        return Json(context, 200, w =>
        {
            w.WriteNumber("generation", snapshot.Generation);
            w.WriteString("file", Path.GetFullPath(snapshot.Source.Path));
            // Composed from several files (includes, overlays): all of them, in the order they were read.
            w.WriteStartArray("files");
            foreach (var file in snapshot.Source.Files) w.WriteStringValue(file);
            w.WriteEndArray();
            w.WriteString("fingerprint", snapshot.Fingerprint);
            w.WriteString("loadedAt", snapshot.LoadedAt);
            w.WritePropertyName("config");
            ConfigJson.ToElement(snapshot.Config, snapshot.Source.SecretPaths).WriteTo(w);
        });
    }

    public Task Clusters(HttpContext context) => Json(context, 200, w =>
    {
        w.WriteNumber("generation", store.Current.Generation);
        w.WriteStartArray("clusters");
        foreach (var cluster in proxyState.GetClusters().OrderBy(c => c.ClusterId, StringComparer.Ordinal))
        {
            var available = cluster.DestinationsState.AvailableDestinations;
            w.WriteStartObject();
            w.WriteString("name", cluster.ClusterId);
            w.WriteString("loadBalancing", cluster.Model.Config.LoadBalancingPolicy);
            w.WriteNumber("availableDestinations", available.Count);
            w.WriteStartArray("destinations");
            foreach (var destination in cluster.Destinations.Values.OrderBy(d => d.DestinationId, StringComparer.Ordinal))
            {
                w.WriteStartObject();
                w.WriteString("name", destination.DestinationId);
                w.WriteString("address", destination.Model.Config.Address);
                w.WriteString("active", HealthName(destination.Health.Active));
                w.WriteString("passive", HealthName(destination.Health.Passive));
                w.WriteBoolean("drained", drains.IsDrained(cluster.ClusterId, destination.DestinationId));
                WriteDrainSources(w, cluster.ClusterId, destination.DestinationId);
                w.WriteBoolean("available", available.Contains(destination));
                w.WriteNumber("inFlight", destination.ConcurrentRequestCount);
                WriteOutlier(w, cluster.ClusterId, destination);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
    });

    // healthCheck.outlierDetection: "ejected" with why and until when, or "in" (absent without outlier detection).
    private void WriteOutlier(Utf8JsonWriter w, string cluster, DestinationState destination)
    {
        var ejection = outliers.EjectionOf(destination);
        if (ejection is null && !(store.Current.Clusters.TryGetValue(cluster, out var compiled) && compiled.Outliers is not null)) return;
        w.WriteStartObject("outlier");
        w.WriteString("state", ejection is null ? "in" : "ejected");
        if (ejection is not null)
        {
            w.WriteString("reason", ejection.Reason);
            w.WriteString("since", ejection.At);
            w.WriteString("until", ejection.Until);
            w.WriteNumber("ejections", ejection.Times);
        }

        w.WriteEndObject();
    }

    // Which drains hold a destination: this instance's and/or the fleet's (with who, when, through which instance).
    private void WriteDrainSources(Utf8JsonWriter w, string cluster, string destination)
    {
        var here = drains.IsDrainedHere(cluster, destination);
        var fleet = drains.Fleet(cluster, destination);
        if (!here && fleet is null) return;
        w.WriteStartArray("drainedBy");
        if (here) w.WriteStringValue("instance");
        if (fleet is not null) w.WriteStringValue("fleet");
        w.WriteEndArray();
        if (fleet is null) return;
        w.WriteStartObject("fleetDrain");
        w.WriteString("by", fleet.By);
        w.WriteString("at", fleet.At);
        w.WriteString("instance", fleet.Instance);
        w.WriteEndObject();
    }

    private async Task DenyAsync(HttpContext context, AdminDecision decision)
    {
        if (decision.Challenge is { } challenge) context.Response.Headers.WWWAuthenticate = challenge;
        // Debug only: an unauthenticated flood must not flood the log; the audit log keeps every denial.
        Log.Refused(logger, context.Request.Method, context.Request.Path.Value ?? "/", context.Connection.RemoteIpAddress?.ToString(), decision.Reason!, decision.Caller.Actor);
        // Waits for room in a full audit queue: the back-pressure lands on whoever floods denials.
        if (Audit(context) is { Enabled: true } audit) await audit.RecordAdminDeniedAsync(context, decision.Caller.Audit, decision.Status, decision.Reason!);
        if (decision.Status == 401 && AdminUi.IsPageNavigation(context.Request))
        {
            AdminUi.RedirectToLogin(context);
            return;
        }

        await ProblemWriter.WriteAsync(context, decision.Status, decision.Status == 401 ? "Unauthorized" : "Forbidden", decision.Detail!, decision.Reason!);
    }

    public async Task Reload(HttpContext context)
    {
        var caller = Caller(context);
        var result = await reloader.ReloadAsync("admin API", context.RequestAborted);
        Audit(context)?.RecordReload(caller.Audit, context.Connection.RemoteIpAddress?.ToString(), result);
        await Json(context, result.Applied ? 200 : 422, w => WriteReload(w, result));
    }

    /// <summary>
    /// Drains or undrains a destination on this instance (scope=instance, the default) or for every instance
    /// sharing stores.redis (scope=fleet). The two are separate: a fleet drain is undrained with scope=fleet.
    /// </summary>
    public async Task Drain(HttpContext context, string clusterName, string destinationName, bool drain)
    {
        var caller = Caller(context);
        var scope = context.Request.Query["scope"].ToString();
        if (scope is not ("" or "instance" or "fleet"))
        {
            await ProblemWriter.WriteAsync(context, 400, "Unknown drain scope", $"scope must be instance (the default) or fleet, not '{scope}'.", ReasonCodes.AdminDrainScopeInvalid);
            return;
        }

        if (!proxyState.TryGetCluster(clusterName, out var cluster))
        {
            await ProblemWriter.WriteAsync(context, 404, "Unknown cluster", $"There is no cluster '{clusterName}'.", ReasonCodes.AdminUnknownCluster);
            return;
        }

        if (!cluster.Destinations.TryGetValue(destinationName, out var destination))
        {
            await ProblemWriter.WriteAsync(context, 404, "Unknown destination", $"Cluster '{clusterName}' has no destination '{destinationName}'.", ReasonCodes.AdminUnknownDestination);
            return;
        }

        var fleet = scope == "fleet";
        if (fleet)
        {
            switch (await fleetDrains.SetAsync(clusterName, destinationName, drain, caller.Actor, context.RequestAborted))
            {
                case FleetDrains.Outcome.NoStore:
                    await ProblemWriter.WriteAsync(context, 409, "No shared store", "scope=fleet keeps the drain in Redis, and stores.redis is not configured; drain each instance instead (scope=instance).", ReasonCodes.AdminFleetStoreMissing);
                    return;
                case FleetDrains.Outcome.Unavailable:
                    context.Response.Headers.RetryAfter = "1";
                    await ProblemWriter.WriteAsync(context, 503, "Shared store unavailable", "Redis cannot answer right now, so the fleet-wide drain was not changed; retry, or drain each instance (scope=instance).", ReasonCodes.AdminFleetStoreUnavailable);
                    return;
            }
        }
        else
        {
            drains.Set(clusterName, destinationName, drain);
            destinationsUpdater.UpdateAvailableDestinations(cluster);
        }

        Audit(context)?.RecordDrain(caller.Audit, context.Connection.RemoteIpAddress?.ToString(), clusterName, destinationName, drain, fleet ? "fleet" : "instance");
        Log.Drained(logger, drain ? "drained" : "undrained", clusterName, destinationName, fleet ? "fleet" : "instance", caller.Actor);
        await Json(context, 200, w =>
        {
            w.WriteString("cluster", clusterName);
            w.WriteString("destination", destinationName);
            w.WriteString("scope", fleet ? "fleet" : "instance");
            w.WriteBoolean("drained", drains.IsDrained(clusterName, destinationName));
            w.WriteNumber("inFlight", destination.ConcurrentRequestCount);
        });
    }

    // Fetches an issuer's keys now (a key withdrawn at the provider stops verifying at once): 200 with the
    // outcome once the fetch ended, 202 if it is still running after the fetch timeout (it goes on).
    public async Task RefreshIssuer(HttpContext context, string issuerName)
    {
        var caller = Caller(context);
        if (issuers.Get(issuerName) is not { } cache)
        {
            await ProblemWriter.WriteAsync(context, 404, "Unknown issuer", $"There is no issuer '{issuerName}'.", ReasonCodes.AdminUnknownIssuer);
            return;
        }

        var finished = await cache.RefreshNowAsync(cache.Source.Timeout + TimeSpan.FromSeconds(1), context.RequestAborted);
        var result = !finished ? "running" : cache.Failing ? "failed" : "refreshed";
        var keys = cache.Keys;
        Audit(context)?.RecordIssuerRefresh(caller.Audit, context.Connection.RemoteIpAddress?.ToString(), issuerName, result, keys?.All.Length);
        Log.IssuerRefreshed(logger, issuerName, result, caller.Actor);
        await Json(context, finished ? 200 : 202, w =>
        {
            w.WriteString("issuer", issuerName);
            w.WriteString("result", result);
            if (keys is not null)
            {
                w.WriteString("fetchedAt", keys.FetchedAt);
                w.WriteNumber("keyCount", keys.All.Length);
            }

            if (cache.NextRefreshAt is { } next) w.WriteString("nextRefreshAt", next);
            if (cache.LastError is { } lastError) w.WriteString("lastError", lastError);
        });
    }

    private static Observability.AuditLog? Audit(HttpContext context) =>
        Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetService<Observability.AuditLog>(context.RequestServices);

    private static void WriteReload(Utf8JsonWriter w, ReloadResult result)
    {
        w.WriteBoolean("applied", result.Applied);
        w.WriteBoolean("changed", result.Changed);
        w.WriteNumber("generation", result.Generation);
        w.WriteString("trigger", result.Trigger);
        w.WriteString("at", result.At);
        result.WriteTimings(w);
        w.WriteStartArray("errors");
        foreach (var d in result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)) w.WriteStringValue(d.ToString());
        w.WriteEndArray();
        w.WriteStartArray("warnings");
        foreach (var d in result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Warning)) w.WriteStringValue(d.ToString());
        w.WriteEndArray();
        w.WriteStartArray("restartRequired");
        foreach (var item in result.RestartRequired) w.WriteStringValue(item);
        w.WriteEndArray();
        result.WriteParticipants(w);
    }

    private static string HealthName(DestinationHealth health) => health switch
    {
        DestinationHealth.Healthy => "healthy",
        DestinationHealth.Unhealthy => "unhealthy",
        _ => "unknown",
    };

    internal static async Task Json(HttpContext context, int status, Action<Utf8JsonWriter> body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        using var buffer = new MemoryStream();
        await using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            body(writer);
            writer.WriteEndObject();
        }

        buffer.WriteByte((byte)'\n');
        await context.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length));
    }

    private static partial class Log
    {
        [LoggerMessage(3001, LogLevel.Information, "Admin: {Action} destination {Destination} of cluster {Cluster} (scope {Scope}, by {Actor})")]
        public static partial void Drained(ILogger logger, string action, string cluster, string destination, string scope, string actor);

        [LoggerMessage(3010, LogLevel.Information, "Admin: key refresh of issuer {Issuer}: {Result} (by {Actor})")]
        public static partial void IssuerRefreshed(ILogger logger, string issuer, string result, string actor);

        [LoggerMessage(3002, LogLevel.Debug, "Admin: refused {Method} {Path} from {ClientIp}: {Reason} ({Actor})")]
        public static partial void Refused(ILogger logger, string method, string path, string? clientIp, string reason, string actor);
    }
}
