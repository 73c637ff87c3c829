using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Http;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// routes[].cache end to end on real sockets, counting what reaches the upstream: a cacheable answer is served
/// from memory the second time (with Age); no-store, private, Set-Cookie, answers without a lifetime, a Vary on
/// a header the route does not vary by are never stored; Vary and the query string give separate entries; a short
/// max-age expires; a route with auth caches only per consumer, and one consumer never gets another's entry.
/// </summary>
public sealed class ResponseCacheTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;
    private readonly ConcurrentDictionary<string, int> _hits = new(StringComparer.Ordinal);
    private readonly List<string> _keys = [];

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("api");
        _upstream.Handler = async context =>
        {
            var request = context.Request;
            var key = request.Path + request.QueryString + "|" + request.Headers.AcceptLanguage + "|" + request.Headers["X-Consumer-Id"];
            var hit = _hits.AddOrUpdate(key, 1, (_, n) => n + 1);
            var last = request.Path.Value!.Split('/')[^1];
            var headers = context.Response.Headers;
            switch (last)
            {
                case "pub": headers.CacheControl = "public, max-age=60"; break;
                case "nostore": headers.CacheControl = "no-store"; break;
                case "private": headers.CacheControl = "private, max-age=60"; break;
                case "short": headers.CacheControl = "max-age=1"; break;
                case "cookie": headers.CacheControl = "max-age=60"; headers.SetCookie = "s=1"; break;
                case "vary": headers.CacheControl = "max-age=60"; headers.Vary = "Accept-Language"; break;
                case "varyother": headers.CacheControl = "max-age=60"; headers.Vary = "X-Other"; break;
                case "me": headers.CacheControl = "max-age=60"; break;
            }

            context.Response.ContentType = "text/plain";
            await context.Response.WriteAsync($"{last} #{hit} for '{request.Headers["X-Consumer-Id"]}' in '{request.Headers.AcceptLanguage}'");
        };

        var directory = Directory.CreateTempSubdirectory("portcullis-cache-keys-");
        var keyFile = Path.Combine(directory.FullName, "keys.yaml");
        await File.WriteAllTextAsync(keyFile, "consumers: {}\n");
        foreach (var consumer in new[] { "alice", "bob" })
        {
            using var output = new StringWriter();
            using var errors = new StringWriter();
            Assert.True(await PortcullisCli.RunAsync(["keys", "create", "--file", keyFile, "--consumer", consumer], output, errors) == 0, errors.ToString());
            _keys.Add(output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..]);
        }

        _gateway = await TestGateway.StartAsync($$"""
            identity:
              apiKeys: { file: keys.yaml }
            routes:
              - { name: cached, match: { pathPrefix: /c/ }, cache: { varyByHeaders: [Accept-Language] }, cluster: api }
              - { name: default-ttl, match: { pathPrefix: /d/ }, cache: { defaultTtl: 30s }, cluster: api }
              - { name: keyed, match: { pathPrefix: /k/ }, auth: { apiKey: true }, cache: { perConsumer: true }, cluster: api }
              - { name: keyed-shared, match: { pathPrefix: /s/ }, auth: { apiKey: true }, cache: {}, cluster: api }
              - { name: plain, match: { pathPrefix: /o/ }, cluster: api }
            clusters:
              api: { destinations: [{{_upstream.Url}}] }
            """, new Dictionary<string, string> { ["keys.yaml"] = await File.ReadAllTextAsync(keyFile) });
        Directory.Delete(directory.FullName, recursive: true);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    private async Task<(string Body, HttpResponseMessage Response)> GetAsync(string path, string? language = null, string? key = null, string? cacheControl = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (language is not null) request.Headers.TryAddWithoutValidation("Accept-Language", language);
        if (key is not null) request.Headers.Add("X-Api-Key", key);
        if (cacheControl is not null) request.Headers.TryAddWithoutValidation("Cache-Control", cacheControl);
        var response = await _gateway.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.Content.ReadAsStringAsync(), response);
    }

    [Fact]
    public async Task A_cacheable_answer_is_served_from_memory_the_second_time_and_the_query_string_varies_it()
    {
        var (first, r1) = await GetAsync("/c/pub?id=1");
        var (second, r2) = await GetAsync("/c/pub?id=1");
        Assert.Equal(first, second);
        Assert.StartsWith("pub #1", second, StringComparison.Ordinal);
        Assert.False(r1.Headers.Age.HasValue);
        Assert.True(r2.Headers.Age.HasValue, "a cached answer carries Age");
        Assert.StartsWith("pub #1", (await GetAsync("/c/pub?id=2")).Body, StringComparison.Ordinal); // its own entry
        // A client asking for a fresh answer gets one (and it is stored for the next).
        Assert.StartsWith("pub #2", (await GetAsync("/c/pub?id=1", cacheControl: "no-cache")).Body, StringComparison.Ordinal);
        // A route without cache never caches.
        await GetAsync("/o/pub");
        Assert.StartsWith("pub #2", (await GetAsync("/o/pub")).Body, StringComparison.Ordinal);
        r1.Dispose();
        r2.Dispose();
    }

    [Theory]
    [InlineData("/c/nostore")]
    [InlineData("/c/private")]
    [InlineData("/c/cookie")]
    [InlineData("/c/none")]       // no lifetime and no defaultTtl
    [InlineData("/c/varyother")]  // Vary on a header the route does not vary by
    public async Task Answers_a_shared_cache_must_not_keep_are_never_stored(string path)
    {
        await GetAsync(path);
        var (body, response) = await GetAsync(path);
        using (response)
        {
            Assert.Contains("#2", body, StringComparison.Ordinal);
            Assert.False(response.Headers.Age.HasValue);
        }
    }

    [Fact]
    public async Task Vary_gives_one_entry_per_language_and_a_default_ttl_caches_answers_without_a_lifetime()
    {
        Assert.StartsWith("vary #1 for '' in 'en'", (await GetAsync("/c/vary", "en")).Body, StringComparison.Ordinal);
        Assert.StartsWith("vary #1 for '' in 'de'", (await GetAsync("/c/vary", "de")).Body, StringComparison.Ordinal);
        Assert.StartsWith("vary #1 for '' in 'en'", (await GetAsync("/c/vary", "en")).Body, StringComparison.Ordinal);
        Assert.Equal(1, _hits["/c/vary|en|"]);

        await GetAsync("/d/none");
        Assert.StartsWith("none #1", (await GetAsync("/d/none")).Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_short_max_age_expires()
    {
        Assert.StartsWith("short #1", (await GetAsync("/c/short")).Body, StringComparison.Ordinal);
        // Real time: max-age=1 is a second; poll until the entry is gone (a loaded machine only makes it later).
        await Eventually.TrueAsync(async () => (await GetAsync("/c/short")).Body.StartsWith("short #2", StringComparison.Ordinal), "the entry expires after max-age=1", TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_route_with_auth_caches_per_consumer_only_when_asked_and_never_across_consumers()
    {
        var (alice, bob) = (_keys[0], _keys[1]);
        Assert.StartsWith("me #1 for 'alice'", (await GetAsync("/k/me", key: alice)).Body, StringComparison.Ordinal);
        Assert.StartsWith("me #1 for 'bob'", (await GetAsync("/k/me", key: bob)).Body, StringComparison.Ordinal);
        Assert.StartsWith("me #1 for 'alice'", (await GetAsync("/k/me", key: alice)).Body, StringComparison.Ordinal);
        Assert.StartsWith("me #1 for 'bob'", (await GetAsync("/k/me", key: bob)).Body, StringComparison.Ordinal);

        // Without a key the route refuses before the cache: a cached answer never reaches an unauthenticated caller.
        using (var anonymous = await _gateway.Client.GetAsync("/k/me")) Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);

        // cache: {} on a route with auth but without perConsumer: not cached at all.
        await GetAsync("/s/me", key: alice);
        Assert.StartsWith("me #2 for 'alice'", (await GetAsync("/s/me", key: alice)).Body, StringComparison.Ordinal);
    }
}
