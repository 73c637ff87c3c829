using System.ComponentModel;

namespace Portcullis.Configuration;

internal sealed record AuditOptions
{
    [Description("The audit log file (hash-chained JSON lines), relative to the config file; setting it turns the audit log on. Its directory must exist.")]
    [FilePath]
    public string? Path { get; init; }

    [Description("Rotate before the file would grow beyond this size (the chain continues in the new file). Default 100MiB.")]
    public ByteSize MaxSize { get; init; } = ByteSize.FromMiB(100);

    [Description("Rotated files kept besides the current one (FILE.1 newest ... FILE.maxFiles); the oldest is deleted. Default 10.")]
    public int MaxFiles { get; init; } = 10;
}
