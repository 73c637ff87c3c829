using Portcullis.Configuration;

namespace Portcullis.Tests.Analytics;

/// <summary>Validation of the `analytics` section: every bad value refused at its file:line:column with a hint.</summary>
public sealed class AnalyticsConfigTests() : ConfigBuildTestBase("portcullis-analytics-config-")
{
    // A listener after the test's lines, so the positions asserted are those of the YAML as written.
    private protected override BuildResult Build(string yaml) => base.Build(yaml.TrimEnd() + "\nlisteners: [{ name: public, address: 127.0.0.1:8080 }]\n");

    [Fact]
    public void Off_without_a_path_and_compiled_with_one()
    {
        var off = Build("routes: []\n");
        Assert.True(off.Succeeded, Dump(off));
        Assert.Null(off.Snapshot!.Analytics);

        Directory.CreateDirectory(Path.Combine(_directory.FullName, "data"));
        var on = Build("""
            analytics:
              path: data/a.duckdb
              flushInterval: 2s
              retention: 7d
              maxSize: 10MiB
              samples: { successRate: 0.5, queueSize: 100, rawPaths: true }
              export: { path: parquet, instance: gw-1 }
            routes:
              - { name: orders, match: { pathPrefix: /orders/ }, respond: { status: 200 } }
              - { name: one, match: { path: "/one/{id}" }, respond: { status: 200 } }
            """);
        Assert.True(on.Succeeded, Dump(on));
        var analytics = on.Snapshot!.Analytics!;
        Assert.Equal(Path.Combine(_directory.FullName, "data", "a.duckdb"), analytics.Path);
        Assert.Equal(TimeSpan.FromSeconds(2), analytics.FlushInterval);
        Assert.Equal(TimeSpan.FromDays(7), analytics.Retention);
        Assert.Equal(10L << 20, analytics.MaxSize);
        Assert.Equal((0.5, 100, true), (analytics.SuccessRate, analytics.QueueSize, analytics.RawPaths));
        Assert.Equal(Path.Combine(_directory.FullName, "parquet"), analytics.ExportPath);
        Assert.Null(analytics.FleetPath);
        Assert.Equal("/orders/{**rest}", analytics.RouteTemplates["orders"]);
        Assert.Equal("/one/{id}", analytics.RouteTemplates["one"]);
    }

    [Fact]
    public void The_fleet_path_is_compiled_with_the_store_and_a_glob_in_it_refuses_the_config()
    {
        Directory.CreateDirectory(Path.Combine(_directory.FullName, "data"));
        var fleet = Build("analytics: { path: data/a.duckdb, fleetPath: shared/fleet }\nroutes: []\n");
        Assert.True(fleet.Succeeded, Dump(fleet));
        Assert.Equal(Path.Combine(_directory.FullName, "shared", "fleet"), fleet.Snapshot!.Analytics!.FleetPath);

        var glob = Build("analytics: { path: data/a.duckdb, fleetPath: \"shared/*\" }\nroutes: []\n");
        Assert.False(glob.Succeeded);
        AssertAt(ErrorContaining(glob, "fleetPath cannot contain '*'"), 1, 46);
    }

    [Fact]
    public void Bad_values_are_refused_at_their_positions()
    {
        var result = Build("""
            analytics:
              path: missing-dir/a.duckdb
              flushInterval: 0s
              retention: 30m
              maxSize: 512KiB
              samples:
                successRate: 1.5
                queueSize: 0
              export: { path: "" }
            routes: []
            """);
        AssertAt(ErrorContaining(result, "directory of 'missing-dir/a.duckdb' does not exist"), 2, 9);
        AssertAt(ErrorContaining(result, "flushInterval must be above 0 and at most 1h"), 3, 18);
        AssertAt(ErrorContaining(result, "retention must be at least 1h"), 4, 14);
        AssertAt(ErrorContaining(result, "maxSize must be at least 1MiB"), 5, 12);
        AssertAt(ErrorContaining(result, "successRate must be between 0 and 1"), 7, 18);
        AssertAt(ErrorContaining(result, "queueSize must be at least 1"), 8, 16);
        AssertAt(ErrorContaining(result, "export.path cannot be empty"), 9, 19);
        Assert.All(result.Errors, e => Assert.False(string.IsNullOrEmpty(e.Hint), $"no hint: {e}"));
    }

