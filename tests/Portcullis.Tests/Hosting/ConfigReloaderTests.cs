using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Hosting;

/// <summary>
/// The reloader's file triggers (issue 14, item 4): one write is seen by the watcher and by the stat poll,
/// and must be reloaded — and, when invalid, rejected and counted — once. Real files and a real
/// FileSystemWatcher; the debounce and poll timers run on a <see cref="FakeTimeProvider"/>, so the test
/// decides when each path fires.
/// </summary>
public sealed class ConfigReloaderTests : IDisposable
{
    private const string Valid = """
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        routes:
          - { name: orders, match: { pathPrefix: /orders }, cluster: api }
        clusters:
          api: { destinations: ["http://127.0.0.1:9"] }
        """;

    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-reloader-");
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 8, 0, 0, TimeSpan.Zero));

    public void Dispose() => _directory.Delete(recursive: true);

    private string ConfigPath => Path.Combine(_directory.FullName, "portcullis.yaml");

    [Fact]
    public async Task InvalidFileWrittenOnce_IsRejectedOnce_ThoughWatcherAndPollBothSeeTheWrite()
    {
        using var reloader = await StartAsync();

        File.WriteAllText(ConfigPath, Valid.Replace("cluster: api", "cluster: missing", StringComparison.Ordinal));

        // The poll notices the write (and the watcher does too, whenever inotify delivers it); the
        // debounce then starts the first reload, which builds on the thread pool. A poll ticking while
        // that build runs is the case that rejected the same write a second time.
        _time.Advance(TimeSpan.FromSeconds(2));
        _time.Advance(TimeSpan.FromMilliseconds(150));
        _time.Advance(TimeSpan.FromSeconds(2));
        _time.Advance(TimeSpan.FromMilliseconds(150));
        await Eventually.TrueAsync(() => reloader.RejectedCount >= 1, "the first rejection");

        // More poll intervals, with any watcher event delivered by now: nothing new to reload.
        for (var i = 0; i < 3; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(2));
            _time.Advance(TimeSpan.FromMilliseconds(150));
        }

        // A barrier: the gate serves waiters in order, so every reload started above has finished when
        // this explicit one (which always reloads, and is rejected too) returns.
        var barrier = await reloader.ReloadAsync("test", CancellationToken.None);
        Assert.False(barrier.Applied);
        Assert.True(reloader.RejectedCount == 2, $"one write rejected {reloader.RejectedCount - 1} time(s), expected once");
        Assert.Equal(0, reloader.AppliedCount);

        // A later valid write is applied once.
        File.WriteAllText(ConfigPath, Valid.Replace("/orders", "/orders2", StringComparison.Ordinal));
        _time.Advance(TimeSpan.FromSeconds(2));
        _time.Advance(TimeSpan.FromMilliseconds(150));
        await Eventually.TrueAsync(() => reloader.AppliedCount >= 1, "the valid write to be applied");
        _time.Advance(TimeSpan.FromSeconds(2));
        _time.Advance(TimeSpan.FromMilliseconds(150));
        var unchanged = await reloader.ReloadAsync("test", CancellationToken.None);
        Assert.True(unchanged.Applied);
        Assert.False(unchanged.Changed);
        Assert.Equal(2, reloader.RejectedCount);
        Assert.Equal(2, reloader.AppliedCount); // the file change, then the explicit reload
    }

    private async Task<ConfigReloader> StartAsync()
    {
        File.WriteAllText(ConfigPath, Valid);
        var result = new SnapshotBuilder(_ => null).Build(ConfigPath);
        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        var reloader = new ConfigReloader(new SnapshotStore(result.Snapshot!), new SnapshotBuilder(_ => null), NullLogger<ConfigReloader>.Instance, _time);
        await reloader.StartAsync(CancellationToken.None);
        return reloader;
    }
}
