using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.DataProtection;
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

    public static byte[] Serialize(AuthenticationTicket ticket)
    {
        // The store key is added on retrieval; never persist it inside the ticket.
        ticket.Properties.Items.Remove(IdItem);
        return TicketSerializer.Default.Serialize(ticket);
    }

    public static AuthenticationTicket? Deserialize(byte[] data, string key)
    {
        var ticket = TicketSerializer.Default.Deserialize(data);
        if (ticket is not null) ticket.Properties.Items[IdItem] = key;
        return ticket;
    }
}

/// <summary>
/// In-process session store: serialized tickets keyed by a random id, expiring by <see cref="TimeProvider"/>
/// (idle, capped by the absolute lifetime). Bounded: at the limit, expired sessions go first, then the one
/// closest to expiry.
/// </summary>
internal sealed class LocalSessionStore(CompiledSessions sessions, TimeProvider time) : ITicketStore
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    private sealed record Entry(byte[] Ticket, DateTimeOffset Expires);

    public int Count => _entries.Count;

    public Task<string> StoreAsync(AuthenticationTicket ticket)
    {
        var key = SessionTicket.NewId();
        MakeRoom();
        _entries[key] = new Entry(SessionTicket.Serialize(ticket), SessionTicket.ExpiresAt(ticket, sessions, time.GetUtcNow()));
        return Task.FromResult(key);
    }

    public Task RenewAsync(string key, AuthenticationTicket ticket)
    {
        _entries[key] = new Entry(SessionTicket.Serialize(ticket), SessionTicket.ExpiresAt(ticket, sessions, time.GetUtcNow()));
        return Task.CompletedTask;
    }

    public Task<AuthenticationTicket?> RetrieveAsync(string key)
    {
        if (!_entries.TryGetValue(key, out var entry)) return Task.FromResult<AuthenticationTicket?>(null);
        if (entry.Expires <= time.GetUtcNow())
        {
            _entries.TryRemove(new KeyValuePair<string, Entry>(key, entry));
            return Task.FromResult<AuthenticationTicket?>(null);
        }

        return Task.FromResult(SessionTicket.Deserialize(entry.Ticket, key));
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
/// Sessions in Redis, shared by every gateway instance: {prefix}session:{id} holds the ticket, encrypted
/// with Data Protection (whose key ring is in Redis too), with a TTL of the session's remaining lifetime.
/// </summary>
internal sealed class RedisSessionStore(CompiledSessions sessions, Func<IDatabase> database, IDataProtectionProvider protection, TimeProvider time) : ITicketStore
{
    private readonly IDataProtector _protector = protection.CreateProtector("Portcullis.Sessions.Store");

    private RedisKey Key(string id) => sessions.RedisKeyPrefix + "session:" + id;

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

        await database().StringSetAsync(Key(key), _protector.Protect(SessionTicket.Serialize(ticket)), ttl);
    }

    public async Task<AuthenticationTicket?> RetrieveAsync(string key)
    {
        var value = await database().StringGetAsync(Key(key));
        if (value.IsNullOrEmpty) return null;
        try
        {
            return SessionTicket.Deserialize(_protector.Unprotect((byte[])value!), key);
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    public Task RemoveAsync(string key) => database().KeyDeleteAsync(Key(key));
}
