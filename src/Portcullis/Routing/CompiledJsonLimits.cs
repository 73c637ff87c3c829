using Portcullis.Configuration;

namespace Portcullis.Routing;

/// <summary>A route's JSON body limits, validated once per snapshot.</summary>
internal sealed class CompiledJsonLimits
{
    public required long MaxSize { get; init; }

    public required int MaxDepth { get; init; }

    public required int MaxStringLength { get; init; }

    public required int MaxArrayItems { get; init; }

    public required int MaxObjectMembers { get; init; }

    public required bool RequireJson { get; init; }

    // Generous ceilings: beyond them a "limit" protects nothing and the counters' stack grows for nothing.
    internal const int DepthCeiling = 1000;

    public static CompiledJsonLimits? Compile(CompileContext context, JsonLimitsOptions? options, string path)
    {
        if (options is null) return null;
        var ok = true;
        if (options.MaxSize.Bytes <= 0)
        {
            context.Error(path + ".maxSize", "maxSize must be above 0", "e.g. maxSize: 1MiB");
            ok = false;
        }

        ok &= Positive(context, options.MaxDepth, path + ".maxDepth", "e.g. maxDepth: 32", DepthCeiling);
        ok &= Positive(context, options.MaxStringLength, path + ".maxStringLength", "e.g. maxStringLength: 8192", int.MaxValue);
        ok &= Positive(context, options.MaxArrayItems, path + ".maxArrayItems", "e.g. maxArrayItems: 10000", int.MaxValue);
        ok &= Positive(context, options.MaxObjectMembers, path + ".maxObjectMembers", "e.g. maxObjectMembers: 1000", int.MaxValue);
        if (!ok) return null;
        return new CompiledJsonLimits
        {
            MaxSize = options.MaxSize.Bytes,
            MaxDepth = options.MaxDepth,
            MaxStringLength = options.MaxStringLength,
            MaxArrayItems = options.MaxArrayItems,
            MaxObjectMembers = options.MaxObjectMembers,
            RequireJson = options.RequireJson,
        };
    }

    private static bool Positive(CompileContext context, int value, string path, string hint, int ceiling)
    {
        if (value >= 1 && value <= ceiling) return true;
        context.Error(path, ceiling == int.MaxValue ? $"must be at least 1, not {value}" : $"must be between 1 and {ceiling}, not {value}", hint);
        return false;
    }
}
