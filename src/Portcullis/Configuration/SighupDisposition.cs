using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace Portcullis.Configuration;

/// <summary>
/// A process started under <c>nohup</c> (or by a supervisor that ignores SIGHUP) inherits SIGHUP's
/// "ignore" disposition, and .NET's <see cref="PosixSignalRegistration"/> deliberately leaves ignored
/// signals ignored (System.Native's InstallSignalHandler: "We respect ignored signals"), so
/// <c>kill -HUP</c> would silently do nothing. The gateway's own SIGHUP means "reload", never
/// "terminate", so it is safe to put the default disposition back right before registering: the
/// registration then installs its handler, and a hangup reloads instead of stopping the process —
/// which is what nohup was for. .NET has no API to change a disposition, hence one call to libc's
/// signal(2), Linux only (where /proc tells whether SIGHUP is ignored without touching it).
/// </summary>
internal static partial class SighupDisposition
{
    private const int Sighup = 1;
    private static readonly nint SigDfl = 0;

    /// <summary>Restores the default disposition of SIGHUP when it was inherited as ignored; logs what it did.</summary>
    public static void RestoreIfIgnored(ILogger logger)
    {
        if (!OperatingSystem.IsLinux() || !IsIgnored()) return;
        try
        {
            _ = NativeMethods.signal(Sighup, SigDfl);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            Log.CannotRestore(logger, ex.Message);
            return;
        }

        if (IsIgnored())
        {
            Log.CannotRestore(logger, "the disposition is still 'ignore'");
            return;
        }

        Log.Restored(logger);
    }

    /// <summary>Whether SIGHUP is ignored, from the SigIgn mask in /proc/self/status (bit 0 is signal 1).</summary>
    internal static bool IsIgnored()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (!line.StartsWith("SigIgn:", StringComparison.Ordinal)) continue;
                return ulong.TryParse(line.AsSpan(7).Trim(), System.Globalization.NumberStyles.HexNumber, null, out var mask) && (mask & (1UL << (Sighup - 1))) != 0;
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return false;
    }

    private static class NativeMethods
    {
        // Blittable arguments, no marshalling: signal(int, sighandler_t) returns the previous handler.
        [DllImport("libc", EntryPoint = "signal", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
#pragma warning disable SYSLIB1054 // LibraryImport needs unsafe code for nothing here: both arguments are blittable.
        public static extern nint signal(int signum, nint handler);
#pragma warning restore SYSLIB1054
    }

    private static partial class Log
    {
        [LoggerMessage(1006, LogLevel.Information, "SIGHUP was ignored when the gateway started (inherited, e.g. from nohup); restored so that kill -HUP reloads the configuration (a hangup reloads, it does not stop the gateway)")]
        public static partial void Restored(ILogger logger);

        [LoggerMessage(1007, LogLevel.Warning, "SIGHUP is ignored by this process (inherited, e.g. from nohup) and could not be restored ({Problem}): kill -HUP will not reload; use POST /admin/reload or edit the file")]
        public static partial void CannotRestore(ILogger logger, string problem);
    }
}
