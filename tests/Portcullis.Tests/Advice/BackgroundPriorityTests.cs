using Portcullis.Advice;
using Portcullis.Analytics;

namespace Portcullis.Tests.Advice;

/// <summary>The advisor runs below the request path: its threads niced (Linux), the store's DuckDB bounded to half the cores.</summary>
public sealed class BackgroundPriorityTests
{
    [Fact]
    public void LoweringAThreadNicesThatThreadOnly()
    {
        if (!OperatingSystem.IsLinux()) return;
        var before = BackgroundPriority.CurrentNice();
        int? lowered = null;
        var ok = false;
        var thread = new Thread(() =>
        {
            ok = BackgroundPriority.LowerCurrentThread();
            lowered = BackgroundPriority.CurrentNice();
        });
        thread.Start();
        thread.Join();

        Assert.NotNull(before);
        // Raising one's niceness needs no privilege; a process already above 10 cannot come back down to it.
        if (before < BackgroundPriority.Nice)
        {
            Assert.True(ok);
            Assert.Equal(BackgroundPriority.Nice, lowered);
        }

        Assert.Equal(before, BackgroundPriority.CurrentNice()); // this thread is untouched
    }

    [Fact]
    public void TheStoresDuckDbUsesAtMostHalfTheCores()
    {
        var folder = Directory.CreateTempSubdirectory("portcullis-threads-");
        try
        {
            var database = new AnalyticsDatabase(Path.Combine(folder.FullName, "analytics.duckdb"));
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT current_setting('threads')::BIGINT";
            Assert.Equal(Math.Max(1, Environment.ProcessorCount / 2), Convert.ToInt32(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture));
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }
}
