using System.Collections;
using System.ComponentModel;
using System.Globalization;
using System.Reflection;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Schema;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Portcullis.Configuration;

/// <summary>
/// Produces the JSON Schema (draft 2020-12) of <see cref="PortcullisConfig"/>, checked in as
/// docs/portcullis.schema.json for editors (yaml-language-server). It is derived from the model by
/// System.Text.Json's schema exporter and adjusted to what the YAML binder accepts: durations and sizes
/// as strings, enums by camelCase name, a single scalar for a list, a plain URL for a destination, and
/// no unknown keys. Semantic rules (exactly one route action, known cluster names, ...) stay in
/// <see cref="SnapshotBuilder"/>; the schema only helps editors.
/// </summary>
internal static class ConfigSchema
{
    public const string Dialect = "https://json-schema.org/draft/2020-12/schema";

    // ${VAR} / ${VAR:-default} anywhere in a scalar: the value is only known after substitution.
    private const string EnvironmentReference = @".*\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}.*";

    /// <summary>What <see cref="DurationFormat.TryParse"/> accepts: number+unit parts, e.g. 250ms, 1m30s, 1.5h.</summary>
    internal const string DurationPattern = @"^(?:\s*(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ms|s|m|h|d))+\s*|" + EnvironmentReference + ")$";

    /// <summary>What <see cref="ByteSize.TryParse"/> accepts: digits and an optional, case-insensitive unit.</summary>
    internal const string SizePattern = @"^(?:\s*[0-9]+\s*(?:[KkMmGg](?:[Ii]?[Bb])?|[Bb])?\s*|" + EnvironmentReference + ")$";

    // Schema keywords are written in this order; anything else follows alphabetically.
    private static readonly string[] KeywordOrder =
    [
        "$schema", "$id", "$ref", "title", "description", "type", "enum", "const", "pattern", "minimum", "maximum",
        "default", "examples", "oneOf", "anyOf", "allOf", "properties", "additionalProperties", "items", "required",
    ];

    public static string Generate()
    {
        var options = new JsonSerializerOptions
        {
            TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            RespectNullableAnnotations = true,
            Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        };
        var exporterOptions = new JsonSchemaExporterOptions
        {
            TreatNullObliviousAsNonNullable = true,
            TransformSchemaNode = Transform,
        };

        var schema = (JsonObject)options.GetJsonSchemaAsNode(typeof(PortcullisConfig), exporterOptions);
        schema["$schema"] = Dialect;
        schema["title"] = "Portcullis configuration";
        schema["description"] = "The Portcullis API gateway configuration file (YAML). Reference: docs/configuration.md.";

        var output = new JsonSerializerOptions
        {
            WriteIndented = true,
            IndentSize = 2,
            NewLine = "\n",
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };
        return Canonicalize(schema, isPropertyMap: false)!.ToJsonString(output) + "\n";
    }

    private static JsonNode Transform(JsonSchemaExporterContext context, JsonNode node)
    {
        var typeInfo = context.TypeInfo;
        var type = Nullable.GetUnderlyingType(typeInfo.Type) ?? typeInfo.Type;
        var result = node;

        if (type == typeof(TimeSpan))
        {
            result = new JsonObject
            {
                ["type"] = "string",
                ["pattern"] = DurationPattern,
                ["examples"] = new JsonArray("250ms", "5s", "1m30s", "2h"),
            };
        }
        else if (type == typeof(ByteSize))
        {
            result = new JsonObject
            {
                ["type"] = new JsonArray("string", "integer"),
                ["pattern"] = SizePattern,
                ["minimum"] = 0,
                ["examples"] = new JsonArray(512, "32KiB", "10MiB"),
            };
        }
        else if (type.IsEnum)
        {
            var names = new JsonArray();
            foreach (var name in Enum.GetNames(type)) names.Add(CamelCase(name));
            result = new JsonObject { ["type"] = "string", ["enum"] = names };
        }
        else if (typeInfo.Kind == JsonTypeInfoKind.Object && result is JsonObject objectSchema && !objectSchema.ContainsKey("$ref"))
        {
            // Not on a $ref to a recursive type (claim rules nest `any` / `all`): in draft 2020-12,
            // additionalProperties only sees properties declared beside it, so there it would reject every key.
            objectSchema["additionalProperties"] = false;
            if (type.GetCustomAttribute<ScalarShorthandAttribute>() is { } shorthand)
            {
                result = ScalarShorthand(type, shorthand, objectSchema);
            }
        }
        else if (typeInfo.Kind == JsonTypeInfoKind.Enumerable && typeInfo.ElementType is { } element
            && result is JsonObject { } arraySchema && arraySchema["items"] is JsonObject items
            && AcceptsSingleScalar(element))
        {
            // The binder reads a lone scalar as a one-item list (hosts: api.example.com).
            var single = items["oneOf"] is JsonArray branches ? branches[0]!.DeepClone() : items.DeepClone();
            result = new JsonObject { ["oneOf"] = new JsonArray(single, arraySchema) };
        }

        if (context.PropertyInfo?.AttributeProvider is PropertyInfo property && result is JsonObject annotated)
        {
            if (property.GetCustomAttribute<DescriptionAttribute>() is { Description: { Length: > 0 } description })
            {
                annotated["description"] = description;
            }

            if (DefaultValue(property) is { } defaultValue)
            {
                annotated["default"] = defaultValue;
            }
        }

        return result;
    }

