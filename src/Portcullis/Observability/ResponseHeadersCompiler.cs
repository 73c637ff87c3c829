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

        static bool ValidName(string name) => !string.IsNullOrWhiteSpace(name) && name.All(c => c > ' ' && c < 127 && c != ':');

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
            var rule = options.RuleList[i];
            var rulePath = $"{path}.rules[{i}]";
            if (!ValidName(rule.Header))
            {
                Fail(context.Loaded.Locations.Has(rulePath + ".header") ? rulePath + ".header" : rulePath,
                    string.IsNullOrWhiteSpace(rule.Header) ? "rule header name is empty" : $"'{rule.Header}' is not a valid header name", "e.g. header: Cache-Control");
                continue;
            }

            if ((rule.Regex is null) == (rule.OneOf is null))
            {
                Fail(rulePath, $"rule for '{rule.Header}' needs exactly one of regex or oneOf", "e.g. { header: Cache-Control, regex: no-store }");
                continue;
            }

            if (rule.OneOf is { Count: 0 })
            {
                Fail(rulePath + ".oneOf", "oneOf lists no values", "e.g. oneOf: [application/json]");
                continue;
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
                    Fail(rulePath + ".regex", $"regex '{pattern}' is not valid: {e.Message}", "a .NET regular expression, e.g. no-store");
                    continue;
                }
            }

            rules.Add(new CompiledResponseHeaderRule { Header = rule.Header, Regex = regex, OneOf = rule.OneOf?.ToArray() });
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
}
