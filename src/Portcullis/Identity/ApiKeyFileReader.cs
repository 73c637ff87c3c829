using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Portcullis.Configuration;

namespace Portcullis.Identity;

/// <summary>
/// Reads an API key file — YAML (<c>keys.yaml</c>, the default) or JSON (a name ending in <c>.json</c>, same
/// fields) — and compiles it, every problem reported at the file's line and column. The gateway and
/// `portcullis keys` both read through here.
/// </summary>
/// <remarks>
/// JSON is for large stores: YamlDotNet scans about 7 MB/s, so a YAML file of 100,000 consumers (20 MB) takes
/// three seconds to parse before anything else happens, while System.Text.Json reads the same consumers in a
/// small fraction of that. Positions of JSON values are only worked out when something is wrong with one.
/// </remarks>
internal static class ApiKeyFileReader
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = false,
        RespectNullableAnnotations = false,
    };

    /// <summary>A key file is JSON when its name ends in .json; anything else is YAML.</summary>
    public static bool IsJson(string path) => path.EndsWith(".json", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The file's consumers and their compiled keys; (null, null) when it does not parse. A wrong record is left out
    /// of the keys; parse errors and wrong records are reported in <paramref name="diagnostics"/>, naming <paramref name="file"/>.
    /// </summary>
    public static (ApiKeyFile? File, CompiledApiKeys? Keys) Read(string file, byte[] content, ApiKeyOptions options, List<ConfigDiagnostic> diagnostics)
    {
        // UTF-8, a byte order mark allowed; JSON is read from the bytes as they are (no UTF-16 copy of 30 MB).
        var bytes = content.AsSpan().StartsWith(Encoding.UTF8.Preamble) ? content.AsMemory(Encoding.UTF8.Preamble.Length) : content.AsMemory();
        if (!IsJson(file)) return ReadYaml(file, Encoding.UTF8.GetString(bytes.Span), options, diagnostics);
        if (bytes.Span.Trim(" \t\r\n"u8).IsEmpty) return Empty(options);
        var parsed = ReadJson(file, bytes.Span, diagnostics);
        if (parsed is null) return (null, null);
        return (parsed, Compile(file, parsed, options, diagnostics, path => JsonPositions.Of(Encoding.UTF8.GetString(bytes.Span), path)));
    }

    // YAML: the gateway's binder, positions kept per path as it binds.
    private static (ApiKeyFile? File, CompiledApiKeys? Keys) ReadYaml(string file, string text, ApiKeyOptions options, List<ConfigDiagnostic> diagnostics)
    {
        if (OnlyCommentsOrBlank(text)) return Empty(options);
        var locations = new SourceLocations(file);
        var parsed = new YamlConfigBinder(file, _ => null, diagnostics, locations).BindDocument<ApiKeyFile>(text);
        if (parsed is null) return (null, null);
        return (parsed, Compile(file, parsed, options, diagnostics, locations.Of));
    }

    // A new key file or an emptied one: no consumers, not an error.
    private static (ApiKeyFile, CompiledApiKeys) Empty(ApiKeyOptions options)
    {
        var empty = new ApiKeyFile();
        return (empty, CompiledApiKeys.Compile(options, empty, (_, _) => { }));
    }

    private static CompiledApiKeys Compile(string file, ApiKeyFile parsed, ApiKeyOptions options, List<ConfigDiagnostic> diagnostics, Func<string, (int Line, int Column)> locate) =>
        CompiledApiKeys.Compile(options, parsed, (path, message) =>
        {
            var (line, column) = locate(path);
            diagnostics.Add(new ConfigDiagnostic(file, line, column, message));
        });

    private static ApiKeyFile? ReadJson(string file, ReadOnlySpan<byte> utf8, List<ConfigDiagnostic> diagnostics)
    {
        try
        {
            var parsed = JsonSerializer.Deserialize<ApiKeyFile>(utf8, Json);
            if (parsed is null)
            {
                diagnostics.Add(new ConfigDiagnostic(file, 1, 1, "the API key file is null", "write { \"consumers\": { } }"));
                return null;
            }

            return parsed;
        }
        catch (JsonException ex)
        {
            // LineNumber and BytePositionInLine count from 0. The serializer's own wording names .NET types, so
            // the two cases a person makes (an unknown field, a value of the wrong kind) are said in the file's terms.
            var line = (int)(ex.LineNumber ?? 0) + 1;
            var column = (int)(ex.BytePositionInLine ?? 0) + 1;
            var path = ex.Path is { Length: > 2 } p ? p[2..] : null; // "$.consumers.shop.keys[0].id" → "consumers.shop…"
            var (message, hint) = Describe(ex, path);
            diagnostics.Add(new ConfigDiagnostic(file, line, column, message, hint));
            return null;
        }
    }

    private static readonly string[] RootFields = ["consumers"];
    private static readonly string[] ConsumerFields = ["name", "group", "scopes", "keys"];
    private static readonly string[] KeyFields = ["id", "sha256", "created", "notBefore", "expires", "revoked"];

    private static (string Message, string? Hint) Describe(JsonException ex, string? path)
    {
        var field = path is null ? null : path[(path.LastIndexOf('.') + 1)..];
        var depth = path is null ? 0 : path.Split('.').Length;
        if (ex.Message.Contains("could not be mapped", StringComparison.Ordinal) && path is not null && field is not null)
        {
            string[] allowed = depth <= 1 ? RootFields : depth == 3 ? ConsumerFields : KeyFields;
            var parent = depth <= 1 ? "the file" : path[..path.LastIndexOf('.')];
            var suggestion = YamlConfigBinder.Suggest(field, allowed);
            return ($"unknown field '{field}' in {parent}", suggestion is not null ? $"did you mean '{suggestion}'?" : "allowed fields here: " + string.Join(", ", allowed));
        }

        if (ex.Message.Contains("could not be converted", StringComparison.Ordinal) && path is not null)
        {
            var expected = field switch
            {
                "created" or "notBefore" or "expires" => "a date and time such as \"2026-12-31T23:59:59Z\"",
                "revoked" => "true or false",
                "scopes" => "a list of strings",
                "consumers" => "an object of consumers by id",
                "keys" => "a list of keys",
                _ => depth == 2 ? "an object (a consumer)" : "a string",
            };
            return ($"{path}: not a valid value", "expected " + expected);
        }

        // Syntax: the reader's message, without its own position (the diagnostic has it).
        var message = ex.Message;
        var cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut < 0) cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        if (cut > 0) message = message[..cut];
        return ($"not valid JSON: {message}", "the file is { \"consumers\": { \"ID\": { \"scopes\": [...], \"keys\": [ { \"id\": ..., \"sha256\": ... } ] } } }");
    }

    private static bool OnlyCommentsOrBlank(string text)
    {
        foreach (var line in text.AsSpan().EnumerateLines())
        {
            var trimmed = line.Trim();
            if (trimmed.Length > 0 && trimmed[0] != '#') return false;
        }

        return true;
    }
}

