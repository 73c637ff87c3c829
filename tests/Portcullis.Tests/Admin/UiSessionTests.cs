using System.Collections.Frozen;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Admin;
using Portcullis.Configuration;

namespace Portcullis.Tests.Admin;

/// <summary>The dashboard's sign-in cookie on fake time: its expiry, its read-only caller, where it counts.</summary>
public sealed class UiSessionTests
{
    private static readonly AdminToken Ops = new("ops", AdminScope.Admin, AdminAuthenticator.Hash("ops-token-0123456789abcdef"));

    private static CompiledAdminAuth Auth(params AdminToken[] tokens) =>
        new() { Tokens = tokens, Certificates = [], Open = FrozenSet<string>.Empty };

    private static DefaultHttpContext Request(string method, string path, string? cookie = null, bool https = false)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = method;
        context.Request.Path = path;
        context.Request.IsHttps = https;
        if (cookie is not null) context.Request.Headers.Cookie = cookie;
        return context;
    }

    private static string SignIn(UiSession session, bool https = false)
    {
        var context = Request("POST", "/ui/login", https: https);
        session.SignIn(context, Ops);
        return context.Response.Headers.SetCookie.First()!.Split(';')[0];
    }

    [Fact]
    public void The_cookie_names_the_token_with_the_read_scope_until_it_expires()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero));
        var session = new UiSession(time, NullLoggerFactory.Instance);
        var cookie = SignIn(session);

        var caller = session.Read(Request("GET", "/ui/", cookie), Auth(Ops));
        Assert.Equal(new AdminCaller("ui:ops", AdminScope.Read), caller);

        time.Advance(UiSession.Lifetime - TimeSpan.FromSeconds(1));
        Assert.NotNull(session.Read(Request("GET", "/ui/", cookie), Auth(Ops)));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(session.Read(Request("GET", "/ui/", cookie), Auth(Ops)));
    }

    [Fact]
    public void A_cookie_of_a_removed_or_changed_token_or_of_another_process_is_refused()
    {
        var time = new FakeTimeProvider();
        var session = new UiSession(time, NullLoggerFactory.Instance);
        var cookie = SignIn(session);
        Assert.Null(session.Read(Request("GET", "/ui/", cookie), Auth()));
        Assert.Null(session.Read(Request("GET", "/ui/", cookie), Auth(Ops with { Hash = AdminAuthenticator.Hash("ops-token-rotated-0000000000") })));
        Assert.Null(new UiSession(time, NullLoggerFactory.Instance).Read(Request("GET", "/ui/", cookie), Auth(Ops)));
    }

    [Fact]
    public void Over_https_the_cookie_is_secure_and_prefixed()
    {
        var session = new UiSession(new FakeTimeProvider(), NullLoggerFactory.Instance);
        var context = Request("POST", "/ui/login", https: true);
        session.SignIn(context, Ops);
        Assert.All(context.Response.Headers.SetCookie, c =>
        {
            Assert.StartsWith(UiSession.SecureCookieName + "=", c, StringComparison.Ordinal);
            Assert.Contains("secure", c, StringComparison.OrdinalIgnoreCase);
        });
        var cookie = context.Response.Headers.SetCookie.First()!.Split(';')[0];
        Assert.NotNull(session.Read(Request("GET", "/ui/", cookie, https: true), Auth(Ops)));
    }

    [Theory]
    [InlineData("GET", "/ui/", true)]
    [InlineData("HEAD", "/ui/app.js", true)]
    [InlineData("GET", "/admin/analytics/summary", true)]
    [InlineData("POST", "/admin/analytics/summary", false)]
    [InlineData("POST", "/admin/reload", false)]
    [InlineData("GET", "/admin/config", false)]
    [InlineData("GET", "/admin/analytics", false)]
    [InlineData("GET", "/ui", false)]
    public void The_cookie_counts_only_for_reads_of_the_dashboard_and_analytics(string method, string path, bool accepted) =>
        Assert.Equal(accepted, UiSession.Accepts(Request(method, path).Request));
}
