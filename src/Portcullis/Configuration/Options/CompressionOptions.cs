using System.ComponentModel;

namespace Portcullis.Configuration;

internal enum CompressionLevelOption
{
    /// <summary>Least CPU per byte: what a gateway on the request path should spend by default.</summary>
    Fastest,

    /// <summary>Smaller answers for more CPU.</summary>
    Optimal,
}

/// <summary>routes[].compression: compress the route's answers (gzip, Brotli) for clients that accept it.</summary>
internal sealed record CompressionOptions
{
    [Description("Compress this route's answers. Default true when the section is present.")]
    public bool Enabled { get; init; } = true;

    [Description("Answers with a Content-Length below this are sent as they are (default 1KiB); answers of unknown length are compressed.")]
    public ByteSize MinSize { get; init; } = ByteSize.FromKiB(1);

    [Description("Content types to compress: type/subtype or type/*. Default: text/*, JSON, XML, JavaScript, SVG, problem+json. Already-compressed types (images other than SVG, audio, video, archives, fonts) are never compressed.")]
    public IReadOnlyList<string> Types { get; init; } = [];

    [Description("Encodings offered, in order of preference when the client accepts several equally: br, gzip. Default [br, gzip].")]
    public IReadOnlyList<string> Algorithms { get; init; } = [];

    [Description("fastest (default: least CPU) or optimal (smaller answers).")]
    public CompressionLevelOption Level { get; init; } = CompressionLevelOption.Fastest;
}