/// <summary>Where a value of a JSON document is, by the dotted path the compilers use (consumers.ID.keys[0].sha256).</summary>
internal static class JsonPositions
{
    /// <summary>Line and column (from 1) of the value at <paramref name="path"/>, or of the deepest part of it found.</summary>
    public static (int Line, int Column) Of(string text, string path)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        var stack = new List<string>();
        var indexes = new List<int>(); // per open container: the next array index, or -1 for an object
        string? pendingName = null;
        var best = (Line: 1, Column: 1);
        var bestDepth = -1;
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.PropertyName)
                {
                    pendingName = reader.GetString();
                    continue;
                }

                if (reader.TokenType is JsonTokenType.EndObject or JsonTokenType.EndArray)
                {
                    indexes.RemoveAt(indexes.Count - 1);
                    if (stack.Count > 0) stack.RemoveAt(stack.Count - 1);
                    continue;
                }

                // A value (or a container's start): its path is the parent's plus a name or an index.
                string? segment = null;
                if (indexes.Count > 0)
                {
                    if (indexes[^1] >= 0) segment = $"[{indexes[^1]++}]";
                    else segment = pendingName;
                }

                var current = segment is null ? "" : Join(stack, segment);
                var depth = Matches(path, current);
                if (depth > bestDepth)
                {
                    bestDepth = depth;
                    best = Position(bytes, (int)reader.TokenStartIndex);
                    if (current == path) return best;
                }

                if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
                {
                    if (segment is not null || indexes.Count > 0) stack.Add(current);
                    indexes.Add(reader.TokenType == JsonTokenType.StartArray ? 0 : -1);
                }
            }
        }
        catch (JsonException)
        {
            // Not valid JSON: the deepest position found so far is the best answer.
        }

        return best;
    }

    private static string Join(List<string> stack, string segment)
    {
        var parent = stack.Count == 0 ? "" : stack[^1];
        if (segment.StartsWith('[')) return parent + segment;
        return parent.Length == 0 ? segment : parent + "." + segment;
    }

    // How much of the wanted path a value's path covers: its length when it is a prefix ending at a boundary, else -1.
    private static int Matches(string wanted, string current)
    {
        if (current.Length == 0) return 0;
        if (!wanted.StartsWith(current, StringComparison.Ordinal)) return -1;
        if (wanted.Length == current.Length) return current.Length;
        return wanted[current.Length] is '.' or '[' ? current.Length : -1;
    }

    private static (int Line, int Column) Position(byte[] bytes, int offset)
    {
        var line = 1;
        var lineStart = 0;
        for (var i = 0; i < offset; i++)
        {
            if (bytes[i] == (byte)'\n')
            {
                line++;
                lineStart = i + 1;
            }
        }

        return (line, Encoding.UTF8.GetCharCount(bytes, lineStart, offset - lineStart) + 1);
    }
}
