using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Portcullis.Configuration;

/// <summary>Marks a config value that must never be shown (admin API, logs, diff output).</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class SecretAttribute : Attribute;

/// <summary>JSON form of the config as written in YAML (durations, sizes, camelCase), secrets redacted.</summary>
internal static class ConfigJson
{
    public const string Redacted = "<redacted>";

    private static readonly string[] SensitiveHeaderWords = ["authorization", "cookie", "token", "secret", "key", "password", "credential"];

    public static JsonSerializerOptions Options { get; } = CreateOptions();

    public static string Serialize(PortcullisConfig config) => JsonSerializer.Serialize(config, Options);

    public static JsonElement ToElement(PortcullisConfig config) => JsonSerializer.SerializeToElement(config, Options);

    /// <summary>As <see cref="ToElement(PortcullisConfig)"/>, with the values at <paramref name="secretPaths"/> (from ${file:...}) redacted too.</summary>
    public static JsonElement ToElement(PortcullisConfig config, IReadOnlySet<string> secretPaths)
    {
        if (secretPaths.Count == 0) return ToElement(config);
        var root = JsonSerializer.SerializeToNode(config, Options)!;
        foreach (var path in secretPaths) RedactAt(root, path);
        return JsonSerializer.SerializeToElement(root, Options);
    }

    // A binder path (routes[0].requestHeaders.set.X-Api-Key, clusters.a.b): names may hold dots, so at each object
    // the longest property name that the rest of the path starts with wins.
    private static void RedactAt(JsonNode node, string path)
    {
        while (path.Length > 0)
        {
            if (path[0] == '[')
            {
                var close = path.IndexOf(']', StringComparison.Ordinal);
                if (node is not JsonArray array || close < 0 || !int.TryParse(path.AsSpan(1, close - 1), out var index) || index >= array.Count) return;
                path = path[(close + 1)..].TrimStart('.');
                if (path.Length == 0)
                {
                    array[index] = Redacted;
                    return;
                }

                node = array[index]!;
                continue;
            }

            if (node is not JsonObject obj) return;
            string? name = null;
            foreach (var (key, _) in obj)
            {
                if (path.StartsWith(key, StringComparison.Ordinal) && (path.Length == key.Length || path[key.Length] is '.' or '[') && key.Length > (name?.Length ?? -1)) name = key;
            }

            if (name is null) return;
            path = path[name.Length..].TrimStart('.');
            if (path.Length == 0)
            {
                obj[name] = Redacted;
                return;
            }

            node = obj[name]!;
        }
    }

    /// <summary>Header values that look like credentials are redacted too (they may come from ${ENV}).</summary>
    public static bool IsSensitiveHeader(string name)
    {
        foreach (var word in SensitiveHeaderWords)
        {
            if (name.Contains(word, StringComparison.OrdinalIgnoreCase)) return true;
        }

        return false;
    }

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions
        {
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            WriteIndented = true,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            TypeInfoResolver = new DefaultJsonTypeInfoResolver { Modifiers = { Redact } },
        };
        options.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.CamelCase));
        options.Converters.Add(new DurationConverter());
        options.Converters.Add(new ByteSizeConverter());
        options.MakeReadOnly();
        return options;
    }

    private static void Redact(JsonTypeInfo typeInfo)
    {
        foreach (var property in typeInfo.Properties)
        {
            var member = property.AttributeProvider as PropertyInfo;
            if (member?.GetCustomAttribute<SecretAttribute>() is not null)
            {
                var getter = property.Get;
                property.CustomConverter = null;
                property.Get = owner => getter?.Invoke(owner) is null ? null : Redacted;
            }
            else if (typeInfo.Type == typeof(RequestHeadersOptions) && member?.Name == nameof(RequestHeadersOptions.Set))
            {
                property.Get = owner => ((RequestHeadersOptions)owner).Set.ToDictionary(
                    h => h.Key, h => IsSensitiveHeader(h.Key) ? Redacted : h.Value, StringComparer.Ordinal);
            }
            else if (typeInfo.Type == typeof(FixedResponseOptions) && member?.Name == nameof(FixedResponseOptions.Headers))
            {
                property.Get = owner => ((FixedResponseOptions)owner).Headers.ToDictionary(
                    h => h.Key, h => IsSensitiveHeader(h.Key) ? Redacted : h.Value, StringComparer.Ordinal);
            }
        }
    }

    private sealed class DurationConverter : JsonConverter<TimeSpan>
    {
        public override TimeSpan Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            DurationFormat.TryParse(reader.GetString() ?? "", out var value, out var error) ? value : throw new JsonException(error);

        public override void Write(Utf8JsonWriter writer, TimeSpan value, JsonSerializerOptions options) =>
            writer.WriteStringValue(DurationFormat.Format(value));
    }

    private sealed class ByteSizeConverter : JsonConverter<ByteSize>
    {
        public override ByteSize Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            ByteSize.TryParse(reader.GetString() ?? "", out var value, out var error) ? value : throw new JsonException(error);

        public override void Write(Utf8JsonWriter writer, ByteSize value, JsonSerializerOptions options) =>
            writer.WriteStringValue(value.ToString());
    }
}
