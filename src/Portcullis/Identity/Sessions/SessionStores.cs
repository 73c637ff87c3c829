using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.DataProtection;
using Portcullis.State;
using Portcullis.Traffic;
using StackExchange.Redis;

namespace Portcullis.Identity.Sessions;

/// <summary>Lifetimes shared by the session stores: idle expiry, capped by the absolute lifetime from sign-in.</summary>
internal static class SessionTicket
{
    /// <summary>Authentication property holding when the user signed in (round-trip "o" format).</summary>
    public const string StartedItem = ".portcullis.started";

    /// <summary>Set on a retrieved ticket: the store key of this session (used to single-flight token refreshes).</summary>
    public const string IdItem = ".portcullis.sid";

    public static DateTimeOffset? Started(AuthenticationProperties properties) =>
        properties.Items.TryGetValue(StartedItem, out var text) && DateTimeOffset.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.RoundtripKind, out var started) ? started : null;

    public static DateTimeOffset ExpiresAt(AuthenticationTicket ticket, CompiledSessions sessions, DateTimeOffset now)
    {
        var idle = now + sessions.IdleTimeout;
        var absolute = (Started(ticket.Properties) ?? now) + sessions.AbsoluteTimeout;
        return idle < absolute ? idle : absolute;
    }

    public static string NewId() => Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));

    /// <summary>
    /// The name a shared store keeps a session under: the SHA-256 of its id (hex), so reading the store's
    /// key names gives nobody a session id to put in a cookie. The id has 256 random bits: no salt needed.
    /// </summary>
    public static string StoreName(string id) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id)));

    /// <summary>A retrieved ticket expires when the store would drop it: the store is the authority on idle and absolute expiry.</summary>
    public static AuthenticationTicket? Retrieved(AuthenticationTicket? ticket, string key, DateTimeOffset expires)
    {
        if (ticket is null) return null;
        ticket.Properties.Items[IdItem] = key;
        ticket.Properties.ExpiresUtc = expires;
        return ticket;
    }

    public static byte[] Serialize(AuthenticationTicket ticket)
    {
        // The store key is added on retrieval; never persist it inside the ticket.
        ticket.Properties.Items.Remove(IdItem);
        return TicketSerializer.Default.Serialize(ticket);
    }

    public static AuthenticationTicket? Deserialize(byte[] data) => TicketSerializer.Default.Deserialize(data);
}

/// <summary>The session store could not answer in time (Redis down, slow, or its circuit open): the request gets a 503.</summary>
internal sealed class SessionStoreUnavailableException(string reason) : Exception("session store unavailable: " + reason);


/// <summary>
/// In-process session store: serialized tickets keyed by a random id, expiring by <see cref="TimeProvider"/>.
/// Idle expiry slides on every read (a session ends idleTimeout after its last use, capped by the absolute
/// lifetime). Bounded: at the limit, expired sessions go first, then the one closest to expiry.
/// </summary>
internal sealed class LocalSessionStore(CompiledSessions sessions, TimeProvider time) : ITicketStore
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    // Expires is written by concurrent reads (sliding): ticks, read and written atomically.
    private sealed class Entry(byte[] ticket, DateTimeOffset absolute, DateTimeOffset expires)
    {
        private long _expiresTicks = expires.UtcTicks;

        public byte[] Ticket { get; } = ticket;

        public DateTimeOffset Absolute { get; } = absolute;

        public DateTimeOffset Expires
        {
            get => new(Interlocked.Read(ref _expiresTicks), TimeSpan.Zero);
            set => Interlocked.Exchange(ref _expiresTicks, value.UtcTicks);
        }
    }

    public int Count => _entries.Count;

    public Task<string> StoreAsync(AuthenticationTicket ticket)
    {
        var key = SessionTicket.NewId();
        MakeRoom();
        _entries[key] = NewEntry(ticket);
        return Task.FromResult(key);
    }

    public Task RenewAsync(string key, AuthenticationTicket ticket)
    {
        _entries[key] = NewEntry(ticket);
        return Task.CompletedTask;
    }

    private Entry NewEntry(AuthenticationTicket ticket)
    {
        var now = time.GetUtcNow();
        var absolute = (SessionTicket.Started(ticket.Properties) ?? now) + sessions.AbsoluteTimeout;
        return new Entry(SessionTicket.Serialize(ticket), absolute, SessionTicket.ExpiresAt(ticket, sessions, now));
    }

    public Task<AuthenticationTicket?> RetrieveAsync(string key)
    {
        if (!_entries.TryGetValue(key, out var entry)) return Task.FromResult<AuthenticationTicket?>(null);
        var now = time.GetUtcNow();
        if (entry.Expires <= now)
        {
            _entries.TryRemove(new KeyValuePair<string, Entry>(key, entry));
            return Task.FromResult<AuthenticationTicket?>(null);
        }

        // A use: the idle window starts again (not capped beyond the absolute lifetime).
        var idle = now + sessions.IdleTimeout;
        var expires = idle < entry.Absolute ? idle : entry.Absolute;
        entry.Expires = expires;
        return Task.FromResult(SessionTicket.Retrieved(SessionTicket.Deserialize(entry.Ticket), key, expires));
    }

    public Task RemoveAsync(string key)
    {
        _entries.TryRemove(key, out _);
        return Task.CompletedTask;
    }

    private void MakeRoom()
    {
        if (_entries.Count < sessions.MaxSessions) return;
        var now = time.GetUtcNow();
        foreach (var (key, entry) in _entries)
        {
            if (entry.Expires <= now) _entries.TryRemove(key, out _);
        }

        while (_entries.Count >= sessions.MaxSessions)
        {
            var oldest = _entries.MinBy(e => e.Value.Expires);
            if (oldest.Key is null) break;
            _entries.TryRemove(oldest.Key, out _);
        }
    }
}

