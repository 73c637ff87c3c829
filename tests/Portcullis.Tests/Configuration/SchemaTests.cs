using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Portcullis.Configuration;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// Keeps docs/portcullis.schema.json and docs/configuration.md in step with the config model.
/// To regenerate the schema after changing the model, run with PORTCULLIS_UPDATE_SCHEMA=1 set:
/// PORTCULLIS_UPDATE_SCHEMA=1 dotnet test tests/Portcullis.Tests --filter FullyQualifiedName~SchemaTests
/// </summary>
public sealed class SchemaTests
{
    private const string UpdateVariable = "PORTCULLIS_UPDATE_SCHEMA";
    private const string RegenerateHint =
        $"Regenerate it by running the test with the environment variable {UpdateVariable}=1 set, e.g. "
        + $"`{UpdateVariable}=1 dotnet test tests/Portcullis.Tests --filter FullyQualifiedName~SchemaTests`, then review and commit the diff.";

    private const string KeyTableHeader = "| Key | Type | Default | Description |";

    // Variables the examples in configuration.md use without a fallback.
    private static readonly Dictionary<string, string> DocEnvironment = new(StringComparer.Ordinal)
    {
        ["ORDERS_URL"] = "http://10.0.0.5:8080",
    };

    private static readonly string RepoRoot = FindRepoRoot();
    private static readonly string SchemaPath = Path.Combine(RepoRoot, "docs", "portcullis.schema.json");
    private static readonly string DocsPath = Path.Combine(RepoRoot, "docs", "configuration.md");

    [Fact]
    public void CheckedInSchemaMatchesTheModel()
    {
        var generated = ConfigSchema.Generate();
        if (Environment.GetEnvironmentVariable(UpdateVariable) is "1" or "true")
        {
            File.WriteAllText(SchemaPath, generated);
            return;
        }

        Assert.True(File.Exists(SchemaPath), $"{SchemaPath} is missing. {RegenerateHint}");
        // Tolerate a CRLF checkout (git autocrlf); the generator itself writes '\n'.
        var checkedIn = File.ReadAllText(SchemaPath).Replace("\r\n", "\n", StringComparison.Ordinal);
        if (checkedIn != generated)
        {
            Assert.Fail($"docs/portcullis.schema.json is out of date with the config model ({FirstDifference(checkedIn, generated)}). {RegenerateHint}");
        }
    }

    [Fact]
    public void GenerateIsDeterministicAndWellFormed()
    {
        var first = ConfigSchema.Generate();
        var second = ConfigSchema.Generate();

        Assert.Equal(first, second);
        Assert.DoesNotContain("\r", first, StringComparison.Ordinal);
        Assert.EndsWith("}\n", first, StringComparison.Ordinal);
        Assert.False(first.EndsWith("\n\n", StringComparison.Ordinal));

        var root = JsonNode.Parse(first)!.AsObject();
        Assert.Equal(ConfigSchema.Dialect, (string?)root["$schema"]);
        Assert.Equal("Portcullis configuration", (string?)root["title"]);
        Assert.Equal("object", (string?)root["type"]);
        Assert.False((bool)root["additionalProperties"]!);
    }

    [Fact]
    public void SchemaHasExactlyTheKeysTheBinderAccepts()
    {
        var schemaKeys = new SortedSet<string>(StringComparer.Ordinal);
        CollectSchemaKeys(JsonNode.Parse(ConfigSchema.Generate())!, "", schemaKeys);
        var modelKeys = new SortedSet<string>(ModelKeys().Select(k => k.Path), StringComparer.Ordinal);

        Assert.Equal(modelKeys, schemaKeys);
    }

    [Fact]
    public void EveryObjectInTheSchemaRejectsUnknownKeys()
    {
        var objects = new List<string>();
        Walk(JsonNode.Parse(ConfigSchema.Generate())!, "#");
        Assert.NotEmpty(objects);

        void Walk(JsonNode node, string pointer)
        {
            if (node is JsonObject obj)
            {
                if (obj["properties"] is JsonObject)
                {
                    objects.Add(pointer);
                    Assert.True(obj["additionalProperties"] is JsonValue v && v.GetValueKind() == JsonValueKind.False, $"{pointer} allows unknown keys");
                }

                foreach (var (key, child) in obj)
                {
                    if (child is not null) Walk(child, pointer + "/" + key);
                }
            }
            else if (node is JsonArray array)
            {
                for (var i = 0; i < array.Count; i++)
                {
                    if (array[i] is { } child) Walk(child, pointer + "/" + i.ToString(CultureInfo.InvariantCulture));
                }
            }
        }
    }

