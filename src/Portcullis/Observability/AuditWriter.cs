using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// The audit log's single writer: takes what is queued (up to 256 records), chains and appends it
/// with one fsync. A failing file (disk full, permissions) is retried every second with the same
/// records — they are never dropped; meanwhile the queue fills and denied requests wait (fail closed).
/// Writes `gateway.start` when it starts and `gateway.stop` when it stops.
/// </summary>
internal sealed partial class AuditWriter(AuditLog log, SnapshotStore store, TimeProvider time, ILogger<AuditWriter> logger) : BackgroundService
{
    private const int BatchRecords = 256;
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    private readonly List<byte[]> _batch = new(BatchRecords);
    private AuditFile? _file;
    private CompiledAudit? _fileOptions;
    private bool _failing;

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        log.RecordLifecycle("gateway.start");
        return base.StartAsync(cancellationToken);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        log.RecordLifecycle("gateway.stop");
        await base.StopAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        var reader = log.Reader;
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                await DrainAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        // Stopping: write what is still queued, trying once more if the file fails.
        log.Complete();
        await DrainAsync(CancellationToken.None, stopping: true);
    }

    private async Task DrainAsync(CancellationToken cancellationToken, bool stopping = false)
    {
        var reader = log.Reader;
        while (true)
        {
            _batch.Clear();
            while (_batch.Count < BatchRecords && reader.TryRead(out var body)) _batch.Add(body);
            if (_batch.Count == 0) return;

            for (var attempt = 0; ; attempt++)
            {
                if (TryWrite()) break;
                if (stopping && attempt >= 1)
                {
                    log.CountLost(_batch.Count);
                    Log.LostOnStop(logger, _batch.Count);
                    break;
                }

                try
                {
                    await Task.Delay(RetryDelay, time, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    stopping = true;
                }
            }
        }
    }

    private bool TryWrite()
    {
        var options = store.Current.Observability.Audit ?? _fileOptions;
        if (options is null)
        {
            // Turned off before anything was written: nowhere to write.
            log.CountLost(_batch.Count);
            return true;
        }

        if (_file is null || _fileOptions is null || !_fileOptions.SameFile(options))
        {
            _file = new AuditFile(options.Path, options.MaxSize, options.MaxFiles);
            _fileOptions = options;
        }

        try
        {
            _file.Append(_batch);
            log.CountWritten(_batch.Count);
            if (_failing) Log.Recovered(logger);
            _failing = false;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log.CountWriteError();
            if (!_failing) Log.WriteFailed(logger, options.Path, e.Message);
            _failing = true;
            return false;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(8101, LogLevel.Error, "Writing the audit log {Path} failed: {Message}; records are kept and retried every second (denied requests wait meanwhile)")]
        public static partial void WriteFailed(ILogger logger, string path, string message);

        [LoggerMessage(8102, LogLevel.Information, "Writing the audit log works again")]
        public static partial void Recovered(ILogger logger);

        [LoggerMessage(8103, LogLevel.Critical, "{Count} audit record(s) could not be written before the gateway stopped")]
        public static partial void LostOnStop(ILogger logger, int count);
    }
}