/// <summary>
/// Sessions in Redis, shared by every gateway instance: {prefix}session:{sha256(id)} holds the ticket,
/// encrypted with Data Protection (whose key ring is in Redis too, encrypted with the keyRing certificate),
/// with a TTL of the session's remaining lifetime that every read slides (GETEX, Redis 6.2+). Every call
/// goes through the Redis client's timeout (stores.redis.timeout) and circuit breaker: an unavailable store
/// throws <see cref="SessionStoreUnavailableException"/> within the timeout, never waits longer.
/// </summary>
internal sealed class RedisSessionStore(CompiledSessions sessions, RedisCounterStore redis, IDataProtectionProvider protection, TimeProvider time) : ITicketStore
{
    private readonly IDataProtector _protector = protection.CreateProtector("Portcullis.Sessions.Store");

    private RedisKey Key(string id) => sessions.RedisKeyPrefix + "session:" + SessionTicket.StoreName(id);

    public async Task<string> StoreAsync(AuthenticationTicket ticket)
    {
        var id = SessionTicket.NewId();
        await RenewAsync(id, ticket);
        return id;
    }

    public async Task RenewAsync(string key, AuthenticationTicket ticket)
    {
        var ttl = SessionTicket.ExpiresAt(ticket, sessions, time.GetUtcNow()) - time.GetUtcNow();
        if (ttl <= TimeSpan.Zero)
        {
            await RemoveAsync(key);
            return;
        }

        var value = _protector.Protect(SessionTicket.Serialize(ticket));
        await RunAsync(static (db, call) => db.StringSetAsync(call.Key, call.value, call.ttl), (Key: Key(key), value, ttl));
    }

    public async Task<AuthenticationTicket?> RetrieveAsync(string key)
    {
        // One round trip reads the session and restarts its idle window.
        var value = await RunAsync(static (db, call) => db.StringGetSetExpiryAsync(call.Key, call.IdleTimeout), (Key: Key(key), sessions.IdleTimeout));
        if (value.IsNullOrEmpty) return null;
        AuthenticationTicket? ticket;
        try
        {
            ticket = SessionTicket.Deserialize(_protector.Unprotect((byte[])value!));
        }
        catch (CryptographicException)
        {
            return null;
        }

        if (ticket is null) return null;
        var now = time.GetUtcNow();
        return SessionTicket.Retrieved(ticket, key, SessionTicket.ExpiresAt(ticket, sessions, now));
    }

    public Task RemoveAsync(string key) => RunAsync(static (db, key) => db.KeyDeleteAsync(key), Key(key));

    private async Task<T> RunAsync<T, TState>(Func<IDatabase, TState, Task<T>> call, TState state)
    {
        var (ok, value) = await redis.RunAsync(call, state, CancellationToken.None);
        if (!ok) throw new SessionStoreUnavailableException(redis.Health.LastError ?? "no answer");
        return value;
    }
}
