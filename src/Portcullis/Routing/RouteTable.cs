using System.Collections.Frozen;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Matching;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.AspNetCore.Routing.Template;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Routing;

/// <summary>
/// The route listeners' route table: every endpoint of the gateway (its own paths, the configured routes, the
/// 404 fallback) in priority order — <c>Order</c>, then route-pattern precedence, then table order — indexed
/// by host and by first path segment, so that a request looks at the few endpoints that can take it, not at
/// all of them. The first endpoint whose conditions all hold takes the request (docs/configuration.md,
/// "Precedence").
/// <para>
/// Why not ASP.NET Core's DFA matcher: it builds its whole automaton on the first request and again after every
/// change, ~10 s at 50,000 routes (issue 20); this table is built in one pass over the endpoints, on the
/// reload itself. The conditions are the DFA's own, per endpoint: literal segments compared ignoring case, a
/// trailing slash ignored, templates by ASP.NET Core's <see cref="TemplateMatcher"/> and its constraints,
/// hosts and methods (CORS preflights included) as <see cref="HostMatcherPolicy"/> and
/// <see cref="HttpMethodMatcherPolicy"/> check one candidate, header and query conditions by YARP's own
/// matcher policies. A table with an endpoint or a matcher policy it does not know is not built
/// (<see cref="Build"/> returns the reason) and the DFA matches instead.
/// </para>
/// </summary>
internal sealed class RouteTable
{
    private readonly Candidate[] _candidates; // in priority order
    private readonly SegmentIndex _anyHost;
    private readonly FrozenDictionary<string, SegmentIndex>.AlternateLookup<ReadOnlySpan<char>> _hosts;
    private readonly FrozenDictionary<string, SegmentIndex>.AlternateLookup<ReadOnlySpan<char>> _wildcards; // ".example.com" for *.example.com
    private readonly bool _anyWildcards;

    private RouteTable(Candidate[] candidates, SegmentIndex anyHost, FrozenDictionary<string, SegmentIndex> hosts, FrozenDictionary<string, SegmentIndex> wildcards)
    {
        _candidates = candidates;
        _anyHost = anyHost;
        _hosts = hosts.GetAlternateLookup<ReadOnlySpan<char>>();
        _wildcards = wildcards.GetAlternateLookup<ReadOnlySpan<char>>();
        _anyWildcards = wildcards.Count > 0;
    }

    /// <summary>How many endpoints the table holds.</summary>
    public int Count => _candidates.Length;

    /// <summary>The endpoint that takes the request, or null when none does.</summary>
    public Candidate? Match(HttpContext context)
    {
        var path = context.Request.Path.Value;
        if (string.IsNullOrEmpty(path)) path = "/";
        var segment = FirstSegment(path);
        var best = int.MaxValue;
        best = _anyHost.Find(this, context, path, segment, best);
        if (_hosts.Dictionary.Count > 0 || _anyWildcards)
        {
            var host = HostName(context.Request.Host.Value);
            if (_hosts.TryGetValue(host, out var exact)) best = exact.Find(this, context, path, segment, best);
            if (_anyWildcards)
            {
                // *.example.com takes a.example.com and a.b.example.com: look up every suffix that starts at a dot.
                for (var dot = host.IndexOf('.'); dot > 0; dot = NextDot(host, dot))
                {
                    if (_wildcards.TryGetValue(host[dot..], out var wildcard)) best = wildcard.Find(this, context, path, segment, best);
                }
            }
        }

        return best == int.MaxValue ? null : _candidates[best];

        static int NextDot(ReadOnlySpan<char> host, int dot)
        {
            var next = host[(dot + 1)..].IndexOf('.');
            return next < 0 ? -1 : dot + 1 + next;
        }
    }

    // The Host header's name part, as HostString.Host cuts it (an IPv6 literal keeps its brackets), without a copy.
    private static ReadOnlySpan<char> HostName(string? value)
    {
        var host = value.AsSpan();
        var end = host.StartsWith('[') ? host.IndexOf(']') + 1 : host.IndexOf(':');
        return end <= 0 ? host : host[..end];
    }

