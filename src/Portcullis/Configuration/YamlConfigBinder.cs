using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.Core;

namespace Portcullis.Configuration;

/// <summary>
/// Binds a tree of <see cref="ConfigNode"/>s (read with YamlDotNet's parser) to the config records, collecting every problem (unknown keys with a
/// "did you mean", wrong types, bad durations/sizes, unset variables) with its line and column instead
/// of stopping at the first. Positions are kept per config path for the semantic validator.
/// </summary>
internal sealed partial class YamlConfigBinder
{
    private readonly string _file;
    private string? _current;
    private readonly Func<string, string?> _environment;
    private readonly List<ConfigDiagnostic> _diagnostics;
    private readonly SourceLocations _locations;
    private readonly Dictionary<Type, Dictionary<string, PropertyInfo>> _propertyCache = [];

    public YamlConfigBinder(string file, Func<string, string?> environment, List<ConfigDiagnostic> diagnostics, SourceLocations locations)
    {
        _file = file;
        _environment = environment;
        _diagnostics = diagnostics;
        _locations = locations;
    }

    public static string KeyName(PropertyInfo property) =>
        char.ToLowerInvariant(property.Name[0]) + property.Name[1..];

    /// <summary>The first (main) file: diagnostics about nodes of no other file name it.</summary>
    public string File => _file;

    /// <summary>Says which file a node came from when several were composed (null: the main file).</summary>
    public Func<ConfigNode, string?>? FileOf { get; set; }

    /// <summary>Parses YAML text and binds it; returns null when the document cannot be parsed at all.</summary>
    public T? BindDocument<T>(string yaml) where T : class, new() =>
        Parse(_file, yaml) is { } root ? BindRoot<T>(root) : null;

    /// <summary>Parses one file's text into a node tree, reporting malformed YAML at that file's positions.</summary>
    public ConfigNode? Parse(string file, string yaml)
    {
        var previous = _current;
        _current = file;
        try
        {
            var parser = new Parser(new StringReader(yaml));
            ConfigNode? root;
            Mark? second;
            try
            {
                root = ConfigNode.Load(parser, out second);
            }
            catch (Exception ex) when (ex is YamlException or InvalidOperationException)
            {
                ReportMalformed(yaml, ex, parser);
                return null;
            }

            if (root is null) return new ConfigScalar(Mark.Empty, null);
            if (second is { } at) Error(at.Line, at.Column, "only one YAML document is allowed", "remove the '---' separator");
            return root;
        }
        finally
        {
            _current = previous;
        }
    }

    /// <summary>Binds a (possibly composed) tree; null when the main document is empty.</summary>
    public T? BindRoot<T>(ConfigNode root) where T : class, new()
    {
        if (root is ConfigScalar { Value: null or "" })
        {
            _locations.Add("", null, 1, 1);
            Error(1, 1, "the configuration file is empty", "start from examples/quickstart/portcullis.yaml");
            return null;
        }

        return Bind(root, typeof(T), "") as T;
    }

    /// <summary>A diagnostic in a named file (the composer's include and merge problems).</summary>
    public void ErrorIn(string file, long line, long column, string message, string? hint) =>
        _diagnostics.Add(new ConfigDiagnostic(file, (int)line, (int)column, message, hint));

    // What Bind needs to know of a type, worked out once per binder (reflection per node was a tenth of the time
    // binding a 100,000-consumer key file).
    private enum TypeKind { Other, List, Dictionary }

    // Concrete: the List<T> or Dictionary<string, T> made for a list or dictionary (MakeGenericType per node was
    // a tenth of binding 50,000 routes).
    private readonly record struct TypeShape(Type Type, TypeKind Kind, Type? Element, Type? Concrete = null);

    private readonly Dictionary<Type, TypeShape> _shapes = [];

    private TypeShape ShapeOf(Type declared)
    {
        if (_shapes.TryGetValue(declared, out var shape)) return shape;
        var type = Nullable.GetUnderlyingType(declared) ?? declared;
        shape = new TypeShape(type, TypeKind.Other, null);
        if (type.IsGenericType)
        {
            var definition = type.GetGenericTypeDefinition();
            if (definition == typeof(IReadOnlyList<>) || definition == typeof(List<>))
            {
                var element = type.GetGenericArguments()[0];
                shape = shape with { Kind = TypeKind.List, Element = element, Concrete = typeof(List<>).MakeGenericType(element) };
            }
            else if (definition == typeof(IReadOnlyDictionary<,>) || definition == typeof(Dictionary<,>))
            {
                var element = type.GetGenericArguments()[1];
                shape = shape with { Kind = TypeKind.Dictionary, Element = element, Concrete = typeof(Dictionary<,>).MakeGenericType(typeof(string), element) };
            }
        }

        _shapes[declared] = shape;
        return shape;
    }

    private object? Bind(ConfigNode node, Type declaredType, string path)
    {
        _locations.Add(path, FileOf?.Invoke(node), (int)node.Start.Line, (int)node.Start.Column);
        var shape = ShapeOf(declaredType);
        var type = shape.Type;

