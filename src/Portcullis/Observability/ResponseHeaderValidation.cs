using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Transforms;
using Portcullis.Pipeline;
using Portcullis.Routing;

namespace Portcullis.Observability;

/// <summary>A compiled value rule: every value of a present header must pass.</summary>
internal sealed class CompiledResponseHeaderRule
{
    public required string Header { get; init; }

    public Regex? Regex { get; init; }

    public string[]? OneOf { get; init; }

    public bool Passes(StringValues values)
    {
        foreach (var value in values)
        {
            if (value is null) continue;
            if (Regex is not null && !Matches(Regex, value)) return false;
            if (OneOf is not null)
            {
                var semicolon = value.IndexOf(';');
                var bare = (semicolon < 0 ? value : value[..semicolon]).Trim();
                if (!OneOf.Any(allowed => string.Equals(allowed, bare, StringComparison.OrdinalIgnoreCase))) return false;
            }
        }

        return true;
    }

    private static bool Matches(Regex regex, string value)
    {
        try
        {
            return regex.IsMatch(value);
        }
        catch (RegexMatchTimeoutException)
        {
            return false;
        }
    }
}

/// <summary>A route's or cluster's response-header policy, compiled from <see cref="ResponseHeaderOptions"/>.</summary>
internal sealed class CompiledResponseHeaderPolicy
{
    public string[] Require { get; init; } = [];

    public string[] Forbid { get; init; } = [];

    public CompiledResponseHeaderRule[] Rules { get; init; } = [];

    public ResponseHeaderAction Action { get; init; }

    /// <summary>
    /// Checks the headers about to be sent, adds findings (forbid:NAME, require:NAME, rule:NAME) and, for
    /// strip, removes forbidden and failing headers. Returns true when a finding asks to block.
    /// </summary>
    public bool Apply(IHeaderDictionary headers, ref List<string>? findings)
    {
        var found = false;
        foreach (var name in Forbid)
        {
            if (!headers.ContainsKey(name)) continue;
            found = true;
            Add(ref findings, "forbid:" + name);
            if (Action == ResponseHeaderAction.Strip) headers.Remove(name);
        }

        foreach (var name in Require)
        {
            if (headers.ContainsKey(name)) continue;
            found = true;
            Add(ref findings, "require:" + name);
        }

        foreach (var rule in Rules)
        {
            if (!headers.TryGetValue(rule.Header, out var values) || rule.Passes(values)) continue;
            found = true;
            Add(ref findings, "rule:" + rule.Header);
            if (Action == ResponseHeaderAction.Strip) headers.Remove(rule.Header);
        }

        return found && Action == ResponseHeaderAction.Block;
    }

    private static void Add(ref List<string>? findings, string finding)
    {
        findings ??= [];
        if (!findings.Contains(finding, StringComparer.OrdinalIgnoreCase)) findings.Add(finding);
    }
}

/// <summary>
/// Response-header findings counted per route and finding (e.g. route "orders", "forbid:Server") since
/// start. A DI singleton; <see cref="Counts"/> is what a metrics exporter reads
/// (portcullis_response_header_findings_total{route,finding}).
/// </summary>
internal sealed class ResponseHeaderFindings
{
    private readonly ConcurrentDictionary<(string Route, string Finding), long> _counts = new();

    internal void Record(string route, IReadOnlyList<string> findings)
    {
        foreach (var finding in findings)
        {
            _counts.AddOrUpdate((route, finding), 1, static (_, count) => count + 1);
        }
    }

    /// <summary>How often a finding was seen on a route (0 when never).</summary>
    public long Count(string route, string finding) => _counts.GetValueOrDefault((route, finding));

    /// <summary>Every (route, finding) pair seen so far with its count.</summary>
    public IReadOnlyList<(string Route, string Finding, long Count)> Counts() =>
        [.. _counts.Select(pair => (pair.Key.Route, pair.Key.Finding, pair.Value)).OrderBy(c => c.Route, StringComparer.Ordinal).ThenBy(c => c.Finding, StringComparer.Ordinal)];
}

/// <summary>
/// Applies the route's then the cluster's response-header policy after the upstream answered and before
/// the answer's headers are sent: findings go to the access log (GatewayFeature.ResponseFindings) and
/// the counters; strip removes headers; block replaces the answer with a 502 and drops the upstream body.
/// </summary>
internal sealed class ResponseHeaderTransform(ResponseHeaderFindings? counters) : ResponseTransform
{
    public static readonly ReasonCode Reason = ReasonCodes.ResponseHeaderPolicy;

    public override async ValueTask ApplyAsync(ResponseTransformContext context)
    {
        if (context.ProxyResponse is not { } upstream) return;
        var http = context.HttpContext;
        if (http.Features.Get<GatewayFeature>() is not { } gateway) return;
        var route = gateway.ResolveRoute(http);
        var cluster = gateway.ClusterName is { } name ? gateway.Snapshot.Clusters.GetValueOrDefault(name) : null;
        if (route?.ResponseHeaders is null && cluster?.ResponseHeaders is null) return;
        if (http.Response.HasStarted) return;

        List<string>? findings = null;
        var block = route?.ResponseHeaders?.Apply(http.Response.Headers, ref findings) == true;
        block |= cluster?.ResponseHeaders?.Apply(http.Response.Headers, ref findings) == true;
        if (findings is null) return;

        gateway.ResponseFindings = findings;
        counters?.Record(gateway.RouteName ?? "unknown", findings);
        if (!block) return;

        // Never send the upstream's answer: drop every header copied from it, then answer 502 ourselves.
        foreach (var header in upstream.Headers) http.Response.Headers.Remove(header.Key);
        foreach (var header in upstream.Content.Headers) http.Response.Headers.Remove(header.Key);
        context.SuppressResponseBody = true;
        gateway.Refusal = Reason;
        await ProblemWriter.WriteAsync(http, StatusCodes.Status502BadGateway, "Upstream answer refused",
            "The upstream's response headers broke this route's response-header policy.", Reason);
    }
}
