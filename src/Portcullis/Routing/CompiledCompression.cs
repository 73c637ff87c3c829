using System.IO.Compression;
using Microsoft.AspNetCore.ResponseCompression;
using Microsoft.Extensions.Options;
using Portcullis.Configuration;

namespace Portcullis.Routing;

/// <summary>
/// A route's compression policy (routes[].compression), validated once per snapshot. The decisions themselves are
/// ASP.NET Core's response-compression middleware's (Accept-Encoding with q-values, Content-Encoding and
/// Content-Range left alone, Vary: Accept-Encoding), configured per route by <see cref="RouteCompressionProvider"/>.
/// </summary>
internal sealed class CompiledCompression
{
    /// <summary>Compressed well by gzip and Brotli: text, structured data, scripts, SVG.</summary>
    internal static readonly string[] DefaultTypes =
    [
        "text/*", "application/json", "application/problem+json", "application/xml", "application/problem+xml",
        "application/javascript", "application/x-javascript", "application/graphql-response+json", "application/x-ndjson",
        "application/ld+json", "application/vnd.api+json", "image/svg+xml",
    ];

    /// <summary>Already compressed: compressing again costs CPU for nothing (or makes them larger).</summary>
    internal static readonly string[] CompressedTypes =
    [
        "image/*", "audio/*", "video/*", "font/woff", "font/woff2", "application/zip", "application/gzip", "application/x-gzip",
        "application/x-bzip2", "application/x-7z-compressed", "application/x-xz", "application/zstd", "application/x-rar-compressed",
        "application/pdf", "application/octet-stream", "text/event-stream",
    ];

    private static readonly string[] KnownAlgorithms = ["br", "gzip"];

    private ResponseCompressionProvider? _provider;

    public required long MinSize { get; init; }

    public required string[] Types { get; init; }

    public required string[] Algorithms { get; init; }

    public required CompressionLevel Level { get; init; }

    /// <summary>ASP.NET Core's provider with this route's types and encodings, made on first use (it needs the app's services for its logger).</summary>
    public ResponseCompressionProvider Provider(IServiceProvider services)
    {
        if (Volatile.Read(ref _provider) is { } made) return made;
        var options = new ResponseCompressionOptions
        {
            // The route opted in; BREACH-style risks of compressing secrets next to attacker-chosen text over TLS are
            // documented with the key (docs/configuration.md#compression).
            EnableForHttps = true,
            MimeTypes = Types,
            // Exact matches win over type/* in ASP.NET Core's check, so an explicitly listed image/svg+xml still compresses.
            ExcludedMimeTypes = CompressedTypes,
        };
        foreach (var algorithm in Algorithms)
        {
            options.Providers.Add(algorithm == "br"
                ? new BrotliCompressionProvider(Options.Create(new BrotliCompressionProviderOptions { Level = Level }))
                : new GzipCompressionProvider(Options.Create(new GzipCompressionProviderOptions { Level = Level })));
        }

        var provider = new ResponseCompressionProvider(services, Options.Create(options));
        return Interlocked.CompareExchange(ref _provider, provider, null) ?? provider;
    }

    private static bool IsCompressed(string type) =>
        !type.Equals("image/svg+xml", StringComparison.OrdinalIgnoreCase)
        && (CompressedTypes.Contains(type, StringComparer.OrdinalIgnoreCase) || CompressedTypes.Contains(type[..type.IndexOf('/', StringComparison.Ordinal)] + "/*", StringComparer.OrdinalIgnoreCase));

    public static CompiledCompression? Compile(CompileContext context, CompressionOptions? options, string path)
    {
        if (options is null || !options.Enabled) return null;
        var ok = true;
        if (options.MinSize.Bytes < 0)
        {
            context.Error(path + ".minSize", "minSize cannot be negative", "e.g. minSize: 1KiB");
            ok = false;
        }

        for (var i = 0; i < options.Types.Count; i++)
        {
            var type = options.Types[i];
            var slash = type.IndexOf('/', StringComparison.Ordinal);
            if (slash <= 0 || slash == type.Length - 1 || type.IndexOfAny([' ', ';', ',']) >= 0 || type == "*/*")
            {
                context.Error($"{path}.types[{i}]", $"'{type}' is not a content type", "type/subtype or type/*, e.g. application/json or text/*");
                ok = false;
            }
            else if (IsCompressed(type))
            {
                context.Warning($"{path}.types[{i}]", $"'{type}' is already compressed: compressing it again costs CPU for nothing, so it is not compressed");
            }
        }

        var algorithms = options.Algorithms.Count == 0 ? KnownAlgorithms : [.. options.Algorithms.Select(a => a.ToLowerInvariant())];
        for (var i = 0; i < algorithms.Length; i++)
        {
            if (!KnownAlgorithms.Contains(algorithms[i]))
            {
                context.Error($"{path}.algorithms[{i}]", $"'{options.Algorithms[i]}' is not a supported encoding", "br or gzip");
                ok = false;
            }
        }

        if (!ok) return null;
        return new CompiledCompression
        {
            MinSize = options.MinSize.Bytes,
            Types = options.Types.Count == 0 ? DefaultTypes : [.. options.Types.Where(t => !IsCompressed(t))], // as the warning says
            Algorithms = [.. algorithms.Distinct(StringComparer.Ordinal)],
            Level = options.Level == CompressionLevelOption.Optimal ? CompressionLevel.Optimal : CompressionLevel.Fastest,
        };
    }
}