        if (node is ConfigScalar scalar && IsNull(scalar))
        {
            return null;
        }

        if (type == typeof(string)) return ReadScalar(node, path, "a string", s => (true, s, null));
        if (type == typeof(int)) return ReadScalar(node, path, "an integer", s => int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? (true, v, null) : (false, null, "not an integer"));
        if (type == typeof(long)) return ReadScalar(node, path, "an integer", s => long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? (true, v, null) : (false, null, "not an integer"));
        if (type == typeof(double)) return ReadScalar(node, path, "a number", s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? (true, v, null) : (false, null, "not a number"));
        if (type == typeof(bool)) return ReadScalar(node, path, "true or false", ParseBool);
        if (type == typeof(TimeSpan)) return ReadScalar(node, path, "a duration such as 250ms, 5s, 1m or 2h", s => DurationFormat.TryParse(s, out var v, out var e) ? (true, v, null) : (false, null, $"bad duration '{s}': {e}"));
        if (type == typeof(ByteSize)) return ReadScalar(node, path, "a size such as 512, 32KiB or 10MiB", s => ByteSize.TryParse(s, out var v, out var e) ? (true, v, null) : (false, null, $"bad size '{s}': {e}"));
        if (type == typeof(DateTimeOffset)) return ReadScalar(node, path, "a date and time such as 2026-12-31T23:59:59Z", s => DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var v) ? (true, v, null) : (false, null, $"'{s}' is not a date and time"));
        if (type.IsEnum) return ReadScalar(node, path, "one of " + string.Join(", ", EnumNames(type)), s => ParseEnum(type, s));

        if (shape.Kind == TypeKind.List) return BindList(node, shape.Element!, shape.Concrete!, path);
        if (shape.Kind == TypeKind.Dictionary) return BindDictionary(node, shape.Element!, shape.Concrete!, path);

        if (type.IsClass)
        {
            return BindObject(node, type, path);
        }