    [Fact]
    public void ReferencesToRecursiveTypesAreNotClosedWhereTheyAreUsed()
    {
        // Claim rules nest (`any` / `all`), so the exporter writes a $ref. In draft 2020-12 an
        // additionalProperties: false beside a $ref sees no properties beside it and rejects every key.
        var references = new List<string>();
        Walk(JsonNode.Parse(ConfigSchema.Generate())!, "#");
        Assert.Contains(references, r => r.Contains("/claims/", StringComparison.Ordinal) && r.EndsWith("/items", StringComparison.Ordinal));

        void Walk(JsonNode node, string pointer)
        {
            if (node is JsonObject obj)
            {
                if (obj["$ref"] is JsonValue target)
                {
                    references.Add(pointer);
                    Assert.False(obj.ContainsKey("additionalProperties"), $"{pointer} closes its $ref {target}");
                }

                foreach (var (key, child) in obj)
                {
                    if (child is not null) Walk(child, pointer + "/" + key);
                }
            }
            else if (node is JsonArray array)
            {
                for (var i = 0; i < array.Count; i++)
                {
                    if (array[i] is { } child) Walk(child, pointer + "/" + i.ToString(CultureInfo.InvariantCulture));
                }
            }
        }
    }

    [Theory]
    [InlineData("250ms")]
    [InlineData("5s")]
    [InlineData("1m30s")]
    [InlineData("2h")]
    [InlineData("1d")]
    [InlineData("1.5s")]
    [InlineData(".5s")]
    [InlineData("0s")]
    [InlineData("1h30m15s500ms")]
    [InlineData(" 5s ")]
    [InlineData("5")]
    [InlineData("0")]
    [InlineData("5S")]
    [InlineData("5sec")]
    [InlineData("1h 30m")]
    [InlineData("-5s")]
    [InlineData("s")]
    [InlineData(".s")]
    [InlineData("1.2.3s")]
    [InlineData("")]
    public void DurationPatternAgreesWithTheParser(string text)
    {
        var pattern = new Regex(ConfigSchema.DurationPattern, RegexOptions.ECMAScript);
        Assert.Equal(DurationFormat.TryParse(text, out _, out _), pattern.IsMatch(text));
    }

    [Theory]
    [InlineData("512")]
    [InlineData("0")]
    [InlineData("32KiB")]
    [InlineData("10MiB")]
    [InlineData("1GiB")]
    [InlineData("1GB")]
    [InlineData("64kb")]
    [InlineData("8K")]
    [InlineData("2m")]
    [InlineData("100B")]
    [InlineData("10 KiB")]
    [InlineData("1.5MiB")]
    [InlineData("10Ki")]
    [InlineData("-1")]
    [InlineData("KiB")]
    [InlineData("10 k b")]
    [InlineData("10TB")]
    [InlineData("")]
    public void SizePatternAgreesWithTheParser(string text)
    {
        var pattern = new Regex(ConfigSchema.SizePattern, RegexOptions.ECMAScript);
        Assert.Equal(ByteSize.TryParse(text, out _, out _), pattern.IsMatch(text));
    }

    [Theory]
    [InlineData("${TIMEOUT}")]
    [InlineData("${TIMEOUT:-5s}")]
    [InlineData("${MAX_BODY:-10MiB}")]
    public void PatternsAllowEnvironmentReferences(string text)
    {
        Assert.Matches(new Regex(ConfigSchema.DurationPattern, RegexOptions.ECMAScript), text);
        Assert.Matches(new Regex(ConfigSchema.SizePattern, RegexOptions.ECMAScript), text);
    }

    [Fact]
    public void DocsDescribeEveryKeyOfTheModel()
    {
        var docs = File.ReadAllText(DocsPath);
        var missing = ModelKeys().Select(k => k.Path).Where(path => !docs.Contains($"| `{path}` |", StringComparison.Ordinal)).ToList();

        Assert.True(missing.Count == 0,
            "docs/configuration.md has no reference-table row (| `KEY` | type | default | description |) for:\n  "
            + string.Join("\n  ", missing));
    }

