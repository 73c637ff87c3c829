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
internal sealed class TrafficStores : IAsyncDisposable, ISnapshotParticipant
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

    public string Name => "traffic";

    /// <summary>
    /// A changed Redis connection gets its new store here (connecting in the background; released if the
    /// reload is rejected); the commit binds the local counters and hands concurrency limiters over.
    /// </summary>
    public PreparedChange Prepare(GatewaySnapshot next, GatewaySnapshot current)
    {
        var options = next.Config.Stores.Redis;
        var redis = Redis;
        var removeRedis = string.IsNullOrWhiteSpace(options?.Connection);
        var fresh = !removeRedis && (redis is null || redis.Options != options)
            ? new RedisCounterStore(options!, _time, _loggers.CreateLogger<RedisCounterStore>())
            : null;
        void Commit() => Sync(next, current, removeRedis, fresh);
        if (fresh is null && removeRedis == (redis is null) && SameSettings(next, current)) return PreparedChange.Unchanged(Commit);
        // Rejected reload: no request ever used the new store.
        return PreparedChange.Applied(Commit, () =>
        {
            if (fresh is not null) _ = fresh.DisposeAsync().AsTask();
        });
    }

    /// <summary>Binds the first snapshot (start-up).</summary>
    public void Sync(GatewaySnapshot snapshot)
    {
        var options = snapshot.Config.Stores.Redis;
        var empty = string.IsNullOrWhiteSpace(options?.Connection);
        Sync(snapshot, null, empty, empty ? null : new RedisCounterStore(options!, _time, _loggers.CreateLogger<RedisCounterStore>()));
    }

    private void Sync(GatewaySnapshot next, GatewaySnapshot? previous, bool removeRedis, RedisCounterStore? fresh)
    {
        // Plans' copies of the policies count under their own names ("policy@plan"): bound like the named ones.
        var rateLimits = next.RateLimits.Values.Concat(next.Plans?.RateLimits ?? []).ToList();
        var quotas = next.Quotas.Values.Concat(next.Plans?.Quotas ?? []).ToList();
        Local.Bind(rateLimits, quotas);
        Fallback.Bind(
            rateLimits.Where(static p => p.Store == TrafficStore.Redis && p.OnStoreFailure == StoreFailureMode.Local).Select(static p => p.Share),
            quotas.Where(static q => q.Store == TrafficStore.Redis && q.OnStoreFailure == StoreFailureMode.Local).Select(static q => q.Share));
        if (previous is not null)
        {
            foreach (var (name, route) in next.Routes)
            {
                route.Concurrency?.TakeOver(previous.Routes.GetValueOrDefault(name)?.Concurrency);
            }

            foreach (var (name, gate) in next.ClusterGates)
            {
                gate.TakeOver(previous.ClusterGates.GetValueOrDefault(name));
            }
        }

        if (removeRedis) Retire(Interlocked.Exchange(ref _redis, null));
        else if (fresh is not null) Retire(Interlocked.Exchange(ref _redis, fresh));
    }

    // Rate limits, quotas, stores and concurrency as configured (secrets compared through the Redis options record).
    private static bool SameSettings(GatewaySnapshot a, GatewaySnapshot b)
    {
        // The policies are few and nested: compared as JSON. Routes and clusters are compared by name and
        // concurrency (a flat record) directly: serializing 50,000 routes took a tenth of a second per reload.
        static System.Text.Json.JsonElement Of(GatewaySnapshot s) => System.Text.Json.JsonSerializer.SerializeToElement(new
        {
            s.Config.RateLimits,
            s.Config.Quotas,
            s.Config.Plans,
            s.Config.Plan,
        }, ConfigJson.Options);

        return a.Config.Stores == b.Config.Stores
            && a.Config.Routes.Select(static r => (r.Name, r.Concurrency)).SequenceEqual(b.Config.Routes.Select(static r => (r.Name, r.Concurrency)))
            && a.Config.Clusters.Count == b.Config.Clusters.Count
            && a.Config.Clusters.All(c => b.Config.Clusters.TryGetValue(c.Key, out var other) && other.Concurrency == c.Value.Concurrency)
            && System.Text.Json.JsonElement.DeepEquals(Of(a), Of(b));
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
