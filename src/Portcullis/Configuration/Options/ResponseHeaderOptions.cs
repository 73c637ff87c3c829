using System.ComponentModel;

namespace Portcullis.Configuration;

internal enum ResponseHeaderAction
{
    /// <summary>Only record findings (access log, counters); the answer passes unchanged.</summary>
    Log,

    /// <summary>Remove forbidden headers and headers failing a rule; a missing required header is only recorded.</summary>
    Strip,

    /// <summary>Answer 502 problem+json (reason response.header-policy) instead of the upstream's answer; its body is never sent.</summary>
    Block,
}

/// <summary>A route's `responseHeaders` (its own type so the generated schema spells out the keys under routes and clusters).</summary>
internal sealed record ResponseHeaderOptions : ResponseHeaderPolicyOptions
{
    [Description("Value rules: { header, regex } or { header, oneOf }. A present header whose value fails is a finding rule:NAME; an absent header passes (use require).")]
    public IReadOnlyList<ResponseHeaderRuleOptions> Rules { get; init; } = [];

    internal override IReadOnlyList<ResponseHeaderRuleOptions> RuleList => Rules;
}

/// <summary>A cluster's `responseHeaders`, the same keys as a route's.</summary>
internal sealed record ClusterResponseHeaderOptions : ResponseHeaderPolicyOptions
{
    [Description("Value rules: { header, regex } or { header, oneOf }. A present header whose value fails is a finding rule:NAME; an absent header passes (use require).")]
    public IReadOnlyList<ClusterResponseHeaderRuleOptions> Rules { get; init; } = [];

    internal override IReadOnlyList<ResponseHeaderRuleOptions> RuleList => Rules;
}

/// <summary>A cluster's value rule (its own type so the generated schema spells out its keys).</summary>
internal sealed record ClusterResponseHeaderRuleOptions : ResponseHeaderRuleOptions;

/// <summary>Checks on the upstream's response headers, for a route or a cluster.</summary>
internal record ResponseHeaderPolicyOptions
{
    [Description("Headers the upstream's answer must carry, e.g. [Cache-Control]. A missing one is a finding require:NAME.")]
    public IReadOnlyList<string> Require { get; init; } = [];

    [Description("Headers the upstream's answer must not carry, e.g. [Server, X-Powered-By]. A present one is a finding forbid:NAME.")]
    public IReadOnlyList<string> Forbid { get; init; } = [];

    internal virtual IReadOnlyList<ResponseHeaderRuleOptions> RuleList => [];

    [Description("What a finding does: log (default, only recorded), strip (remove forbidden and failing headers) or block (502 problem+json, upstream body never sent).")]
    public ResponseHeaderAction Action { get; init; } = ResponseHeaderAction.Log;
}

internal record ResponseHeaderRuleOptions
{
    [Description("Response header name the rule checks, e.g. Cache-Control.")]
    public string Header { get; init; } = "";

    [Description("Regular expression every value of the header must contain a match of (unanchored; use ^...$ for the whole value), e.g. no-store.")]
    public string? Regex { get; init; }

    [Description("Allowed values, compared case-insensitively and without parameters after ';' (application/json matches \"application/json; charset=utf-8\").")]
    public IReadOnlyList<string>? OneOf { get; init; }
}
