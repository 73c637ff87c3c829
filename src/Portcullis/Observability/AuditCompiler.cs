using Portcullis.Configuration;

namespace Portcullis.Observability;

/// <summary>Validation and compilation of `observability.audit`.</summary>
internal static class AuditCompiler
{
    private const long MinAuditFileSize = 4096;

    internal static CompiledAudit? Compile(CompileContext context, AuditOptions audit, AccessLogOptions accessLog)
    {
        const string path = "observability.audit";
        if (string.IsNullOrWhiteSpace(audit.Path))
        {
            foreach (var key in (string[])["maxSize", "maxFiles"])
            {
                if (context.Loaded.Locations.Has($"{path}.{key}")) context.Warning($"{path}.{key}", "the audit log is off without a path", "add path: logs/audit.log");
            }

            if (audit.Path is not null) context.Error(path + ".path", "path cannot be empty", "e.g. path: logs/audit.log, or remove audit to turn it off");
            return null;
        }

        var ok = true;
        if (audit.MaxSize.Bytes < MinAuditFileSize)
        {
            context.Error(path + ".maxSize", $"maxSize must be at least 4KiB (it is {audit.MaxSize})", "e.g. maxSize: 100MiB");
            ok = false;
        }

        if (audit.MaxFiles < 1)
        {
            context.Error(path + ".maxFiles", $"maxFiles must be at least 1 (it is {audit.MaxFiles})", "rotation keeps the file before the current one, so the chain can be verified across it");
            ok = false;
        }

        var file = context.Loaded.Resolve(audit.Path);
        var directory = Path.GetDirectoryName(file);
        if (Directory.Exists(file))
        {
            context.Error(path + ".path", $"'{audit.Path}' is a directory", "name a file, e.g. logs/audit.log");
            ok = false;
        }
        else if (string.IsNullOrEmpty(directory) || !Directory.Exists(directory))
        {
            context.Error(path + ".path", $"the directory of '{audit.Path}' does not exist ({directory})", "create it first; the gateway creates only the file");
            ok = false;
        }

        if (accessLog.Enabled && accessLog.Target == AccessLogTarget.File && accessLog.Path is not null && context.Loaded.Resolve(accessLog.Path) == file)
        {
            context.Error(path + ".path", "the audit log cannot share its file with the access log", "e.g. path: logs/audit.log");
            ok = false;
        }

        return ok ? new CompiledAudit { Path = file, MaxSize = audit.MaxSize.Bytes, MaxFiles = audit.MaxFiles } : null;
    }
}
