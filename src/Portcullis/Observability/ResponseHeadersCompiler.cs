using System.Text.RegularExpressions;
using Portcullis.Configuration;

namespace Portcullis.Observability;

/// <summary>Validation and compilation of routes' and clusters' responseHeaders policies.</summary>
internal static class ResponseHeadersCompiler
{
    private static readonly TimeSpan ResponseHeaderRegexTimeout = TimeSpan.FromMilliseconds(100);

    internal static CompiledResponseHeaderPolicy? Compile(CompileContext context, ResponseHeaderPolicyOptions? options, string path)
    {
        if (options is null) return null;
        var ok = true;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            ok = false;
        }

        void CheckNames(IReadOnlyList<string> names, string listPath)
        {
            for (var i = 0; i < names.Count; i++)
            {
                if (!ValidName(names[i])) Fail($"{listPath}[{i}]", string.IsNullOrWhiteSpace(names[i]) ? "header name is empty" : $"'{names[i]}' is not a valid header name", "e.g. Cache-Control");
            }
        }

        CheckNames(options.Require, path + ".require");
        CheckNames(options.Forbid, path + ".forbid");
        for (var i = 0; i < options.Require.Count; i++)
        {
            var name = options.Require[i];
            if (string.IsNullOrWhiteSpace(name)) continue;
            var forbidden = options.Forbid.ToList().FindIndex(f => string.Equals(f, name, StringComparison.OrdinalIgnoreCase));
            if (forbidden >= 0) Fail($"{path}.forbid[{forbidden}]", $"header '{name}' is both required and forbidden", "keep it in one of require or forbid");
        }

        var rules = new List<CompiledResponseHeaderRule>();
        for (var i = 0; i < options.RuleList.Count; i++)
        {
            if (CompileRule(context, options.RuleList[i], $"{path}.rules[{i}]") is { } compiled) rules.Add(compiled);
            else ok = false;
        }

        if (!ok) return null;
        return new CompiledResponseHeaderPolicy
        {
            Require = [.. options.Require],
            Forbid = [.. options.Forbid],
            Rules = [.. rules],
            Action = options.Action,
        };
    }

    private static bool ValidName(string name) => !string.IsNullOrWhiteSpace(name) && name.All(c => c > ' ' && c < 127 && c != ':');

    /// <summary>One header rule: a valid name and exactly one of a valid regex or a non-empty oneOf; null (reported) otherwise.</summary>
    private static CompiledResponseHeaderRule? CompileRule(CompileContext context, ResponseHeaderRuleOptions rule, string rulePath)
    {
        if (!ValidName(rule.Header))
        {
            context.Error(context.Loaded.Locations.Has(rulePath + ".header") ? rulePath + ".header" : rulePath,
                string.IsNullOrWhiteSpace(rule.Header) ? "rule header name is empty" : $"'{rule.Header}' is not a valid header name", "e.g. header: Cache-Control");
            return null;
        }

        if ((rule.Regex is null) == (rule.OneOf is null))
        {
            context.Error(rulePath, $"rule for '{rule.Header}' needs exactly one of regex or oneOf", "e.g. { header: Cache-Control, regex: no-store }");
            return null;
        }

        if (rule.OneOf is { Count: 0 })
        {
            context.Error(rulePath + ".oneOf", "oneOf lists no values", "e.g. oneOf: [application/json]");
            return null;
        }

        Regex? regex = null;
        if (rule.Regex is { } pattern)
        {
            try
            {
                regex = new Regex(pattern, RegexOptions.CultureInvariant, ResponseHeaderRegexTimeout);
            }
            catch (ArgumentException e)
            {
                context.Error(rulePath + ".regex", $"regex '{pattern}' is not valid: {e.Message}", "a .NET regular expression, e.g. no-store");
                return null;
            }
        }

        return new CompiledResponseHeaderRule { Header = rule.Header, Regex = regex, OneOf = rule.OneOf?.ToArray() };
    }
}
