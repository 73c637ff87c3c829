using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Matching;
using Microsoft.AspNetCore.Routing.Template;

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
internal sealed partial class RouteTable
{
    private readonly Candidate[] _candidates; // in priority order
    private readonly SegmentIndex _anyHost;
    // Plain dictionaries, not frozen ones: freezing 50,000 first segments was a third of rebuilding the table on a
    // reload, and a lookup differs by nanoseconds.
    private readonly Dictionary<string, SegmentIndex>.AlternateLookup<ReadOnlySpan<char>> _hosts;
    private readonly Dictionary<string, SegmentIndex>.AlternateLookup<ReadOnlySpan<char>> _wildcards; // ".example.com" for *.example.com
    private readonly bool _anyWildcards;

    private RouteTable(Candidate[] candidates, SegmentIndex anyHost, Dictionary<string, SegmentIndex> hosts, Dictionary<string, SegmentIndex> wildcards)
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
            hosts.ToDictionary(h => h.Key, h => h.Value.Build(), StringComparer.OrdinalIgnoreCase),
            wildcards.ToDictionary(h => h.Key, h => h.Value.Build(), StringComparer.OrdinalIgnoreCase));
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
    private sealed class SegmentIndex(Dictionary<string, int[]> bySegment, int[] anySegment)
    {
        private readonly Dictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _bySegment = bySegment.GetAlternateLookup<ReadOnlySpan<char>>();

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

        public SegmentIndex Build()
        {
            var bySegment = new Dictionary<string, int[]>(_bySegment.Count, StringComparer.OrdinalIgnoreCase);
            foreach (var (segment, priorities) in _bySegment) bySegment[segment] = [.. priorities];
            return new(bySegment, [.. _anySegment]);
        }
    }
}
