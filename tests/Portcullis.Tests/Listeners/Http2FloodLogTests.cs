using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Listeners;

namespace Portcullis.Tests.Listeners;

public sealed class Http2FloodLogTests
{
    private static readonly EventId QueueExceeded = new(60, "Http2QueueOperationsExceeded");

    [Fact]
    public void ManyEvents_LogTheFirstAtOnce_AndOneSummaryPerInterval()
    {
        var time = new FakeTimeProvider();
        var logger = new ListLogger();
        using var flood = new Http2FloodLog(time, logger);

        for (var i = 0; i < 50; i++) flood.Record(QueueExceeded, "conn-a");
        for (var i = 0; i < 30; i++) flood.Record(QueueExceeded, "conn-b");

        var first = Assert.Single(logger.Lines);
        Assert.Contains("Http2QueueOperationsExceeded", first, StringComparison.Ordinal);
        Assert.Contains("conn-a", first, StringComparison.Ordinal);

        time.Advance(Http2FloodLog.Interval);
        Assert.Equal(2, logger.Lines.Count);
        Assert.Contains("79 more Kestrel events from 2 connections", logger.Lines[1], StringComparison.Ordinal);
        Assert.Contains("Http2QueueOperationsExceeded=79", logger.Lines[1], StringComparison.Ordinal);
        Assert.Contains("top peers: unknown=79", logger.Lines[1], StringComparison.Ordinal);

        // Quiet interval: nothing more; the next event starts a new interval with its own first line.
        time.Advance(Http2FloodLog.Interval * 3);
        Assert.Equal(2, logger.Lines.Count);
        flood.Record(QueueExceeded, "conn-c");
        Assert.Equal(3, logger.Lines.Count);
        Assert.Contains("conn-c", logger.Lines[2], StringComparison.Ordinal);
    }

    [Fact]
    public void SingleEvent_WritesNoSummary()
    {
        var time = new FakeTimeProvider();
        var logger = new ListLogger();
        using var flood = new Http2FloodLog(time, logger);

        flood.Record(QueueExceeded, "conn-a");
        time.Advance(Http2FloodLog.Interval * 2);

        Assert.Single(logger.Lines);
    }

    private sealed class ListLogger : ILogger
    {
        public List<string> Lines { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Add(formatter(state, exception));
    }
}
