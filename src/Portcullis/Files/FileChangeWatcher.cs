using System.Collections.Frozen;
using Microsoft.Extensions.Logging;

namespace Portcullis.Files;

/// <summary>
/// Calls back (once per burst of changes) when any of a set of files is written, created, deleted, renamed
/// or swapped: the one stat-poll + debounce loop behind config reloads, listener certificates and upstream
/// TLS files. Two ways to notice, one debounce: a FileSystemWatcher per directory (prompt), and a stat poll
/// every <see cref="PollInterval"/> comparing <see cref="FileStamp"/>s, because watchers miss symlink swaps
/// (Kubernetes ConfigMaps and Secrets) and the OS can refuse them (Linux caps inotify instances per user,
/// 128 by default) — then this logs once and the poll alone notices changes. The callback decides itself
/// what changed (it keeps its own stamps, taken before it reads), so an extra call is harmless.
/// </summary>
internal sealed partial class FileChangeWatcher : IDisposable
{
    /// <summary>How often files are stat-ed.</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(2);

    private readonly FrozenSet<string> _files;
    private readonly TimeSpan _debounce;
    private readonly TimeProvider _time;
    private readonly Action _onChange;
    private readonly List<FileSystemWatcher> _watchers = [];
    private readonly Lock _lock = new();
    private readonly ITimer _pollTimer;
    private Dictionary<string, FileStamp> _stamps;
    private ITimer? _debounceTimer;
    private bool _disposed;

    /// <param name="known">
    /// The versions the owner has loaded (stamped before reading); a file missing here is stamped now. The
    /// poll reports any difference, so a file replaced between the owner's read and this call is not missed.
    /// </param>
    public FileChangeWatcher(IEnumerable<string> files, TimeSpan debounce, TimeProvider time, Action onChange, ILogger logger, IReadOnlyDictionary<string, FileStamp>? known = null)
    {
        _files = files.Select(Path.GetFullPath).ToFrozenSet(StringComparer.Ordinal);
        _debounce = debounce;
        _time = time;
        _onChange = onChange;
        _stamps = _files.ToDictionary(f => f, f => known is not null && known.TryGetValue(f, out var stamp) ? stamp : FileStamp.Of(f), StringComparer.Ordinal);
        // A watched folder (a config include of conf.d/) is watched itself too: a file added to it is a change.
        foreach (var directory in _files.Select(Path.GetDirectoryName).Concat(_files.Where(Directory.Exists)).Distinct(StringComparer.Ordinal))
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

        _pollTimer = time.CreateTimer(static state => ((FileChangeWatcher)state!).Poll(), this, PollInterval, PollInterval);
    }

    /// <summary>The watched files (full paths).</summary>
    public FrozenSet<string> Files => _files;

    private void OnFileEvent(object sender, FileSystemEventArgs e)
    {
        if (!_files.Contains(e.FullPath) && !(e is RenamedEventArgs r && _files.Contains(r.OldFullPath))
            && !(Path.GetDirectoryName(e.FullPath) is { } folder && _files.Contains(folder))) return;
        Schedule();
    }

    private void Poll()
    {
        Dictionary<string, FileStamp> stamps;
        lock (_lock) stamps = _stamps;
        var now = stamps.ToDictionary(p => p.Key, p => FileStamp.Of(p.Key), StringComparer.Ordinal);
        if (now.All(p => stamps[p.Key] == p.Value)) return;
        lock (_lock) _stamps = now;
        Schedule();
    }

    private void Schedule()
    {
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
            _pollTimer.Dispose();
            _debounceTimer?.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1090, LogLevel.Warning, "Cannot watch {Directory} for changes ({Problem}); its files are still checked every few seconds")]
        public static partial void WatchUnavailable(ILogger logger, string directory, string problem);
    }
}

/// <summary>
/// What identifies a file's version: the final target of any symlinks, its write time and size. For a folder:
/// its write time (changed when an entry is added, removed or renamed) and its number of entries.
/// </summary>
internal readonly record struct FileStamp(string Target, DateTime Written, long Length)
{
    public static FileStamp Of(string file)
    {
        try
        {
            if (Directory.Exists(file))
            {
                var folder = new DirectoryInfo(file);
                if (folder.LinkTarget is not null && folder.ResolveLinkTarget(returnFinalTarget: true) is DirectoryInfo target) folder = target;
                return new FileStamp(folder.FullName, folder.LastWriteTimeUtc, folder.EnumerateFileSystemInfos().Count());
            }

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
