using System.Collections.Frozen;
using System.Globalization;
using Portcullis.Configuration;

namespace Portcullis.Observability;

/// <summary>Validation and compilation of the observability section (request ids, access log; audit, metrics and tracing through their compilers).</summary>
internal static class ObservabilityCompiler
{
    private const long MinAccessLogFileSize = 1024;
    private const string AccessLogPath = "observability.accessLog";

    /// <param name="apiKeyQueryParameter">identity.apiKeys.queryParameter: always redacted from logged query strings.</param>
    internal static CompiledObservability Compile(CompileContext context, ObservabilityOptions options, string? apiKeyQueryParameter)
    {
        var log = options.AccessLog;
        var fields = CompileFields(context, log);
        ValidateQueue(context, log);
        var file = CompileTarget(context, log);
        if (log.Enabled && fields == AccessLogFields.None) context.Warning(AccessLogPath + ".fields", "no field is left to write", "list fields, or remove exclude");
        if (!log.Enabled && context.Loaded.Locations.Has(AccessLogPath) && !context.Loaded.Locations.Has(AccessLogPath + ".enabled"))
        {
            context.Warning(AccessLogPath, "the access log is configured but not enabled", "add enabled: true");
        }

        TelemetryCompiler.Validate(context, options.Metrics, options.Tracing);
        var redacted = new HashSet<string>(CompiledAccessLog.SecretParameters, StringComparer.OrdinalIgnoreCase);
        if (apiKeyQueryParameter is { Length: > 0 }) redacted.Add(apiKeyQueryParameter);

        return new CompiledObservability
        {
            RequestIdTrust = options.RequestId.TrustInbound,
            Audit = AuditCompiler.Compile(context, options.Audit, log),
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

    private static AccessLogFields CompileFields(CompileContext context, AccessLogOptions log)
    {
        var fields = AccessLogFields.All;
        if (log.Fields.Count > 0)
        {
            fields = AccessLogFields.None;
            for (var i = 0; i < log.Fields.Count; i++) fields |= Field(context, log.Fields[i], $"{AccessLogPath}.fields[{i}]");
        }

        for (var i = 0; i < log.Exclude.Count; i++) fields &= ~Field(context, log.Exclude[i], $"{AccessLogPath}.exclude[{i}]");
        return fields;
    }

    private static void ValidateQueue(CompileContext context, AccessLogOptions log)
    {
        const string path = AccessLogPath;
        if (log.QueueSize < 1) context.Error(path + ".queueSize", $"queueSize must be at least 1 (it is {log.QueueSize})", "e.g. queueSize: 10000");
        if (log.FlushInterval < TimeSpan.Zero || log.FlushInterval > TimeSpan.FromSeconds(10))
        {
            context.Error(path + ".flushInterval", $"flushInterval must be between 0 and 10s (it is {log.FlushInterval})", "e.g. flushInterval: 100ms; 0 writes every line at once");
        }
        if (double.IsNaN(log.SampleSuccesses) || log.SampleSuccesses is < 0 or > 1)
        {
            context.Error(path + ".sampleSuccesses", $"sampleSuccesses must be between 0 and 1 (it is {log.SampleSuccesses.ToString(CultureInfo.InvariantCulture)})", "1 logs every success, 0.1 one in ten; errors are always logged");
        }
    }

    /// <summary>The access log file (null unless target: file with a usable path), its size limits checked.</summary>
    private static string? CompileTarget(CompileContext context, AccessLogOptions log)
    {
        const string path = AccessLogPath;
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

        return file;
    }

    private static AccessLogFields Field(CompileContext context, string name, string at)
    {
        if (AccessLogFieldNames.ByName.TryGetValue(name, out var field)) return field;
        var suggestion = YamlConfigBinder.Suggest(name, AccessLogFieldNames.ByName.Keys);
        context.Error(at, $"unknown access-log field '{name}'", suggestion is not null ? $"did you mean '{suggestion}'?" : "see docs/observability.md for the field list");
        return AccessLogFields.None;
    }
}