        throw new NotSupportedException($"config type {type} is not bindable");
    }

    private object? BindObject(ConfigNode node, Type type, string path)
    {
        if (node is ConfigScalar scalar && type.GetCustomAttribute<ScalarShorthandAttribute>() is { } shorthand)
        {
            var instanceFromScalar = Activator.CreateInstance(type)!;
            var property = type.GetProperty(shorthand.PropertyName)!;
            var value = Bind(scalar, property.PropertyType, path + "." + KeyName(property));
            if (value is not null) property.SetValue(instanceFromScalar, value);
            return instanceFromScalar;
        }

        if (node is not ConfigMapping mapping)
        {
            TypeError(node, path, "a mapping (key: value lines)");
            return null;
        }

        var properties = PropertiesOf(type);
        var instance = Activator.CreateInstance(type)!;
        foreach (var (keyNode, valueNode) in mapping.Children)
        {
            if (keyNode is not ConfigScalar { Value: { } key })
            {
                ErrorAt(keyNode, "a key must be a plain name", null);
                continue;
            }

            var childPath = path.Length == 0 ? key : path + "." + key;
            if (!properties.TryGetValue(key, out var property))
            {
                var suggestion = Suggest(key, properties.Keys);
                var hint = suggestion is not null
                    ? $"did you mean '{suggestion}'?"
                    : "allowed keys here: " + string.Join(", ", properties.Keys);
                ErrorAt(keyNode, $"unknown key '{key}'" + (path.Length == 0 ? "" : $" in {path}"), hint);
                continue;
            }

            var value = Bind(valueNode, property.PropertyType, childPath);
            if (value is string relative && FileOf?.Invoke(valueNode) is { } file && property.IsDefined(typeof(FilePathAttribute)))
            {
                value = RelativeTo(file, relative);
            }

            if (value is not null) property.SetValue(instance, value);
        }

        return instance;
    }

    private object? BindList(ConfigNode node, Type itemType, Type listType, string path)
    {
        var list = (IList)Activator.CreateInstance(listType)!;
        if (node is ConfigSequence sequence)
        {
            var i = 0;
            foreach (var child in sequence.Children)
            {
                var item = Bind(child, itemType, $"{path}[{i}]");
                if (item is not null) list.Add(item);
                i++;
            }

            return list;
        }

        // A single scalar stands for a one-item list (hosts: api.example.com).
        if (node is ConfigScalar && (itemType == typeof(string) || itemType.IsValueType || itemType.GetCustomAttribute<ScalarShorthandAttribute>() is not null))
        {
            var item = Bind(node, itemType, $"{path}[0]");
            if (item is not null) list.Add(item);
            return list;
        }

        TypeError(node, path, "a list");
        return null;
    }

    private object? BindDictionary(ConfigNode node, Type valueType, Type dictionaryType, string path)
    {
        if (node is not ConfigMapping mapping)
        {
            TypeError(node, path, "a mapping of names to values");
            return null;
        }

        var dictionary = (IDictionary)Activator.CreateInstance(dictionaryType, StringComparer.Ordinal)!;
        foreach (var (keyNode, valueNode) in mapping.Children)
        {
            if (keyNode is not ConfigScalar { Value: { } key } || key.Length == 0)
            {
                ErrorAt(keyNode, "a name must be a non-empty plain string", null);
                continue;
            }

            var childPath = path + "." + key;
            _locations.Add(childPath + "#key", FileOf?.Invoke(keyNode), (int)keyNode.Start.Line, (int)keyNode.Start.Column);
            var value = Bind(valueNode, valueType, childPath);
            if (value is null && valueType == typeof(string) && valueNode is ConfigScalar)
            {
                value = "";
            }
            else if (value is null && valueType.IsClass)
            {
                value = Activator.CreateInstance(valueType);
            }

            if (value is not null) dictionary[key] = value;
        }

        return dictionary;
    }

    private object? ReadScalar(ConfigNode node, string path, string expected, Func<string, (bool Ok, object? Value, string? Error)> parse)
    {
        if (node is not ConfigScalar scalar)
        {
            TypeError(node, path, expected);
            return null;
        }

        var text = Substitute(scalar, path);
        if (text is null) return null;
        var (ok, value, error) = parse(text);
        if (!ok)
        {
            ErrorAt(node, $"{Describe(path)}: {error ?? "bad value"}", $"expected {expected}");
            return null;
        }

        return value;
    }

    private static (bool, object?, string?) ParseBool(string s) => s.ToLowerInvariant() switch
    {
        "true" or "yes" or "on" => (true, true, null),
        "false" or "no" or "off" => (true, false, null),
        _ => (false, null, $"'{s}' is not true or false"),
    };

    private static (bool, object?, string?) ParseEnum(Type type, string s)
    {
        foreach (var name in Enum.GetNames(type))
        {
            if (string.Equals(name, s, StringComparison.OrdinalIgnoreCase)) return (true, Enum.Parse(type, name), null);
        }

        var suggestion = Suggest(s, EnumNames(type));
        return (false, null, $"'{s}' is not allowed" + (suggestion is null ? "" : $" (did you mean '{suggestion}'?)"));
    }

    public static IEnumerable<string> EnumNames(Type type) =>
        Enum.GetNames(type).Select(n => char.ToLowerInvariant(n[0]) + n[1..]);

    private static bool IsNull(ConfigScalar scalar) =>
        scalar.Style == ScalarStyle.Plain && (scalar.Value is null or "" or "~" or "null" or "Null" or "NULL");

    private Dictionary<string, PropertyInfo> PropertiesOf(Type type)
    {
        if (!_propertyCache.TryGetValue(type, out var map))
        {
            map = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
                .Where(p => p.CanWrite)
                .ToDictionary(KeyName, StringComparer.Ordinal);
            _propertyCache[type] = map;
        }

        return map;
    }

    private void TypeError(ConfigNode node, string path, string expected)
    {
        var found = node switch
        {
            ConfigMapping => "a mapping",
            ConfigSequence => "a list",
            ConfigScalar s => $"'{s.Value}'",
            _ => "something else",
        };
        ErrorAt(node, $"{Describe(path)}: expected {expected}, found {found}", null);
    }

    // A path written in an included or overlay file is relative to that file; made absolute unless that file sits
    // beside the main file (then the main file's folder resolves it the same, and it stays as written).
    private string RelativeTo(string file, string path)
    {
        if (path.Length == 0 || Path.IsPathRooted(path)) return path;
        var folder = Path.GetDirectoryName(Path.GetFullPath(file))!;
        var mainFolder = Path.GetDirectoryName(Path.GetFullPath(_file))!;
        return string.Equals(folder, mainFolder, StringComparison.Ordinal) ? path : Path.GetFullPath(path, folder);
    }

    private static string Describe(string path) => path.Length == 0 ? "document" : path;

    // While parsing: the file being parsed; while binding, a node's own file (ErrorAt).
    private void Error(long line, long column, string message, string? hint) => ErrorIn(_current ?? _file, line, column, message, hint);

    private void ErrorAt(ConfigNode node, string message, string? hint) => ErrorAt(node, node.Start.Line, node.Start.Column, message, hint);

    private void ErrorAt(ConfigNode node, long line, long column, string message, string? hint) =>
        ErrorIn(FileOf?.Invoke(node) ?? _file, line, column, message, hint);

    /// <summary>The closest candidate within a small edit distance, for "did you mean".</summary>
    public static string? Suggest(string input, IEnumerable<string> candidates)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in candidates)
        {
            var distance = EditDistance(input.ToLowerInvariant(), candidate.ToLowerInvariant());
            if (distance < bestDistance)
            {
                bestDistance = distance;
                best = candidate;
            }
        }

        return best is not null && bestDistance <= Math.Max(2, input.Length / 3) ? best : null;
    }

    private static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }
}
