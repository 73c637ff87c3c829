using System.Collections.Frozen;
using System.Globalization;
using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.Identity.Sessions;

namespace Portcullis.Tests.Identity.Sessions;

/// <summary>
/// The in-process session store on a <see cref="FakeTimeProvider"/>: a session ends after idleTimeout without
/// a renewal or absoluteTimeout after sign-in (whichever is first), and the store never holds more than maxSessions.
/// </summary>
public sealed class LocalSessionStoreTests
{
    private static readonly TimeSpan Idle = TimeSpan.FromMinutes(30);
    private static readonly TimeSpan Absolute = TimeSpan.FromHours(2);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 3, 1, 9, 0, 0, TimeSpan.Zero));

    private static CompiledSessions Sessions(int maxSessions = 100) => new()
    {
        Providers = FrozenDictionary<string, CompiledSessionProvider>.Empty,
        CookieName = "portcullis",
        IdleTimeout = Idle,
        AbsoluteTimeout = Absolute,
        Store = SessionStoreKind.Local,
        MaxSessions = maxSessions,
        LogoutPath = "/.portcullis/logout",
        RefreshBefore = TimeSpan.FromMinutes(1),
        Fingerprint = "test",
    };

    private AuthenticationTicket Ticket(string subject)
    {
        var identity = new ClaimsIdentity([new Claim("sub", subject)], "test");
        var properties = new AuthenticationProperties();
        properties.Items[SessionTicket.StartedItem] = _time.GetUtcNow().ToString("o", CultureInfo.InvariantCulture);
        return new AuthenticationTicket(new ClaimsPrincipal(identity), properties, "portcullis.session.corp");
    }

    private static string? Subject(AuthenticationTicket? ticket) => ticket?.Principal.FindFirst("sub")?.Value;

    [Fact]
    public async Task StoredSession_IsRetrieved_WithItsKey()
    {
        var store = new LocalSessionStore(Sessions(), _time);
        var key = await store.StoreAsync(Ticket("alice"));

        var ticket = await store.RetrieveAsync(key);
        Assert.Equal("alice", Subject(ticket));
        Assert.Equal(key, ticket!.Properties.Items[SessionTicket.IdItem]);
        Assert.Null(await store.RetrieveAsync("no-such-key"));
        Assert.True(key.Length >= 40, "session ids are 256 random bits");
        Assert.NotEqual(key, await store.StoreAsync(Ticket("alice")));
    }

    [Fact]
    public async Task IdleSession_EndsAfterIdleTimeout_AndEveryUseRestartsTheWindow()
    {
        var store = new LocalSessionStore(Sessions(), _time);
        var key = await store.StoreAsync(Ticket("alice"));

        // Used early in the window (before half of it): the window still restarts at this use.
        _time.Advance(Idle * 0.4);
        Assert.Equal(_time.GetUtcNow() + Idle, (await store.RetrieveAsync(key))!.Properties.ExpiresUtc);
        _time.Advance(Idle - TimeSpan.FromSeconds(1));
        Assert.Equal("alice", Subject(await store.RetrieveAsync(key)));

        // Unused for the idle timeout: gone.
        _time.Advance(Idle);
        Assert.Null(await store.RetrieveAsync(key));
        Assert.Equal(0, store.Count); // an expired session found is dropped
    }

    [Fact]
    public async Task RenewedSession_LivesAnotherIdleTimeout()
    {
        var store = new LocalSessionStore(Sessions(), _time);
        var ticket = Ticket("alice");
        var key = await store.StoreAsync(ticket);

        _time.Advance(Idle - TimeSpan.FromMinutes(1));
        await store.RenewAsync(key, (await store.RetrieveAsync(key))!);
        _time.Advance(Idle - TimeSpan.FromSeconds(1));
        Assert.Equal("alice", Subject(await store.RetrieveAsync(key)));
        _time.Advance(Idle);
        Assert.Null(await store.RetrieveAsync(key));
    }

    [Fact]
    public async Task ActiveSession_EndsAtAbsoluteTimeout_HoweverOftenRenewed()
    {
        var store = new LocalSessionStore(Sessions(), _time);
        var key = await store.StoreAsync(Ticket("alice"));
        var signedIn = _time.GetUtcNow();

        while (_time.GetUtcNow() - signedIn < Absolute - TimeSpan.FromMinutes(10))
        {
            _time.Advance(TimeSpan.FromMinutes(10));
            var ticket = await store.RetrieveAsync(key);
            Assert.Equal("alice", Subject(ticket));
            await store.RenewAsync(key, ticket!);
        }

        // The renewal 10 minutes before the absolute limit could not give it the full idle timeout.
        _time.Advance(TimeSpan.FromMinutes(10) - TimeSpan.FromSeconds(1));
        Assert.Equal("alice", Subject(await store.RetrieveAsync(key)));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(await store.RetrieveAsync(key));
    }

    [Fact]
    public async Task SessionWithoutASignInTime_GetsTheIdleTimeout()
    {
        var store = new LocalSessionStore(Sessions(), _time);
        var ticket = Ticket("alice");
        ticket.Properties.Items.Remove(SessionTicket.StartedItem);
        var key = await store.StoreAsync(ticket);
        _time.Advance(Idle);
        Assert.Null(await store.RetrieveAsync(key));
    }

    [Fact]
    public async Task RemovedSession_IsGone()
    {
        var store = new LocalSessionStore(Sessions(), _time);
        var key = await store.StoreAsync(Ticket("alice"));
        await store.RemoveAsync(key);
        Assert.Null(await store.RetrieveAsync(key));
        await store.RemoveAsync(key); // twice is fine
    }

    [Fact]
    public async Task FullStore_DropsTheSessionClosestToExpiry()
    {
        var store = new LocalSessionStore(Sessions(maxSessions: 3), _time);
        var first = await store.StoreAsync(Ticket("first"));
        _time.Advance(TimeSpan.FromMinutes(1));
        var second = await store.StoreAsync(Ticket("second"));
        _time.Advance(TimeSpan.FromMinutes(1));
        var third = await store.StoreAsync(Ticket("third"));
        _time.Advance(TimeSpan.FromMinutes(1));
        // The first session is used and renewed: now the second is closest to expiry.
        await store.RenewAsync(first, (await store.RetrieveAsync(first))!);

        var fourth = await store.StoreAsync(Ticket("fourth"));
        Assert.Equal(3, store.Count);
        Assert.Null(await store.RetrieveAsync(second));
        Assert.Equal("first", Subject(await store.RetrieveAsync(first)));
        Assert.Equal("third", Subject(await store.RetrieveAsync(third)));
        Assert.Equal("fourth", Subject(await store.RetrieveAsync(fourth)));
    }

    [Fact]
    public async Task FullStore_DropsExpiredSessionsFirst()
    {
        var store = new LocalSessionStore(Sessions(maxSessions: 3), _time);
        var stale = new List<string> { await store.StoreAsync(Ticket("a")), await store.StoreAsync(Ticket("b")) };
        _time.Advance(TimeSpan.FromMinutes(20));
        var live = await store.StoreAsync(Ticket("live"));
        _time.Advance(TimeSpan.FromMinutes(15)); // a and b have been idle 35 minutes

        var added = await store.StoreAsync(Ticket("new"));
        Assert.Equal(2, store.Count);
        Assert.Equal("live", Subject(await store.RetrieveAsync(live)));
        Assert.Equal("new", Subject(await store.RetrieveAsync(added)));
        foreach (var key in stale) Assert.Null(await store.RetrieveAsync(key));
    }

    [Fact]
    public async Task ManySessions_NeverExceedTheBound()
    {
        var store = new LocalSessionStore(Sessions(maxSessions: 50), _time);
        string last = "";
        for (var i = 0; i < 500; i++)
        {
            last = await store.StoreAsync(Ticket("u" + i));
            _time.Advance(TimeSpan.FromSeconds(1));
            Assert.True(store.Count <= 50);
        }

        Assert.Equal(50, store.Count);
        Assert.Equal("u499", Subject(await store.RetrieveAsync(last)));
    }
}
