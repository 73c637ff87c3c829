using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.State;
using Portcullis.Pipeline;

namespace Portcullis.Traffic;

/// <summary>
/// The counter stores the traffic stage uses: the in-process store always, and a Redis store while
/// stores.redis is configured. Follows the snapshot: a changed Redis connection gets a new store (the old
/// one is disposed once requests still using it are done), and concurrency limiters and local counters
/// are handed from one generation to the next when their settings did not change.
/// </summary>
internal sealed class TrafficStores : IAsyncDisposable
{
    // Requests that took the old store before a reload finish within this time (bounded by the store timeout anyway).
    private static readonly TimeSpan RetireAfter = TimeSpan.FromSeconds(10);

    private readonly TimeProvider _time;
    private readonly ILoggerFactory _loggers;
    private RedisCounterStore? _redis;

    public TrafficStores(TimeProvider time, ILoggerFactory loggers)
    {
        _time = time;
        _loggers = loggers;
        Local = new LocalCounterStore(time);
        Fallback = new LocalCounterStore(time);
    }

    public LocalCounterStore Local { get; }

    /// <summary>Counts each Redis policy's per-instance share while Redis cannot answer (onStoreFailure: local).</summary>
    public LocalCounterStore Fallback { get; }

    /// <summary>Null while no Redis is configured.</summary>
    public RedisCounterStore? Redis => Volatile.Read(ref _redis);

    /// <summary>The store for a policy; null when it names Redis and none is configured (validation prevents that).</summary>
    public ICounterStore? For(TrafficStore store) => store == TrafficStore.Redis ? Redis : Local;

    /// <summary>Prepares a snapshot before it goes live.</summary>
    public void Sync(GatewaySnapshot next, GatewaySnapshot? previous)
    {
        Local.Bind(next.RateLimits.Values, next.Quotas.Values);
        Fallback.Bind(
            next.RateLimits.Values.Where(static p => p.Store == TrafficStore.Redis && p.OnStoreFailure == StoreFailureMode.Local).Select(static p => p.Share),
            next.Quotas.Values.Where(static q => q.Store == TrafficStore.Redis && q.OnStoreFailure == StoreFailureMode.Local).Select(static q => q.Share));
        if (previous is not null)
        {
            foreach (var (name, route) in next.Routes)
            {
                route.Concurrency?.TakeOver(previous.Routes.GetValueOrDefault(name)?.Concurrency);
            }

            foreach (var (name, cluster) in next.Clusters)
            {
                cluster.Concurrency?.TakeOver(previous.Clusters.GetValueOrDefault(name)?.Concurrency);
            }
        }

        var options = next.Config.Stores.Redis;
        var current = Redis;
        if (string.IsNullOrWhiteSpace(options?.Connection))
        {
            Retire(Interlocked.Exchange(ref _redis, null));
        }
        else if (current is null || current.Options != options)
        {
            var fresh = new RedisCounterStore(options, _time, _loggers.CreateLogger<RedisCounterStore>());
            Retire(Interlocked.Exchange(ref _redis, fresh));
        }
    }

    private void Retire(RedisCounterStore? old)
    {
        if (old is null) return;
        _ = Task.Delay(RetireAfter, _time).ContinueWith(_ => old.DisposeAsync().AsTask(), TaskScheduler.Default).Unwrap();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _redis, null) is { } redis) await redis.DisposeAsync();
    }
}

/// <summary>
/// Gives a configured Redis up to five seconds to connect before the gateway starts listening, so the
/// first requests are counted in Redis rather than meeting the policies' onStoreFailure. A Redis that is
/// down at start does not stop the gateway (it keeps trying in the background).
/// </summary>
internal sealed class TrafficStartup(TrafficStores stores, TimeProvider time) : Microsoft.Extensions.Hosting.IHostedService
{
    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(5);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var started = time.GetTimestamp();
        while (stores.Redis is { Health.State: State.StoreState.Down } && time.GetElapsedTime(started) < MaxWait)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(20), time, cancellationToken);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
