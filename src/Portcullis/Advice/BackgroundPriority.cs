using System.Runtime.InteropServices;

namespace Portcullis.Advice;

/// <summary>
/// Runs the advisor's threads below the request path. <see cref="Thread.Priority"/> is ignored by .NET on Linux,
/// so there the calling thread's nice value is raised (setpriority on its thread id: Linux schedules threads
/// individually, and raising one's own niceness needs no privilege). At nice 10 the scheduler gives the thread about
/// a tenth of a busy core's share next to a nice-0 request thread; on an idle machine it still runs at full speed.
/// Every DuckDB query of the advisor runs on this thread (the store's DuckDB has no more worker threads than
/// half the cores: <see cref="Analytics.AnalyticsDatabase"/>), so the queries are niced with it.
/// </summary>
internal static class BackgroundPriority
{
    /// <summary>The nice value of the advisor's threads.</summary>
    public const int Nice = 10;

    /// <summary>Lowers the calling thread's priority; false when the platform refused (it runs at normal priority then).</summary>
    public static bool LowerCurrentThread()
    {
        try
        {
            Thread.CurrentThread.Priority = ThreadPriority.BelowNormal; // Windows and macOS
        }
        catch (Exception ex) when (ex is ThreadStateException or PlatformNotSupportedException)
        {
        }

        if (!OperatingSystem.IsLinux()) return true;
        try
        {
            return NativeMethods.setpriority(PrioProcess, NativeMethods.gettid(), Nice) == 0;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>The calling thread's nice value (Linux; null elsewhere or when it cannot be read): for tests and the bench.</summary>
    public static int? CurrentNice()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            Marshal.SetLastPInvokeError(0);
            var nice = NativeMethods.getpriority(PrioProcess, NativeMethods.gettid());
            return nice == -1 && Marshal.GetLastPInvokeError() != 0 ? null : nice;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    private const int PrioProcess = 0; // with a thread id as "who", Linux applies it to that thread only

    private static class NativeMethods
    {
#pragma warning disable SYSLIB1054 // LibraryImport needs unsafe code for nothing here: every argument is blittable.
        [DllImport("libc", EntryPoint = "setpriority", ExactSpelling = true, SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int setpriority(int which, int who, int prio);

        [DllImport("libc", EntryPoint = "getpriority", ExactSpelling = true, SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int getpriority(int which, int who);

        [DllImport("libc", EntryPoint = "gettid", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int gettid();
#pragma warning restore SYSLIB1054
    }
}
