using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Portcullis.Configuration;
using Portcullis.Pipeline;

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
