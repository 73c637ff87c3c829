using System.Collections.Frozen;
using Microsoft.Extensions.Logging;

namespace Portcullis.Hosting;

/// <summary>
/// Calls back (once per burst of writes) when any of a set of files is written, created, deleted or
/// renamed, using one FileSystemWatcher per directory. Used for the config file and the files it names,
/// certificates and CA bundles. Watchers are a convenience, never the only mechanism: the owners also
/// poll <see cref="FileStamp"/>s, because watchers miss symlink swaps (Kubernetes ConfigMaps and Secrets)
/// and the OS can refuse them (Linux caps inotify instances per user, 128 by default) — then this logs
/// once and the poll alone notices changes.
/// </summary>
internal sealed partial class FileChangeWatcher : IDisposable
{
    private readonly FrozenSet<string> _files;
    private readonly TimeSpan _debounce;
    private readonly TimeProvider _time;
    private readonly Action _onChange;
    private readonly List<FileSystemWatcher> _watchers = [];
    private readonly Lock _lock = new();
    private ITimer? _debounceTimer;
    private bool _disposed;

    public FileChangeWatcher(IEnumerable<string> files, TimeSpan debounce, TimeProvider time, Action onChange, ILogger logger)
    {
        _files = files.Select(Path.GetFullPath).ToFrozenSet(StringComparer.Ordinal);
        _debounce = debounce;
        _time = time;
        _onChange = onChange;
        foreach (var directory in _files.Select(Path.GetDirectoryName).Distinct(StringComparer.Ordinal))
        {
            if (directory is null || !Directory.Exists(directory)) continue;
            var watcher = new FileSystemWatcher(directory)
            {
                NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
            };
            watcher.Changed += OnFileEvent;
            watcher.Created += OnFileEvent;
            watcher.Deleted += OnFileEvent;
            watcher.Renamed += OnFileEvent;
            try
            {
                watcher.EnableRaisingEvents = true;
                _watchers.Add(watcher);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                watcher.Dispose();
                Log.WatchUnavailable(logger, directory, ex.Message);
            }
        }
    }

    /// <summary>The watched files (full paths).</summary>
    public FrozenSet<string> Files => _files;

    private void OnFileEvent(object sender, FileSystemEventArgs e)
    {
        if (!_files.Contains(e.FullPath) && !(e is RenamedEventArgs r && _files.Contains(r.OldFullPath))) return;
        lock (_lock)
        {
            if (_disposed) return;
            // Editors and deploy tools write in several steps (and a certificate before its key): act once the burst is over.
            _debounceTimer?.Dispose();
            _debounceTimer = _time.CreateTimer(static state => ((FileChangeWatcher)state!)._onChange(), this, _debounce, Timeout.InfiniteTimeSpan);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var watcher in _watchers) watcher.Dispose();
            _watchers.Clear();
            _debounceTimer?.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1090, LogLevel.Warning, "Cannot watch {Directory} for changes ({Problem}); its files are still checked every few seconds")]
        public static partial void WatchUnavailable(ILogger logger, string directory, string problem);
    }
}

/// <summary>What identifies a file's version: the final target of any symlinks, its write time and size.</summary>
internal readonly record struct FileStamp(string Target, DateTime Written, long Length)
{
    public static FileStamp Of(string file)
    {
        try
        {
            FileSystemInfo info = new FileInfo(file);
            if (info.LinkTarget is not null) info = info.ResolveLinkTarget(returnFinalTarget: true) ?? info;
            return info.Exists && info is FileInfo f ? new FileStamp(f.FullName, f.LastWriteTimeUtc, f.Length) : new FileStamp(file, default, -1);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new FileStamp(file, default, -1);
        }
    }
}
