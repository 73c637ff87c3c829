using System.Collections.Frozen;
using System.Net;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Clusters;
using Portcullis.Routing;

namespace Portcullis.Identity;

/// <summary>
/// Which inbound request headers never reach routing, authorization or an upstream, compiled once per snapshot.
/// CGI, WSGI, Rack and PHP upstreams see headers as HTTP_X_CONSUMER_ID: `X_Consumer_Id` and `X-Consumer-Id` are the
/// same variable there, so a spoofed underscore spelling of a header the gateway sets would be read as the real
/// one. Every inbound header whose name normalises (ASCII case-insensitive, `_` ≡ `-`) to a header the gateway
/// sets is removed: the identity headers and the assertion in any spelling; headers the gateway sets or extends
/// later (forwarded headers, route `requestHeaders.set`, upstream credentials, request id) in their underscore
/// spellings (their own spelling keeps its existing treatment). A listener with `dropUnderscoreHeaders` removes
/// every header with `_` in its name, as nginx does by default.
/// </summary>
internal sealed class InboundHeaderScrub
{
    public static readonly InboundHeaderScrub None = new(FrozenDictionary<string, bool>.Empty, false, null);

    // Normalised name → true: remove in any spelling; false: remove only spellings with '_'.
    private readonly FrozenDictionary<string, bool> _names;
    private readonly bool _dropUnderscores;
    private readonly FrozenDictionary<int, (IPAddress? Ip, bool Drop)[]>? _dropByPort;

    // Cheap pre-filter before hashing a name: its length (bit 63: 63 or longer) and its folded first character
    // (ASCII) must be those of some listed name. Host, Accept, Authorization, traceparent ... fail it at once.
    private readonly ulong _lengths;
    private readonly ulong _firstLow;
    private readonly ulong _firstHigh;

    private InboundHeaderScrub(FrozenDictionary<string, bool> names, bool dropUnderscores, FrozenDictionary<int, (IPAddress? Ip, bool Drop)[]>? dropByPort)
    {
        _names = names;
        _dropUnderscores = dropUnderscores;
        _dropByPort = dropByPort;
        foreach (var name in names.Keys)
        {
            _lengths |= 1UL << Math.Min(name.Length, 63);
            var first = HeaderNameComparer.Fold(name[0]);
            if (first < 64) _firstLow |= 1UL << first;
            else if (first < 128) _firstHigh |= 1UL << (first - 64);
        }
    }

    private bool MayBeListed(string name)
    {
        if (name.Length == 0 || (_lengths & (1UL << Math.Min(name.Length, 63))) == 0) return false;
        var first = HeaderNameComparer.Fold(name[0]);
        return first < 64 ? (_firstLow & (1UL << first)) != 0 : first < 128 && (_firstHigh & (1UL << (first - 64))) != 0;
    }

    /// <summary>Removed in every spelling, even the exact one: a client can never assert an identity.</summary>
    internal static readonly string[] AlwaysRemoved = ["X-Original-URL", "X-Rewrite-URL"];

    /// <summary>Set or extended by the gateway toward upstreams; their underscore spellings are removed.</summary>
    internal static readonly string[] SetLater =
        ["X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Prefix", "X-Real-IP", Pipeline.GatewayFeature.RequestIdHeader];