    private static ReadOnlySpan<char> FirstSegment(string path)
    {
        var rest = path.AsSpan(1);
        var slash = rest.IndexOf('/');
        return slash < 0 ? rest : rest[..slash];
    }

    /// <summary>
    /// Builds the table of <paramref name="endpoints"/>, or returns why it cannot (an endpoint or a matcher policy
    /// it does not know): then ASP.NET Core's matcher is used. Endpoints seen before (YARP keeps those of unchanged
    /// routes across a reload) are taken prepared from <paramref name="prepared"/>.
    /// </summary>
    public static RouteTable? Build(IReadOnlyList<Endpoint> endpoints, CandidateCache prepared, out string? unsupported)
    {
        var entries = new Entry[endpoints.Count];
        for (var i = 0; i < endpoints.Count; i++)
        {
            var candidate = prepared.Get(endpoints[i], out unsupported);
            if (candidate is null) return null;
            entries[i] = new Entry(candidate.Endpoint.Order, candidate.Precedence, i, candidate);
        }

        Array.Sort(entries);
        var candidates = new Candidate[entries.Length];
        for (var i = 0; i < entries.Length; i++) candidates[i] = entries[i].Candidate;

        var anyHost = new SegmentIndexBuilder();
        var hosts = new Dictionary<string, SegmentIndexBuilder>(StringComparer.OrdinalIgnoreCase);
        var wildcards = new Dictionary<string, SegmentIndexBuilder>(StringComparer.OrdinalIgnoreCase);
        for (var priority = 0; priority < candidates.Length; priority++)
        {
            var candidate = candidates[priority];
            if (candidate.IndexHosts is not { } hostKeys)
            {
                anyHost.Add(candidate, priority);
                continue;
            }

            foreach (var (name, wildcard) in hostKeys)
            {
                var into = wildcard ? wildcards : hosts;
                if (!into.TryGetValue(name, out var index)) into[name] = index = new SegmentIndexBuilder();
                index.Add(candidate, priority);
            }
        }

        unsupported = null;
        return new RouteTable(candidates, anyHost.Build(),
            hosts.ToFrozenDictionary(h => h.Key, h => h.Value.Build(), StringComparer.OrdinalIgnoreCase),
            wildcards.ToFrozenDictionary(h => h.Key, h => h.Value.Build(), StringComparer.OrdinalIgnoreCase));
    }

    // Priority order: Order, then route-pattern precedence (lower is more specific), then the endpoints' order.
    private readonly record struct Entry(int Order, decimal Precedence, int Sequence, Candidate Candidate) : IComparable<Entry>
    {
        public int CompareTo(Entry other) =>
            Order != other.Order ? Order.CompareTo(other.Order)
            : Precedence != other.Precedence ? Precedence.CompareTo(other.Precedence)
            : Sequence.CompareTo(other.Sequence);
    }

    /// <summary>
    /// Endpoints prepared for matching, kept as long as the endpoint lives: a reload that changes one route of
    /// 50,000 prepares one. Also decides whether the table can hold an endpoint at all.
    /// </summary>
    internal sealed class CandidateCache
    {
        private readonly ConditionalWeakTable<Endpoint, Candidate> _prepared = new();
        private readonly IEndpointSelectorPolicy[] _selectors;
        private readonly MatcherPolicy[] _others;
        private readonly ParameterPolicyFactory _parameterPolicies;

        public CandidateCache(IEnumerable<MatcherPolicy> policies, ParameterPolicyFactory parameterPolicies)
        {
            _parameterPolicies = parameterPolicies;
            var selectors = new List<IEndpointSelectorPolicy>();
            var others = new List<MatcherPolicy>();
            foreach (var policy in policies)
            {
                switch (policy)
                {
                    case HttpMethodMatcherPolicy or HostMatcherPolicy or ExactPathMatcherPolicy:
                        continue; // checked by the candidate itself
                    case IEndpointSelectorPolicy selector when IsYarpRouteCondition(policy):
                        selectors.Add(selector); // header and query conditions: YARP's own code, on the one candidate
                        continue;
                    default:
                        others.Add(policy);
                        continue;
                }
            }

            _selectors = [.. selectors];
            _others = [.. others];
        }

