using Portcullis.Configuration;

namespace Portcullis.Routing;

/// <summary>Compiles header templates (requestHeaders.set, transforms.response) and query transforms once per snapshot.</summary>
internal static class RouteTransformsCompiler
{
    /// <summary>Header → template; a bad template or an unknown map is reported at its key with the character it starts at.</summary>
    public static (string Name, ValueTemplate Value)[] CompileHeaders(CompileContext context, IReadOnlyDictionary<string, string> headers, string path, Dictionary<string, CompiledMap> maps)
    {
        var compiled = new List<(string, ValueTemplate)>(headers.Count);
        foreach (var (header, value) in headers)
        {
            var at = $"{path}.{header}";
            var template = ValueTemplate.Parse(value, out var error, out var column);
            if (template is null)
            {
                context.Error(at, $"bad header template at character {column}: {error}", "e.g. ${consumer}, ${claim:sub}, ${requestId}, ${map:tier(consumer)}");
                continue;
            }

            RoutesCompiler.BindTemplate(context, template, maps, at);
            compiled.Add((header, template));
        }

        return [.. compiled];
    }

    /// <summary>A path regex, compiled NonBacktracking (linear time: no ReDoS); a bad one is reported with its offset.</summary>
    public static System.Text.RegularExpressions.Regex? CompilePathRewrite(CompileContext context, PathRewriteOptions? rewrite, string path)
    {
        if (rewrite is null) return null;
        if (string.IsNullOrEmpty(rewrite.Regex))
        {
            context.Error(path + ".regex", "pathRewrite has no regex", "e.g. regex: ^/v1/orders/(\\d+)$, replacement: /orders/$1");
            return null;
        }

        if (!rewrite.Replacement.StartsWith('/')) context.Error(path + ".replacement", $"replacement '{rewrite.Replacement}' must start with '/'", "e.g. /orders/$1");
        try
        {
            return new System.Text.RegularExpressions.Regex(rewrite.Regex,
                System.Text.RegularExpressions.RegexOptions.NonBacktracking | System.Text.RegularExpressions.RegexOptions.CultureInvariant);
        }
        catch (System.Text.RegularExpressions.RegexParseException ex)
        {
            context.Error(path + ".regex", $"bad regex at character {ex.Offset + 1}: {ex.Error}", "backreferences, lookarounds and atomic groups are not supported (the regex runs without backtracking)");
        }
        catch (NotSupportedException ex)
        {
            context.Error(path + ".regex", $"regex not supported: {ex.Message}", "backreferences, lookarounds and atomic groups are not supported (the regex runs without backtracking)");
        }

        return null;
    }

    /// <summary>YARP's own query transforms (QueryValueParameter / QueryRemoveParameter), run after route matching.</summary>
    public static void AddQueryTransforms(CompileContext context, QueryTransformOptions query, string path, List<Dictionary<string, string>> transforms)
    {
        foreach (var (name, value) in query.Set)
        {
            if (string.IsNullOrWhiteSpace(name))
            {
                context.Error(path + ".set", "query parameter name is empty");
                continue;
            }

            transforms.Add(new() { ["QueryValueParameter"] = name, ["Set"] = value });
        }

        for (var i = 0; i < query.Remove.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(query.Remove[i]))
            {
                context.Error($"{path}.remove[{i}]", "query parameter name is empty");
                continue;
            }

            transforms.Add(new() { ["QueryRemoveParameter"] = query.Remove[i] });
        }
    }
}
