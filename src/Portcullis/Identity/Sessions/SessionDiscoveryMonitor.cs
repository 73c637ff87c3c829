using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;

namespace Portcullis.Identity.Sessions;

internal enum DiscoveryState
{
    /// <summary>Not fetched yet (start-up).</summary>
    Pending,
    Ok,
    Failed,
}

/// <summary>What the latest discovery check of one session provider found (immutable; swapped whole).</summary>
internal sealed record DiscoveryStatus(DiscoveryState State, DateTimeOffset? CheckedAt, DateTimeOffset? Since, string? LastError);

/// <summary>
/// Whether each session provider's OpenID discovery document (and its JWKS) can be fetched from here, for
/// /readyz: sign-in handlers fetch discovery only when someone signs in, so without this a provider that is
/// down or misnamed shows only as failed sign-ins. Checked at start, then every <see cref="OkInterval"/>
/// (every <see cref="FailingInterval"/> while it fails), with the gateway's own HTTP client: the sign-in
/// handler's cached configuration is left alone. Transitions are logged once each.
/// </summary>
internal sealed partial class SessionDiscoveryMonitor(SessionRuntime runtime, IHttpClientFactory clients, TimeProvider time, ILogger<SessionDiscoveryMonitor> logger) : BackgroundService
{
    internal static readonly TimeSpan OkInterval = TimeSpan.FromSeconds(60);
    internal static readonly TimeSpan FailingInterval = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan CheckTimeout = TimeSpan.FromSeconds(10);

    private readonly Dictionary<string, DiscoveryStatus> _initial = runtime.Providers.Keys.ToDictionary(n => n, _ => new DiscoveryStatus(DiscoveryState.Pending, null, null, null), StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DiscoveryStatus> _status = new(StringComparer.Ordinal);

    /// <summary>Each provider's latest status, by name (providers are fixed at start-up).</summary>
    public IEnumerable<(CompiledSessionProvider Provider, DiscoveryStatus Status)> Providers =>
        runtime.Providers.Values.OrderBy(p => p.Name, StringComparer.Ordinal).Select(p => (p, _status.TryGetValue(p.Name, out var s) ? s : _initial[p.Name]));

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(runtime.Providers.Values.Select(p => WatchAsync(p, stoppingToken)));

    private async Task WatchAsync(CompiledSessionProvider provider, CancellationToken stoppingToken)
    {
        var address = provider.Authority.AbsoluteUri.TrimEnd('/') + "/.well-known/openid-configuration";
        var http = clients.CreateClient(IssuerRegistry.HttpClientName);
        while (!stoppingToken.IsCancellationRequested)
        {
            var ok = await CheckAsync(provider.Name, address, http, stoppingToken);
            try
            {
                await Task.Delay(ok ? OkInterval : FailingInterval, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task<bool> CheckAsync(string name, string address, HttpClient http, CancellationToken stoppingToken)
    {
        string? error = null;
        using (var timeout = new CancellationTokenSource(CheckTimeout, time))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, stoppingToken))
        {
            try
            {
                // The document and its jwks_uri, as a sign-in needs them.
                var configuration = await OpenIdConnectConfigurationRetriever.GetAsync(address, new IssuerDocumentRetriever(http), linked.Token);
                if (string.IsNullOrEmpty(configuration.AuthorizationEndpoint)) error = "the discovery document has no authorization_endpoint";
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return true;
            }
            catch (Exception ex)
            {
                // IdentityModel wraps the cause (IDX20803/IDX20804): the innermost message names it.
                var cause = ex;
                while (cause.InnerException is not null) cause = cause.InnerException;
                var message = cause is OperationCanceledException ? $"no answer within {CheckTimeout.TotalSeconds:0} s" : cause.Message;
                error = $"{cause.GetType().Name}: {(message.Length > 200 ? message[..200] + "…" : message)}";
            }
        }

        var now = time.GetUtcNow();
        var previous = _status.TryGetValue(name, out var p) ? p : _initial[name];
        var state = error is null ? DiscoveryState.Ok : DiscoveryState.Failed;
        var since = previous.State == state ? previous.Since : now;
        _status[name] = new DiscoveryStatus(state, now, since, error);
        if (state != previous.State)
        {
            if (state == DiscoveryState.Failed) LogFailed(logger, name, address, error!);
            else if (previous.State == DiscoveryState.Failed) LogRecovered(logger, name, previous.Since is { } began ? now - began : TimeSpan.Zero);
        }

        return error is null;
    }

    [LoggerMessage(EventId = 7050, Level = LogLevel.Warning, Message = "Session provider {Provider}: discovery at {Address} failed ({Error}); sign-ins through it fail until it answers")]
    private static partial void LogFailed(ILogger logger, string provider, string address, string error);

    [LoggerMessage(EventId = 7051, Level = LogLevel.Information, Message = "Session provider {Provider}: discovery answers again (it failed for {Duration})")]
    private static partial void LogRecovered(ILogger logger, string provider, TimeSpan duration);
}

/// <summary>
/// Readiness of the session providers: degraded (still 200) while one's discovery fails or has not been
/// checked yet. Never unhealthy: an identity provider down for the whole fleet would otherwise take every
/// instance out of rotation, routes that need no sign-in included.
/// </summary>
internal sealed class SessionProvidersHealthCheck(SessionDiscoveryMonitor monitor) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        List<string>? problems = null;
        var any = false;
        foreach (var (provider, status) in monitor.Providers)
        {
            any = true;
            var problem = status.State switch
            {
                DiscoveryState.Pending => "discovery not checked yet",
                DiscoveryState.Failed => $"discovery failing since {status.Since:O}: {status.LastError}",
                _ => null,
            };
            if (problem is not null) (problems ??= []).Add($"session provider {provider.Name}: {problem}");
        }

        if (!any) return Task.FromResult(HealthCheckResult.Healthy("not configured"));
        return Task.FromResult(problems is null ? HealthCheckResult.Healthy() : HealthCheckResult.Degraded(string.Join("; ", problems)));
    }
}