        /// <summary>The endpoint prepared, or null with the reason when the table cannot hold it.</summary>
        public Candidate? Get(Endpoint endpoint, out string? unsupported)
        {
            unsupported = null;
            if (_prepared.TryGetValue(endpoint, out var known)) return known;
            if (endpoint is not RouteEndpoint route || endpoint.Metadata.GetMetadata<IDynamicEndpointMetadata>() is { IsDynamic: true })
            {
                unsupported = $"endpoint '{endpoint.DisplayName}' ({endpoint.GetType().Name})";
                return null;
            }

            // A matcher policy the table does not apply (content negotiation, Accepts, ...) that would act on it.
            Endpoint[] one = [endpoint];
            foreach (var policy in _others)
            {
                if ((policy is INodeBuilderPolicy node && node.AppliesToEndpoints(one)) ||
                    (policy is IEndpointSelectorPolicy selector && selector.AppliesToEndpoints(one)))
                {
                    unsupported = $"matcher policy {policy.GetType().FullName} (endpoint '{endpoint.DisplayName}')";
                    return null;
                }
            }

            var candidate = Candidate.Create(route, _selectors, _parameterPolicies);
            _prepared.AddOrUpdate(endpoint, candidate);
            return candidate;
        }
    }

    // YARP's header and query matcher policies are internal; they are the ones in its routing namespace.
    private static bool IsYarpRouteCondition(MatcherPolicy policy) =>
        policy.GetType().FullName is "Yarp.ReverseProxy.Routing.HeaderMatcherPolicy" or "Yarp.ReverseProxy.Routing.QueryParameterMatcherPolicy";

    /// <summary>Endpoints by first literal path segment; those whose pattern does not start with a literal, apart.</summary>
    private sealed class SegmentIndex(FrozenDictionary<string, int[]> bySegment, int[] anySegment)
    {
        private readonly FrozenDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _bySegment = bySegment.GetAlternateLookup<ReadOnlySpan<char>>();

        /// <summary>The priority of the first endpoint here that takes the request, if before <paramref name="best"/>; else <paramref name="best"/>.</summary>
        public int Find(RouteTable table, HttpContext context, string path, ReadOnlySpan<char> segment, int best)
        {
            if (segment.Length > 0 && _bySegment.TryGetValue(segment, out var literal)) best = First(table, literal, context, path, best);
            return First(table, anySegment, context, path, best);
        }

        private static int First(RouteTable table, int[] priorities, HttpContext context, string path, int best)
        {
            foreach (var priority in priorities)
            {
                if (priority >= best) break;
                if (table._candidates[priority].Matches(context, path)) return priority;
            }

            return best;
        }
    }

    private sealed class SegmentIndexBuilder
    {
        private readonly Dictionary<string, List<int>> _bySegment = new(StringComparer.OrdinalIgnoreCase);
        private readonly List<int> _anySegment = [];

        public void Add(Candidate candidate, int priority)
        {
            if (candidate.FirstLiteral is not { } literal) _anySegment.Add(priority);
            else if (_bySegment.TryGetValue(literal, out var list)) list.Add(priority);
            else _bySegment[literal] = [priority];
        }

        public SegmentIndex Build() => new(_bySegment.ToFrozenDictionary(s => s.Key, s => s.Value.ToArray(), StringComparer.OrdinalIgnoreCase), [.. _anySegment]);
    }

    /// <summary>One endpoint and its conditions, prepared for matching.</summary>
    internal sealed class Candidate
    {
        private string[] _literals = [];
        private bool _catchAll;
        private TemplateMatcher? _template;
        private (string Name, IRouteConstraint Constraint)[] _constraints = [];
        private ExactPathMetadata? _exact;
        private string[]? _methods;
        private bool _acceptCorsPreflight;
        private (string Host, bool Wildcard, string Port)[]? _hosts;
        private IEndpointSelectorPolicy[] _selectors = [];

        private Candidate(RouteEndpoint endpoint) => Endpoint = endpoint;

