using System.Collections.Frozen;
using System.Globalization;
using Portcullis.Observability;

namespace Portcullis.Configuration;

/// <summary>Validation and compilation of the observability section (request ids, access log).</summary>
public sealed partial class SnapshotBuilder
{
    private const long MinAccessLogFileSize = 1024;

    private static CompiledObservability CompileObservability(CompileContext context)
    {
        var options = context.Config.Observability;
        var log = options.AccessLog;
        const string path = "observability.accessLog";

        var fields = AccessLogFields.All;
        if (log.Fields.Count > 0)
        {
            fields = AccessLogFields.None;
            for (var i = 0; i < log.Fields.Count; i++) fields |= Field(context, log.Fields[i], $"{path}.fields[{i}]");
        }

        for (var i = 0; i < log.Exclude.Count; i++) fields &= ~Field(context, log.Exclude[i], $"{path}.exclude[{i}]");

        if (log.QueueSize < 1) context.Error(path + ".queueSize", $"queueSize must be at least 1 (it is {log.QueueSize})", "e.g. queueSize: 10000");
        if (log.FlushInterval < TimeSpan.Zero || log.FlushInterval > TimeSpan.FromSeconds(10))
        {
            context.Error(path + ".flushInterval", $"flushInterval must be between 0 and 10s (it is {log.FlushInterval})", "e.g. flushInterval: 100ms; 0 writes every line at once");
        }
        if (double.IsNaN(log.SampleSuccesses) || log.SampleSuccesses is < 0 or > 1)
        {
            context.Error(path + ".sampleSuccesses", $"sampleSuccesses must be between 0 and 1 (it is {log.SampleSuccesses.ToString(CultureInfo.InvariantCulture)})", "1 logs every success, 0.1 one in ten; errors are always logged");
        }

        string? file = null;
        if (log.Target == AccessLogTarget.File)
        {
            if (string.IsNullOrWhiteSpace(log.Path))
            {
                context.Error(context.Loaded.Locations.Has(path + ".path") ? path + ".path" : path + ".target", "target: file needs a path", "e.g. path: logs/access.log");
            }
            else
            {
                file = context.Loaded.Resolve(log.Path);
                var directory = Path.GetDirectoryName(file);
                if (Directory.Exists(file))
                {
                    context.Error(path + ".path", $"'{log.Path}' is a directory", "name a file, e.g. logs/access.log");
                    file = null;
                }
                else if (string.IsNullOrEmpty(directory) || !Directory.Exists(directory))
                {
                    context.Error(path + ".path", $"the directory of '{log.Path}' does not exist ({directory})", "create it first; the gateway creates only the file");
                    file = null;
                }
            }

            if (log.MaxSize.Bytes < MinAccessLogFileSize) context.Error(path + ".maxSize", $"maxSize must be at least 1KiB (it is {log.MaxSize})", "e.g. maxSize: 100MiB");
            if (log.MaxFiles < 0) context.Error(path + ".maxFiles", $"maxFiles cannot be negative (it is {log.MaxFiles})", "0 keeps no rotated file, 5 keeps five");
        }
        else
        {
            foreach (var key in (string[])["path", "maxSize", "maxFiles"])
            {
                if (context.Loaded.Locations.Has($"{path}.{key}")) context.Warning($"{path}.{key}", $"{key} applies to target: file only", "set target: file, or remove it");
            }
        }

        if (log.Enabled && fields == AccessLogFields.None) context.Warning(path + ".fields", "no field is left to write", "list fields, or remove exclude");
        if (!log.Enabled && context.Loaded.Locations.Has(path) && !context.Loaded.Locations.Has(path + ".enabled"))
        {
            context.Warning(path, "the access log is configured but not enabled", "add enabled: true");
        }

        ValidateTelemetry(context);
        var redacted = new HashSet<string>(CompiledAccessLog.SecretParameters, StringComparer.OrdinalIgnoreCase);
        if (context.Config.Identity.ApiKeys?.QueryParameter is { Length: > 0 } keyParameter) redacted.Add(keyParameter);

        return new CompiledObservability
        {
            RequestIdTrust = options.RequestId.TrustInbound,
            Audit = CompileAudit(context),
            AccessLog = !log.Enabled ? null : new CompiledAccessLog
            {
                Target = log.Target,
                Path = file,
                MaxSize = log.MaxSize.Bytes,
                MaxFiles = log.MaxFiles,
                Fields = fields,
                SampleSuccesses = log.SampleSuccesses,
                RedactQuery = log.RedactQuery,
                QueueSize = log.QueueSize,
                FlushInterval = log.FlushInterval,
                AlwaysRedacted = redacted.ToFrozenSet(StringComparer.OrdinalIgnoreCase),
            },
        };
    }

    private static AccessLogFields Field(CompileContext context, string name, string at)
    {
        if (AccessLogFieldNames.ByName.TryGetValue(name, out var field)) return field;
        var suggestion = YamlConfigBinder.Suggest(name, AccessLogFieldNames.ByName.Keys);
        context.Error(at, $"unknown access-log field '{name}'", suggestion is not null ? $"did you mean '{suggestion}'?" : "see docs/observability.md for the field list");
        return AccessLogFields.None;
    }
}
