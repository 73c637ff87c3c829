using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Matching;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.AspNetCore.Routing.Template;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Routing;

// One endpoint of the route table and its matching conditions.
internal sealed partial class RouteTable
{
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
            // One pass over the metadata, the last of each kind winning as with GetMetadata<T>. GetMetadata would
            // add an entry per type to every endpoint's own cache: ~12 MB that outlive the build at 50,000 routes.
            ExactPathMetadata? exact = null;
            IHttpMethodMetadata? httpMethods = null;
            IHostMetadata? hosts = null;
            RouteModel? model = null;
            foreach (var item in endpoint.Metadata)
            {
                // Not a switch: one object may carry several kinds.
                if (item is ExactPathMetadata e) exact = e;
                if (item is IHttpMethodMetadata m) httpMethods = m;
                if (item is IHostMetadata h) hosts = h;
                if (item is RouteModel r) model = r;
            }

            candidate._exact = exact;
            candidate.ShortCircuit = exact is not null;
            if (httpMethods is { HttpMethods.Count: > 0 } methods)
            {
                candidate._methods = [.. methods.HttpMethods];
                candidate._acceptCorsPreflight = methods.AcceptCorsPreflight;
            }

            candidate.PrepareHosts(hosts?.Hosts);
            if (model?.Config.Match is { } match && (match.Headers is { Count: > 0 } || match.QueryParameters is { Count: > 0 }))
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
