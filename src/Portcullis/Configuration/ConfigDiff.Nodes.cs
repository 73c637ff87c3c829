using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Text.RegularExpressions;

namespace Portcullis.Configuration;

// The generic walk over the serialized config: list matching by name, field-by-field diffs and
// rendering of values, shared by every section ConfigDiff compares.
internal static partial class ConfigDiff
{
    private static Dictionary<string, Node> ByName(Node? list)
    {
        var result = new Dictionary<string, Node>(StringComparer.Ordinal);
        if (list is not { Kind: JsonValueKind.Array } array) return result;
        foreach (var item in array.Items())
        {
            if (item.Kind == JsonValueKind.Object && item.Property("name") is { Kind: JsonValueKind.String } name)
            {
                result.TryAdd(name.Shown.GetString() ?? "", item);
            }
        }

        return result;
    }

    /// <summary>Union of both objects' property names, sorted ordinally.</summary>
    private static List<string> Keys(Node? a, Node? b)
    {
        var keys = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var node in new[] { a, b })
        {
            if (node is { Kind: JsonValueKind.Object } o)
            {
                foreach (var property in o.Raw.EnumerateObject()) keys.Add(property.Name);
            }
        }

        return [.. keys];
    }

    private static void DiffFields(Node? a, Node? b, List<string> details, params string[] skip)
    {
        foreach (var key in Keys(a, b))
        {
            if (skip.Contains(key)) continue;
            Diff(Child("", key), a?.Property(key), b?.Property(key), details);
        }
    }

    private static void Diff(string path, Node? a, Node? b, List<string> details)
    {
        if (a is null && b is null) return;
        if (a is { } x && b is { } y)
        {
            if (JsonElement.DeepEquals(x.Raw, y.Raw)) return;
            if (!x.IsRedacted && !y.IsRedacted)
            {
                if (x.Kind == JsonValueKind.Object && y.Kind == JsonValueKind.Object)
                {
                    foreach (var key in Keys(x, y)) Diff(Child(path, key), x.Property(key), y.Property(key), details);
                    return;
                }

                if (x.Kind == JsonValueKind.Array && y.Kind == JsonValueKind.Array && x.Raw.GetArrayLength() == y.Raw.GetArrayLength()
                    && x.Items().Concat(y.Items()).All(n => n.Kind == JsonValueKind.Object))
                {
                    var i = 0;
                    foreach (var (p, q) in x.Items().Zip(y.Items()))
                    {
                        Diff(path + "[" + (i++).ToString(CultureInfo.InvariantCulture) + "]", p, q, details);
                    }

                    return;
                }
            }

            var left = Render(x, quote: true);
            var right = Render(y, quote: true);
            // Equal renderings of different values: a secret (or something containing one) changed.
            details.Add(left == right ? $"{path}: (sensitive value changed)" : $"{path}: {left}{Arrow}{right}");
            return;
        }

        details.Add($"{path}: {(a is { } before ? Render(before, quote: true) : None)}{Arrow}{(b is { } after ? Render(after, quote: true) : None)}");
    }

    private static string Child(string path, string key)
    {
        var segment = SimpleKey().IsMatch(key) ? key : "[" + JsonSerializer.Serialize(key, TextOptions) + "]";
        return path.Length == 0 || segment[0] == '[' ? path + segment : path + "." + segment;
    }

    /// <summary>Compact JSON of the redacted form; redacted values print as &lt;redacted&gt;.</summary>
    private static string Render(Node node, bool quote)
    {
        var text = new StringBuilder();
        Write(node.Shown, text, quote);
        return text.ToString();
    }

    private static void Write(JsonElement element, StringBuilder text, bool quote)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                var value = element.GetString()!;
                text.Append(value == ConfigJson.Redacted ? ConfigJson.Redacted : quote ? JsonSerializer.Serialize(value, TextOptions) : value);
                break;
            case JsonValueKind.Object:
                text.Append('{');
                var first = true;
                foreach (var property in element.EnumerateObject())
                {
                    if (!first) text.Append(',');
                    first = false;
                    text.Append(JsonSerializer.Serialize(property.Name, TextOptions)).Append(':');
                    Write(property.Value, text, quote: true);
                }

                text.Append('}');
                break;
            case JsonValueKind.Array:
                text.Append('[');
                var firstItem = true;
                foreach (var item in element.EnumerateArray())
                {
                    if (!firstItem) text.Append(',');
                    firstItem = false;
                    Write(item, text, quote: true);
                }

                text.Append(']');
                break;
            default:
                text.Append(element.GetRawText());
                break;
        }
    }

    private static JsonSerializerOptions CreateRawOptions()
    {
        var options = new JsonSerializerOptions(ConfigJson.Options) { TypeInfoResolver = new DefaultJsonTypeInfoResolver() };
        options.MakeReadOnly();
        return options;
    }

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_-]*$")]
    private static partial Regex SimpleKey();

    /// <summary>
    /// The same place in the unredacted form (compared, never printed) and the redacted form (printed).
    /// Both are serialized from one config, so they have the same shape except where a secret was redacted.
    /// </summary>
    private readonly record struct Node(JsonElement Raw, JsonElement Shown)
    {
        public static Node Of(LoadedConfig config) =>
            new(JsonSerializer.SerializeToElement(config.Config, RawOptions), ConfigJson.ToElement(config.Config, config.SecretPaths));

        public JsonValueKind Kind => Raw.ValueKind;

        public bool IsRedacted => Shown.ValueKind == JsonValueKind.String && Shown.GetString() == ConfigJson.Redacted && Raw.ValueKind != JsonValueKind.Undefined;

        public Node? Property(string name) =>
            Raw.ValueKind == JsonValueKind.Object && Shown.ValueKind == JsonValueKind.Object
            && Raw.TryGetProperty(name, out var raw) && Shown.TryGetProperty(name, out var shown)
                ? new Node(raw, shown)
                : null;

        public IEnumerable<Node> Items()
        {
            if (Raw.ValueKind != JsonValueKind.Array || Shown.ValueKind != JsonValueKind.Array) yield break;
            foreach (var (raw, shown) in Raw.EnumerateArray().Zip(Shown.EnumerateArray())) yield return new Node(raw, shown);
        }
    }
}
