using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Files;

namespace Portcullis.Tests.Files;

/// <summary>
/// The one stat-poll + debounce loop (issue 15, item 5) behind config reloads, listener certificates and
/// upstream TLS files. Timers run on a <see cref="FakeTimeProvider"/>; the files are real.
/// </summary>
public sealed class FileChangeWatcherTests : IDisposable
{
    private static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(250);
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-watcher-");
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 8, 0, 0, TimeSpan.Zero));

    public void Dispose() => _directory.Delete(recursive: true);

    [Fact]
    public void A_file_replaced_after_its_owner_read_it_is_noticed_by_the_first_poll_once_after_the_debounce()
    {
        var file = Path.Combine(_directory.FullName, "cert.pem");
        File.WriteAllText(file, "first");
        var read = FileStamp.Of(file); // the owner stamps, then reads "first" ...
        File.WriteAllText(file, "second, longer"); // ... and the file changes before the watcher exists.
        var calls = 0;
        using var watcher = new FileChangeWatcher([file], Debounce, _time, () => Interlocked.Increment(ref calls), NullLogger.Instance, new Dictionary<string, FileStamp> { [file] = read });

        _time.Advance(FileChangeWatcher.PollInterval);
        Assert.Equal(0, calls); // seen, but the burst may go on: nothing before the debounce
        _time.Advance(Debounce);
        Assert.Equal(1, calls);

        // Nothing changed since: later polls stay quiet.
        for (var i = 0; i < 3; i++) _time.Advance(FileChangeWatcher.PollInterval + Debounce);
        Assert.Equal(1, calls);
    }

    [Fact]
    public void Without_known_versions_the_files_as_they_are_now_are_the_baseline()
    {
        var file = Path.Combine(_directory.FullName, "portcullis.yaml");
        File.WriteAllText(file, "a: 1");
        var calls = 0;
        using var watcher = new FileChangeWatcher([file], Debounce, _time, () => Interlocked.Increment(ref calls), NullLogger.Instance);

        for (var i = 0; i < 3; i++) _time.Advance(FileChangeWatcher.PollInterval + Debounce);
        Assert.Equal(0, calls);
    }
}