    public static InboundHeaderScrub Compile(PortcullisConfig config, IEnumerable<CompiledRoute> routes, IEnumerable<CompiledCluster> clusters)
    {
        var names = new Dictionary<string, bool>(HeaderNameComparer.Instance);
        void Add(string? name, bool anySpelling)
        {
            if (string.IsNullOrEmpty(name)) return;
            names[name] = anySpelling || (names.TryGetValue(name, out var existing) && existing);
        }

        var identity = config.Identity.Headers;
        foreach (var name in (ReadOnlySpan<string>)[identity.Consumer, identity.ConsumerGroup, identity.Subject, identity.Groups, identity.Scopes]) Add(name, true);

        // The default assertion header too: an upstream may verify assertions while this gateway sends none.
        Add(config.Identity.Assertion?.Header, true);
        Add(new AssertionOptions().Header, true);
        foreach (var name in AlwaysRemoved) Add(name, true);
        foreach (var name in SetLater) Add(name, false);
        foreach (var route in routes)
        {
            Add(route.Auth?.ForwardCertificate, true);
            foreach (var (name, _) in route.SetHeaders) Add(name, false);
        }

        foreach (var cluster in clusters) Add(cluster.Credentials?.Header, false);

        // Per listener: most configs have one setting everywhere, so the request path needs no lookup.
        var routeListeners = config.Listeners.Where(l => !l.Admin).ToList();
        var uniform = routeListeners.Select(l => l.DropUnderscoreHeaders).Distinct().ToList();
        FrozenDictionary<int, (IPAddress?, bool)[]>? byPort = null;
        if (uniform.Count > 1)
        {
            byPort = routeListeners
                .Select(l => ListenAddress.TryParse(l.Address, out var address, out _) ? (address, l.DropUnderscoreHeaders) : ((ListenAddress, bool)?)null)
                .OfType<(ListenAddress Address, bool Drop)>()
                .GroupBy(l => l.Address.Port)
                .ToFrozenDictionary(g => g.Key, g => g.Select(l => (l.Address.IsLocalhost || l.Address.IsAny ? null : l.Address.Ip, l.Drop)).ToArray());
        }

        return new InboundHeaderScrub(names.ToFrozenDictionary(HeaderNameComparer.Instance), uniform is [true], byPort);
    }

    /// <summary>One pass over the request headers; allocates only when something is removed.</summary>
    public void Apply(HttpContext context)
    {
        var headers = context.Request.Headers;
        var dropUnderscores = DropsUnderscores(context.Connection);
        List<string>? remove = null;
        foreach (var header in headers)
        {
            var name = header.Key;
            var underscore = name.Contains('_');
            if ((underscore && dropUnderscores)
                || (MayBeListed(name) && _names.TryGetValue(name, out var anySpelling) && (anySpelling || underscore)))
            {
                (remove ??= []).Add(name);
            }
        }

        if (remove is null) return;
        foreach (var name in remove) headers.Remove(name);
    }

    private bool DropsUnderscores(ConnectionInfo connection)
    {
        if (_dropByPort is null) return _dropUnderscores;
        if (!_dropByPort.TryGetValue(connection.LocalPort, out var listeners)) return false;
        var local = connection.LocalIpAddress is { IsIPv4MappedToIPv6: true } mapped ? mapped.MapToIPv4() : connection.LocalIpAddress;
        foreach (var (ip, drop) in listeners)
        {
            if (ip is null || ip.Equals(local)) return drop;
        }

        return listeners[0].Drop;
    }

    /// <summary>Header names as CGI sees them: ASCII case-insensitive, with `_` and `-` the same character.</summary>
    internal sealed class HeaderNameComparer : IEqualityComparer<string>
    {
        public static readonly HeaderNameComparer Instance = new();

        public bool Equals(string? x, string? y)
        {
            if (ReferenceEquals(x, y)) return true;
            if (x is null || y is null || x.Length != y.Length) return false;
            for (var i = 0; i < x.Length; i++)
            {
                if (Fold(x[i]) != Fold(y[i])) return false;
            }

            return true;
        }

        // FNV-1a over the folded characters: header names are short, and the set only ever holds the names from
        // the config (clients' names are looked up, never inserted), so colliding names cannot grow its buckets.
        public int GetHashCode(string name)
        {
            var hash = 2166136261u;
            foreach (var c in name) hash = (hash ^ Fold(c)) * 16777619u;
            return (int)hash;
        }

        internal static char Fold(char c) => c == '_' ? '-' : c is >= 'A' and <= 'Z' ? (char)(c | 0x20) : c;
    }
}
