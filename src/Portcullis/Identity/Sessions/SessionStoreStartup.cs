using System.Security.Cryptography;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Logging;
using Portcullis.State;
using StackExchange.Redis;

namespace Portcullis.Identity.Sessions;

/// <summary>
/// Gives the session store's Redis up to five seconds to connect before the gateway listens, like the
/// counters (TrafficStartup), so the first session requests do not meet a 503. A Redis down at start does
/// not stop the gateway: session routes answer 503 until it connects. Once connected, warns when the key
/// ring in Redis still holds keys written unencrypted (before keyRing was configured): they stay readable
/// by anyone who can read Redis until they are deleted.
/// </summary>
internal sealed partial class SessionStoreStartup(SessionRuntime runtime, TimeProvider time, ILogger<SessionStoreStartup> logger) : Microsoft.Extensions.Hosting.IHostedService
{
    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(5);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (runtime.Redis is not { } redis || runtime.Sessions is not { } sessions) return;
        var started = time.GetTimestamp();
        while (redis.Health.State == StoreState.Down && time.GetElapsedTime(started) < MaxWait)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(20), time, cancellationToken);
        }

        // Read (or create) the key ring now rather than on the first request: it is cached from then on.
        string? error = null;
        while (redis.Health.State == StoreState.Up && (error = TryLoadKeyRing()) is not null && time.GetElapsedTime(started) < MaxWait)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(100), time, cancellationToken);
        }

        if (error is not null) LogKeyRingNotLoaded(logger, error);

        if (sessions.KeyRingCertificate is null) return;
        var key = sessions.RedisKeyPrefix + "dataprotection-keys";
        var (ok, keys) = await redis.RunAsync(static (db, key) => db.ListRangeAsync(key), (RedisKey)key, cancellationToken);
        if (!ok) return;
        // An encrypted key holds <encryptedSecret>; an unencrypted one its <masterKey> in plain text.
        var plain = keys.Count(k => ((string?)k)?.Contains("<masterKey", StringComparison.Ordinal) == true);
        if (plain > 0) LogPlaintextKeys(logger, plain, key);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    // Null when the key ring could be read (or created) and used; else what went wrong (no secrets).
    private string? TryLoadKeyRing()
    {
        try
        {
            runtime.DataProtection!.CreateProtector("Portcullis.Sessions.Startup").Protect([1]);
            return null;
        }
        catch (CryptographicException e)
        {
            return e.InnerException?.GetType().Name ?? e.GetType().Name;
        }
    }

    [LoggerMessage(EventId = 7014, Level = LogLevel.Warning, Message = "The session key ring could not be read from Redis or used at start-up ({Error}); sign-ins try again (a keyRing certificate other than the one that encrypted the keys cannot read them)")]
    private static partial void LogKeyRingNotLoaded(ILogger logger, string error);

    [LoggerMessage(EventId = 7015, Level = LogLevel.Warning, Message = "The session key ring in Redis holds {Count} key(s) stored unencrypted before keyRing was set: whoever can read Redis can still decrypt sessions protected with them. Delete the Redis key {Key} (every session ends) to keep only encrypted keys")]
    private static partial void LogPlaintextKeys(ILogger logger, int count, string key);
}
