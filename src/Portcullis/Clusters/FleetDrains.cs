using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Traffic;
using StackExchange.Redis;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Clusters;

/// <summary>
/// Fleet-wide drains (POST …/drain?scope=fleet): kept in Redis (stores.redis) as one hash,
/// <c>{prefix}drains</c>, field <c>cluster␟destination</c>, value {by, at, instance}. Writing one is a
/// script that sets the field and publishes on the channel <c>{prefix}drains</c>; every instance
/// subscribes and reads the hash again when told, and also every <see cref="PollEvery"/> (a missed
/// message, a reconnect) and at start. While Redis cannot answer, an instance keeps the fleet drains it
/// read last.
/// </summary>
internal sealed partial class FleetDrains(
    TrafficStores stores,
    DrainRegistry drains,
    IProxyStateLookup proxyState,
    IClusterDestinationsUpdater destinationsUpdater,
    TimeProvider time,
    ILogger<FleetDrains> logger) : BackgroundService
{
    /// <summary>The fallback read when no message arrives.</summary>
    internal static readonly TimeSpan PollEvery = TimeSpan.FromSeconds(5);

    // Until the first successful read (Redis still connecting at start), try again soon.
    private static readonly TimeSpan RetryFirstRead = TimeSpan.FromMilliseconds(250);

    private const string Set = """
        if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
        redis.call('PUBLISH', ARGV[3], ARGV[1])
        return 1
        """;

    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _messages;
    private ConnectionMultiplexer? _subscribed;
    private bool _read;

    /// <summary>This instance's name in the records it writes.</summary>
    internal static string InstanceName { get; } = $"{Environment.MachineName}/{Environment.ProcessId}";

    internal enum Outcome
    {
        Applied,
        NoStore,
        Unavailable,
    }

    /// <summary>Drains (or undrains, <paramref name="drain"/> false) a destination for the whole fleet; applied here at once.</summary>
    public async Task<Outcome> SetAsync(string cluster, string destination, bool drain, string actor, CancellationToken cancellationToken)
    {
        if (stores.Redis is not { } redis) return Outcome.NoStore;
        var record = drain ? new FleetDrain(actor, time.GetUtcNow(), InstanceName) : null;
        var value = record is null ? "" : JsonSerializer.Serialize(new Stored(record.By, record.At, record.Instance), JsonSerializerOptions.Web);
        var (ok, _) = await redis.RunAsync(
            static (db, call) => db.ScriptEvaluateAsync(Set, [call.Key], [call.Field, call.Value, call.Channel]),
            (Key: (RedisKey)Key(redis), Field: Field(cluster, destination), Value: value, Channel: Key(redis)),
            cancellationToken).ConfigureAwait(false);
        if (!ok) return Outcome.Unavailable;
        drains.SetFleet(cluster, destination, record);
        Update([cluster]);
        return Outcome.Applied;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var wake = Volatile.Read(ref _wake).Task;
            try
            {
                await RefreshAsync(stoppingToken).ConfigureAwait(false);
                await Task.WhenAny(wake, Task.Delay(_read ? PollEvery : RetryFirstRead, time, stoppingToken)).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                // A malformed record or a subscription failure must not end the loop; the next read tries again.
                Log.ReadFailed(logger, ex.GetType().Name);
                try
                {
                    await Task.Delay(PollEvery, time, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Change messages received on the drains channel since start (pub/sub, not the poll, carried a change).</summary>
    internal long MessagesReceived => Interlocked.Read(ref _messages);

    /// <summary>True once this instance listens on the drains channel (until then only reads carry changes).</summary>
    internal bool Subscribed => Volatile.Read(ref _subscribed) is not null;

    private void Wake() => Interlocked.Exchange(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    /// <summary>Reads every fleet drain from Redis and applies the differences.</summary>
    internal async Task RefreshAsync(CancellationToken cancellationToken)
    {
        if (stores.Redis is not { } redis)
        {
            // No Redis any more (a reload removed it): fleet drains can be neither read nor undrained.
            Apply(new Dictionary<(string, string), FleetDrain>());
            _read = true;
            return;
        }

        await SubscribeAsync(redis).ConfigureAwait(false);
        var (ok, entries) = await redis.RunAsync(static (db, key) => db.HashGetAllAsync(key), (RedisKey)Key(redis), cancellationToken).ConfigureAwait(false);
        if (!ok) return;
        var read = new Dictionary<(string, string), FleetDrain>();
        foreach (var entry in entries)
        {
            var field = entry.Name.ToString();
            var separator = field.IndexOf('\u001f', StringComparison.Ordinal);
            if (separator < 0 || JsonSerializer.Deserialize<Stored>(entry.Value.ToString(), JsonSerializerOptions.Web) is not { } stored) continue;
            read[(field[..separator], field[(separator + 1)..])] = new FleetDrain(stored.By ?? "?", stored.At, stored.Instance ?? "?");
        }

        _read = true;
        Apply(read);
    }

    private void Apply(Dictionary<(string, string), FleetDrain> read)
    {
        var before = drains.FleetDrains;
        var changed = drains.SetFleet(read);
        if (changed.Count == 0) return;
        foreach (var ((cluster, destination), drain) in read)
        {
            if (!before.ContainsKey((cluster, destination))) Log.Applied(logger, "drained", cluster, destination, drain.By, drain.Instance);
        }

        foreach (var (cluster, destination) in before.Keys)
        {
            if (!read.ContainsKey((cluster, destination))) Log.Applied(logger, "undrained", cluster, destination, "fleet", "redis");
        }

        Update(changed);
    }

    private void Update(IEnumerable<string> clusters)
    {
        foreach (var name in clusters)
        {
            if (proxyState.TryGetCluster(name, out var cluster)) destinationsUpdater.UpdateAvailableDestinations(cluster);
        }
    }

    // One subscription per connection: a reload that makes a new Redis store subscribes on its connection.
    private async Task SubscribeAsync(RedisCounterStore redis)
    {
        if (redis.Connection is not { } connection || ReferenceEquals(connection, _subscribed)) return;
        await connection.GetSubscriber().SubscribeAsync(RedisChannel.Literal(Key(redis)), (_, _) =>
        {
            Interlocked.Increment(ref _messages);
            Wake();
        }).ConfigureAwait(false);
        Volatile.Write(ref _subscribed, connection);
    }

    private static string Key(RedisCounterStore redis) => redis.Options.KeyPrefix + "drains";

    private static string Field(string cluster, string destination) => cluster + "\u001f" + destination;

    private sealed record Stored(string? By, DateTimeOffset At, string? Instance);

    private static partial class Log
    {
        [LoggerMessage(2120, LogLevel.Information, "Destination {Destination} of cluster {Cluster} {Action} fleet-wide (by {By} through {Instance})")]
        public static partial void Applied(ILogger logger, string action, string cluster, string destination, string by, string instance);

        [LoggerMessage(2121, LogLevel.Warning, "Fleet-wide drains could not be read from Redis ({Error}); the last ones read stay in force")]
        public static partial void ReadFailed(ILogger logger, string error);
    }
}
