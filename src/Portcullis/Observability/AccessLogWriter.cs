using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Portcullis.Observability;

/// <summary>
/// Drains the access-log queue on a background task: once lines arrive it lets them gather for the
/// flush interval (see <see cref="AccessLog.GatherAsync"/>), then formats them into one reused buffer
/// and writes them in batches (up to 64 KiB, or whatever is queued). A reload that changes the target or file
/// switches the sink between two batches. A failing sink loses (and counts) that batch and is reopened
/// on the next one; the queue keeps absorbing requests meanwhile.
/// </summary>
internal sealed partial class AccessLogWriter(AccessLog log, IAccessLogSinkFactory sinks, ILogger<AccessLogWriter> logger) : BackgroundService
{
    internal const int BatchBytes = 64 * 1024;

    private readonly AccessLogFormatter _formatter = new(BatchBytes + 4096);
    private CompiledAccessLog? _sinkOptions;
    private IAccessLogSink? _sink;
    private bool _failing;

    public override void Dispose()
    {
        _formatter.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var reader = log.Reader;
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                await log.GatherAsync(stoppingToken);
                await DrainAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        // Stopping: write what is still queued (requests have finished by now), without a token.
        log.Complete();
        await DrainAsync(CancellationToken.None);
        if (_sink is not null) await _sink.DisposeAsync();
    }

    private async Task DrainAsync(CancellationToken cancellationToken)
    {
        var reader = log.Reader;
        var lines = 0;
        while (reader.TryRead(out var entry))
        {
            if (_sinkOptions is null || !ReferenceEquals(_sinkOptions, entry.Options) && !_sinkOptions.SameSink(entry.Options))
            {
                await FlushAsync(lines, cancellationToken);
                lines = 0;
                if (_sink is not null) await _sink.DisposeAsync();
                _sink = null;
                _sinkOptions = entry.Options;
            }

            if (_formatter.Append(entry)) lines++;
            else log.CountFormatError();

            if (_formatter.Length >= BatchBytes)
            {
                await FlushAsync(lines, cancellationToken);
                lines = 0;
            }
        }

        await FlushAsync(lines, cancellationToken);
    }

    private async Task FlushAsync(int lines, CancellationToken cancellationToken)
    {
        if (_formatter.Length == 0) return;
        try
        {
            _sink ??= sinks.Create(_sinkOptions!);
            await _sink.WriteAsync(_formatter.Written, cancellationToken);
            log.CountWritten(lines);
            if (_failing) Log.Recovered(logger);
            _failing = false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            log.CountWriteErrors(lines);
            if (!_failing) Log.WriteFailed(logger, _sinkOptions?.Path ?? "stdout", e.Message);
            _failing = true;
            if (_sink is not null)
            {
                try
                {
                    await _sink.DisposeAsync();
                }
                catch (IOException)
                {
                }
            }

            _sink = null;
        }
        finally
        {
            _formatter.Clear();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(8001, LogLevel.Error, "Writing the access log to {Target} failed: {Message}; lines are counted as lost until it works again")]
        public static partial void WriteFailed(ILogger logger, string target, string message);

        [LoggerMessage(8002, LogLevel.Information, "Writing the access log works again")]
        public static partial void Recovered(ILogger logger);
    }
}