        public RouteEndpoint Endpoint { get; }

        /// <summary>Run at once, as routing's short-circuit does (the gateway's own paths).</summary>
        public bool ShortCircuit { get; private set; }

        internal decimal Precedence { get; private init; }

        internal string? FirstLiteral { get; private set; }

        /// <summary>The host names to index the endpoint under (wildcards by their ".suffix"), or null for any host.</summary>
        internal (string Name, bool Wildcard)[]? IndexHosts { get; private set; }

        public static Candidate Create(RouteEndpoint endpoint, IReadOnlyList<IEndpointSelectorPolicy> selectors, ParameterPolicyFactory parameterPolicies)
        {
            var pattern = endpoint.RoutePattern;
            var candidate = new Candidate(endpoint) { Precedence = pattern.InboundPrecedence };
            candidate.PreparePath(pattern, parameterPolicies);
            candidate._exact = endpoint.Metadata.GetMetadata<ExactPathMetadata>();
            candidate.ShortCircuit = candidate._exact is not null;
            if (endpoint.Metadata.GetMetadata<IHttpMethodMetadata>() is { HttpMethods.Count: > 0 } methods)
            {
                candidate._methods = [.. methods.HttpMethods];
                candidate._acceptCorsPreflight = methods.AcceptCorsPreflight;
            }

            candidate.PrepareHosts(endpoint.Metadata.GetMetadata<IHostMetadata>()?.Hosts);
            if (endpoint.Metadata.GetMetadata<RouteModel>()?.Config.Match is { } match && (match.Headers is { Count: > 0 } || match.QueryParameters is { Count: > 0 }))
            {
                candidate._selectors = [.. selectors];
            }

            return candidate;
        }

        private void PreparePath(RoutePattern pattern, ParameterPolicyFactory parameterPolicies)
        {
            var segments = pattern.PathSegments;
            var literals = new List<string>(segments.Count);
            for (var i = 0; i < segments.Count; i++)
            {
                var parts = segments[i].Parts;
                if (parts is [RoutePatternLiteralPart literal])
                {
                    literals.Add(literal.Content);
                    continue;
                }

                if (i == segments.Count - 1 && parts is [RoutePatternParameterPart { IsCatchAll: true } rest] && rest.ParameterPolicies.Count == 0 &&
                    rest.Default is null && !pattern.Defaults.ContainsKey(rest.Name) && !pattern.RequiredValues.ContainsKey(rest.Name))
                {
                    _catchAll = true;
                    continue;
                }

                // Parameters, complex segments, defaults: ASP.NET Core's template matcher and the route's constraints.
                _template = new TemplateMatcher(new RouteTemplate(pattern), new RouteValueDictionary(pattern.Defaults));
                // Policies that are not constraints (parameter transformers) play no part in matching, as in the DFA.
                _constraints = [.. pattern.ParameterPolicies.SelectMany(p => p.Value
                    .Select(reference => parameterPolicies.Create(pattern.GetParameter(p.Key), reference))
                    .OfType<IRouteConstraint>()
                    .Select(constraint => (p.Key, constraint)))];
                break;
            }

            if (_template is null) _literals = [.. literals];
            FirstLiteral = literals.Count > 0 && segments.Count > 0 && segments[0].Parts is [RoutePatternLiteralPart first] ? first.Content : null;
        }

        private void PrepareHosts(IReadOnlyList<string>? hosts)
        {
            if (hosts is not { Count: > 0 }) return;
            var parsed = new List<(string, bool, string)>(hosts.Count);
            var index = new List<(string, bool)>(hosts.Count);
            var anyHost = false;
            foreach (var entry in hosts)
            {
                var pivot = entry.IndexOf(':', StringComparison.Ordinal);
                var (host, port) = pivot >= 0 ? (entry[..pivot], entry[(pivot + 1)..]) : (entry, "");
                var wildcard = host.StartsWith("*.", StringComparison.Ordinal);
                if (host.Length == 0 || host == "*") anyHost = true;
                else index.Add(wildcard ? (host[1..], true) : (host, false));
                parsed.Add((wildcard ? host[1..] : host.Length == 0 || host == "*" ? "" : host, wildcard, port));
            }

            _hosts = [.. parsed];
            IndexHosts = anyHost ? null : [.. index];
        }