    [Fact]
    public void DocsDescribeNoKeyTheModelDoesNotHave()
    {
        var modelKeys = ModelKeys().Select(k => k.Path).ToHashSet(StringComparer.Ordinal);
        var documented = DocRows().Select(r => r.Path).ToList();
        var unknown = documented.Where(path => !modelKeys.Contains(path)).ToList();

        Assert.NotEmpty(documented);
        Assert.True(unknown.Count == 0, "docs/configuration.md documents keys the model does not have:\n  " + string.Join("\n  ", unknown));
    }

    [Fact]
    public void DocsStateTheModelDefaults()
    {
        var rows = DocRows().ToLookup(r => r.Path, r => r.Default, StringComparer.Ordinal);
        var wrong = new List<string>();
        foreach (var (path, property) in ModelKeys())
        {
            var declaring = property.DeclaringType!;
            var value = property.GetValue(Activator.CreateInstance(declaring));
            if (value is not (string { Length: > 0 } or bool or int or long or TimeSpan or ByteSize or Enum)) continue;
            foreach (var cell in rows[path]) // a missing row is reported by DocsDescribeEveryKeyOfTheModel
            {
                var documented = Regex.Match(cell, "`([^`]*)`") is { Success: true } m ? m.Groups[1].Value : null;
                if (documented is null || !SameValue(value, documented))
                {
                    wrong.Add($"{path}: model default is {Format(value)}, docs say {cell.Trim()}");
                }
            }
        }

        Assert.True(wrong.Count == 0, "docs/configuration.md states wrong defaults:\n  " + string.Join("\n  ", wrong));
    }

    [Fact]
    public void DocExamplesAreValid()
    {
        var problems = new List<string>();
        var blocks = DocYamlBlocks().ToList();
        foreach (var (line, yaml, complete, skipped) in blocks)
        {
            // A block of comments only (the editor modeline) is not a document.
            if (yaml.Split('\n').All(l => l.TrimStart().Length == 0 || l.TrimStart().StartsWith('#'))) continue;
            if (skipped) continue; // shows several files in one block (include, overlays)

            var diagnostics = new List<ConfigDiagnostic>();
            var path = Path.Combine(Path.GetTempPath(), $"configuration.md-line-{line}.yaml");
            var loaded = ConfigLoader.Parse(path, yaml, name => DocEnvironment.GetValueOrDefault(name), diagnostics);
            if (loaded is not null && complete)
            {
                new SnapshotBuilder(name => DocEnvironment.GetValueOrDefault(name)).Compile(loaded, 1, diagnostics);
            }

            problems.AddRange(diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error || complete)
                .Select(d => $"example at configuration.md line {line}: {d}"));
        }

        Assert.Contains(blocks, b => b.Complete);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    /// <summary>Every key a config file may contain, as a path: routes[].match.hosts, clusters.&lt;name&gt;.retries.</summary>
    internal static IEnumerable<(string Path, PropertyInfo Property)> ModelKeys() => ModelKeys(typeof(PortcullisConfig), "", []);