    [Fact]
    public void Flush_interval_above_an_hour_empty_path_and_a_directory_are_refused()
    {
        AssertAt(ErrorContaining(Build("analytics: { path: a.duckdb, flushInterval: 2h }\nroutes: []\n"), "flushInterval must be above 0 and at most 1h"), 1, 45);
        AssertAt(ErrorContaining(Build("analytics: { path: \"\" }\nroutes: []\n"), "path cannot be empty"), 1, 20);
        Directory.CreateDirectory(Path.Combine(_directory.FullName, "store"));
        AssertAt(ErrorContaining(Build("analytics: { path: store }\nroutes: []\n"), "'store' is a directory"), 1, 20);
    }

    [Fact]
    public void Compaction_tiers_are_compiled_and_bad_ones_refused_at_their_positions()
    {
        Directory.CreateDirectory(Path.Combine(_directory.FullName, "data"));
        var defaults = Build("analytics: { path: data/a.duckdb }\nroutes: []\n");
        Assert.True(defaults.Succeeded, Dump(defaults));
        Assert.Equal((TimeSpan.FromHours(48), TimeSpan.FromDays(7)), (defaults.Snapshot!.Analytics!.HourlyAfter, defaults.Snapshot.Analytics.DailyAfter));
        var set = Build("analytics: { path: data/a.duckdb, compaction: { hourlyAfter: 6h, dailyAfter: 2d } }\nroutes: []\n");
        Assert.True(set.Succeeded, Dump(set));
        Assert.Equal((TimeSpan.FromHours(6), TimeSpan.FromDays(2)), (set.Snapshot!.Analytics!.HourlyAfter, set.Snapshot.Analytics.DailyAfter));

        AssertAt(ErrorContaining(Build("analytics: { path: data/a.duckdb, compaction: { hourlyAfter: 1h } }\nroutes: []\n"), "hourlyAfter must be at least 2h"), 1, 62);
        AssertAt(ErrorContaining(Build("analytics: { path: data/a.duckdb, compaction: { hourlyAfter: 3d, dailyAfter: 2d } }\nroutes: []\n"), "dailyAfter must be longer than hourlyAfter"), 1, 78);
    }

    [Fact]
    public void A_directory_the_gateway_cannot_write_is_refused()
    {
        // /sys refuses new files to every user, root included (mode bits would not stop root).
        Assert.True(Directory.Exists("/sys"), "this test needs Linux's /sys");
        AssertAt(ErrorContaining(Build("analytics: { path: /sys/a.duckdb }\nroutes: []\n"), "is not writable"), 1, 20);
    }

    [Fact]
    public void Unknown_keys_are_refused_by_the_binder_with_their_position()
    {
        var result = Build("analytics:\n  path: a.duckdb\n  flushIntervall: 5s\n  samples: { sucessRate: 1 }\nroutes: []\n");
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "flushIntervall"), 3, 3);
        AssertAt(ErrorContaining(result, "sucessRate"), 4, 14);
    }

    [Fact]
    public void Changing_the_path_or_the_queue_size_needs_a_restart_other_keys_apply()
    {
        Directory.CreateDirectory(Path.Combine(_directory.FullName, "data"));
        var before = Build("analytics: { path: data/a.duckdb }\nroutes: []\n").Snapshot!;
        var moved = Build("analytics: { path: data/b.duckdb }\nroutes: []\n").Snapshot!;
        var queue = Build("analytics: { path: data/a.duckdb, samples: { queueSize: 5 } }\nroutes: []\n").Snapshot!;
        var tuned = Build("analytics: { path: data/a.duckdb, flushInterval: 1s, retention: 2d, samples: { successRate: 0.5 } }\nroutes: []\n").Snapshot!;
        var off = Build("routes: []\n").Snapshot!;

        Assert.Equal(["analytics.path"], ConfigDiff.PendingRestart(before, moved).Select(p => p.Setting));
        Assert.Equal(["analytics.path"], ConfigDiff.PendingRestart(before, off).Select(p => p.Setting));
        Assert.Equal(["analytics.samples.queueSize"], ConfigDiff.PendingRestart(before, queue).Select(p => p.Setting));
        Assert.Empty(ConfigDiff.PendingRestart(before, tuned));
    }
}