    /// <summary>A plain scalar sets one property (a destination may be just its URL, retries just a count); a mapping sets them all.</summary>
    private static JsonObject ScalarShorthand(Type type, ScalarShorthandAttribute shorthand, JsonObject objectSchema)
    {
        var target = type.GetProperty(shorthand.PropertyName)
            ?? throw new InvalidOperationException($"{type.Name} names unknown shorthand property {shorthand.PropertyName}");
        var scalar = new JsonObject { ["type"] = target.PropertyType == typeof(int) ? "integer" : "string" };
        var description = target.GetCustomAttribute<DescriptionAttribute>()?.Description;
        scalar["description"] = $"Shorthand for {{ {CamelCase(target.Name)}: ... }}." + (description is null ? "" : " " + description);
        return new JsonObject { ["oneOf"] = new JsonArray(scalar, objectSchema) };
    }

    private static bool AcceptsSingleScalar(Type element) =>
        element == typeof(string) || element.IsValueType || element.GetCustomAttribute<ScalarShorthandAttribute>() is not null;

    /// <summary>The model's default for a scalar property, written as it would be in YAML; null for none.</summary>
    private static JsonNode? DefaultValue(PropertyInfo property)
    {
        var declaring = property.DeclaringType;
        if (declaring is null || !declaring.IsClass || declaring.Namespace != typeof(PortcullisConfig).Namespace
            || declaring.GetConstructor(Type.EmptyTypes) is null)
        {
            return null;
        }

        var value = property.GetValue(Activator.CreateInstance(declaring));
        return value switch
        {
            null or "" or IEnumerable and not string => null,
            string text => text,
            bool flag => flag,
            int number => number,
            long number => number,
            TimeSpan duration => DurationFormat.Format(duration),
            ByteSize size => size.ToString(),
            Enum choice => CamelCase(choice.ToString()),
            _ => null,
        };
    }

    private static string CamelCase(string name) =>
        name.Length == 0 ? name : char.ToLowerInvariant(name[0]) + name[1..];

    /// <summary>Copies the schema with keywords in a fixed order; property lists keep model order.</summary>
    private static JsonNode? Canonicalize(JsonNode? node, bool isPropertyMap)
    {
        switch (node)
        {
            case JsonObject obj:
                var keys = obj.Select(p => p.Key);
                if (!isPropertyMap)
                {
                    keys = keys
                        .OrderBy(k => Array.IndexOf(KeywordOrder, k) is var i and >= 0 ? i : KeywordOrder.Length)
                        .ThenBy(k => k, StringComparer.Ordinal);
                }

                var copy = new JsonObject();
                foreach (var key in keys.ToList())
                {
                    copy[key] = Canonicalize(obj[key], !isPropertyMap && key is "properties" or "$defs");
                }

                return copy;
            case JsonArray array:
                var items = new JsonArray();
                foreach (var item in array) items.Add(Canonicalize(item, isPropertyMap: false));
                return items;
            default:
                return node?.DeepClone();
        }
    }
}