    // Recursive types (claim rules nest `any` / `all`) are walked once along each path.
    private static IEnumerable<(string Path, PropertyInfo Property)> ModelKeys(Type type, string prefix, HashSet<Type> ancestors)
    {
        ancestors = [.. ancestors, type];
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite))
        {
            var path = prefix.Length == 0 ? YamlConfigBinder.KeyName(property) : prefix + "." + YamlConfigBinder.KeyName(property);
            yield return (path, property);

            var (child, suffix) = Unwrap(property.PropertyType);
            if (child.IsClass && child != typeof(string) && child.Namespace == typeof(PortcullisConfig).Namespace && !ancestors.Contains(child))
            {
                foreach (var nested in ModelKeys(child, path + suffix, ancestors)) yield return nested;
            }
        }
    }

    private static (Type Type, string Suffix) Unwrap(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type.IsGenericType)
        {
            var definition = type.GetGenericTypeDefinition();
            if (definition == typeof(IReadOnlyList<>) || definition == typeof(List<>)) return (type.GetGenericArguments()[0], "[]");
            if (definition == typeof(IReadOnlyDictionary<,>) || definition == typeof(Dictionary<,>)) return (type.GetGenericArguments()[1], ".<name>");
        }

        return (type, "");
    }

    // A type used in several places (claim rules: routes' auth and admin.auth) is written once and $ref'd
    // elsewhere; a $ref is followed unless it points at an ancestor (recursion, which the model walks once too).
    private static void CollectSchemaKeys(JsonNode node, string path, ISet<string> keys, string pointer = "#")
    {
        if (node is not JsonObject schema) return;
        if (schema["$ref"] is JsonValue reference && reference.GetValue<string>() is var target && !(pointer + "/").StartsWith(target + "/", StringComparison.Ordinal))
        {
            var resolved = target[2..].Split('/').Aggregate((JsonNode?)node.Root, (n, part) => n?[part]);
            if (resolved is not null) CollectSchemaKeys(resolved, path, keys, target);
        }

        if (schema["oneOf"] is JsonArray branches)
        {
            for (var i = 0; i < branches.Count; i++) CollectSchemaKeys(branches[i]!, path, keys, pointer + "/oneOf/" + i.ToString(CultureInfo.InvariantCulture));
        }

        if (schema["properties"] is JsonObject properties)
        {
            foreach (var (key, child) in properties)
            {
                var childPath = path.Length == 0 ? key : path + "." + key;
                keys.Add(childPath);
                CollectSchemaKeys(child!, childPath, keys, pointer + "/properties/" + key);
            }
        }

        if (schema["items"] is JsonObject items) CollectSchemaKeys(items, path + "[]", keys, pointer + "/items");
        if (schema["additionalProperties"] is JsonObject values) CollectSchemaKeys(values, path + ".<name>", keys, pointer + "/additionalProperties");
    }

    /// <summary>Rows of the reference tables (those headed | Key | Type | Default | Description |) in configuration.md.</summary>
    private static IEnumerable<(string Path, string Default)> DocRows()
    {
        var inTable = false;
        foreach (var line in File.ReadLines(DocsPath))
        {
            if (line.StartsWith(KeyTableHeader, StringComparison.Ordinal))
            {
                inTable = true;
                continue;
            }

            if (!line.StartsWith('|'))
            {
                inTable = false;
                continue;
            }

            var match = Regex.Match(line, @"^\| `(?<path>[^`]+)` \|(?<type>[^|]*)\|(?<default>[^|]*)\|");
            if (inTable && match.Success) yield return (match.Groups["path"].Value, match.Groups["default"].Value);
        }
    }

    /// <summary>The ```yaml blocks of configuration.md, with whether an HTML comment marks them as complete.</summary>
    private static IEnumerable<(int Line, string Yaml, bool Complete, bool Skipped)> DocYamlBlocks()
    {
        var lines = File.ReadAllLines(DocsPath);
        for (var i = 0; i < lines.Length; i++)
        {
            if (lines[i].Trim() != "```yaml") continue;
            var start = i;
            var complete = i > 0 && lines[i - 1].Trim() == "<!-- validated: complete -->";
            var skipped = i > 0 && lines[i - 1].Trim() == "<!-- not validated: several files -->";
            var body = new List<string>();
            for (i++; i < lines.Length && lines[i].Trim() != "```"; i++) body.Add(lines[i]);
            yield return (start + 1, string.Join("\n", body) + "\n", complete, skipped);
        }
    }

    private static bool SameValue(object value, string documented) => value switch
    {
        TimeSpan duration => DurationFormat.TryParse(documented, out var parsed, out _) && parsed == duration,
        ByteSize size => ByteSize.TryParse(documented, out var parsed, out _) && parsed == size,
        _ => string.Equals(Format(value), documented, StringComparison.Ordinal),
    };

    private static string Format(object value) => value switch
    {
        bool flag => flag ? "true" : "false",
        Enum choice => char.ToLowerInvariant(choice.ToString()[0]) + choice.ToString()[1..],
        TimeSpan duration => DurationFormat.Format(duration),
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static string FirstDifference(string expected, string actual)
    {
        var a = expected.Split('\n');
        var b = actual.Split('\n');
        for (var i = 0; i < Math.Max(a.Length, b.Length); i++)
        {
            var left = i < a.Length ? a[i] : "<end of file>";
            var right = i < b.Length ? b[i] : "<end of file>";
            if (left != right) return $"first difference at line {i + 1}: file has `{left.Trim()}`, model gives `{right.Trim()}`";
        }

        return "they differ";
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException($"Portcullis.sln not found above {AppContext.BaseDirectory}");
    }
}