        /// <summary>Whether every condition of the endpoint holds for the request.</summary>
        public bool Matches(HttpContext context, string path)
        {
            if (_template is null ? !PathMatches(path) : !TemplateMatches(context, path)) return false;
            if (_exact is not null && !_exact.Matches(path)) return false;
            if (_methods is not null && !MethodMatches(context.Request)) return false;
            if (_hosts is not null && !HostMatches(context.Request)) return false;
            return _selectors.Length == 0 || SelectorsMatch(context);
        }

        // Segments as ASP.NET Core's tokenizer cuts them: '/'-separated after the leading '/', a trailing '/' ignored.
        private bool PathMatches(string path)
        {
            var pos = 0; // the '/' before the next segment
            foreach (var literal in _literals)
            {
                if (pos >= path.Length) return false;
                var start = pos + 1;
                var slash = path.AsSpan(start).IndexOf('/');
                var end = slash < 0 ? path.Length : start + slash;
                if (end == path.Length && start == end) return false; // only a trailing '/' left: no segment
                if (!path.AsSpan(start, end - start).Equals(literal, StringComparison.OrdinalIgnoreCase)) return false;
                pos = end;
            }

            return _catchAll || pos >= path.Length - 1;
        }

        private bool TemplateMatches(HttpContext context, string path)
        {
            var values = new RouteValueDictionary();
            if (!_template!.TryMatch(path, values)) return false;
            foreach (var (name, constraint) in _constraints)
            {
                if (!constraint.Match(context, null, name, values, RouteDirection.IncomingRequest)) return false;
            }

            return true;
        }

        // As HttpMethodMatcherPolicy checks one candidate: a CORS preflight is matched by the method it asks for.
        private bool MethodMatches(HttpRequest request)
        {
            var method = request.Method;
            if (_acceptCorsPreflight && HttpMethods.IsOptions(method) && request.Headers.ContainsKey(HeaderNames.Origin) &&
                request.Headers.TryGetValue(HeaderNames.AccessControlRequestMethod, out var requested) && !StringValues.IsNullOrEmpty(requested))
            {
                method = requested.ToString();
            }

            foreach (var candidate in _methods!)
            {
                if (HttpMethods.Equals(method, candidate)) return true;
            }

            return false;
        }

        // As HostMatcherPolicy checks one candidate: no port in Host means the scheme's default.
        private bool HostMatches(HttpRequest request)
        {
            var value = request.Host.Value.AsSpan();
            var host = HostName(request.Host.Value);
            int? port = value.Length > host.Length + 1 && value[host.Length] == ':' && int.TryParse(value[(host.Length + 1)..], out var given) ? given
                : string.Equals(request.Scheme, "https", StringComparison.OrdinalIgnoreCase) ? 443
                : string.Equals(request.Scheme, "http", StringComparison.OrdinalIgnoreCase) ? 80 : null;
            foreach (var (name, wildcard, expectedPort) in _hosts!)
            {
                var hostMatches = name.Length == 0
                    || (wildcard ? host.EndsWith(name, StringComparison.OrdinalIgnoreCase) && host.Length > 0 && host[0] != '.' && !host.Contains("..", StringComparison.Ordinal)
                        : host.Equals(name, StringComparison.OrdinalIgnoreCase));
                if (!hostMatches) continue;
                if (expectedPort.Length > 0 && expectedPort != "*" && (!int.TryParse(expectedPort, out var parsed) || parsed != port)) continue;
                return true;
            }

            return false;
        }

        private bool SelectorsMatch(HttpContext context)
        {
            var set = new CandidateSet([Endpoint], [null!], [0]);
            foreach (var selector in _selectors)
            {
                var applied = selector.ApplyAsync(context, set);
                if (!applied.IsCompletedSuccessfully) applied.GetAwaiter().GetResult(); // YARP's are synchronous
                if (!set.IsValidCandidate(0)) return false;
            }

            return true;
        }
    }
}
