using System.Text.Json;
using System.Threading.Channels;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// The queue between requests and the access-log writer: a bounded channel that never blocks a
/// request. When it is full the new line is dropped and counted. The writer wakes once per flush
/// interval, or as soon as the queue is half full, so that lines are written in batches rather than
/// one write (and one thread wake-up) per request. Counters are read by the admin API
/// (GET /admin/observability) and by metrics.
/// </summary>
internal sealed class AccessLog : IDisposable
{
    private readonly Channel<AccessLogEntry> _channel;
    private readonly SnapshotStore _store;
    private readonly SemaphoreSlim _halfFull = new(0, 1);
    private readonly int _highWater;
    private int _sinceDrain;
    private long _enqueued;
    private long _dropped;
    private long _sampledOut;
    private long _written;
    private long _writeErrors;
    private long _formatErrors;

    public AccessLog(SnapshotStore store)
    {
        // The queue is sized once, at start (a reload does not resize it).
        _store = store;
        Capacity = store.Current.Observability.AccessLog?.QueueSize ?? 10_000;
        _highWater = Math.Max(1, Capacity / 2);
        _channel = Channel.CreateBounded<AccessLogEntry>(
            new BoundedChannelOptions(Capacity) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true, SingleWriter = false, AllowSynchronousContinuations = false },
            OnDropped);
    }

    public int Capacity { get; }

    internal ChannelReader<AccessLogEntry> Reader => _channel.Reader;

    /// <summary>Lines handed to the queue (dropped ones included).</summary>
    public long Enqueued => Interlocked.Read(ref _enqueued);

    /// <summary>Lines dropped because the queue was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Successful requests not logged by sampling.</summary>
    public long SampledOut => Interlocked.Read(ref _sampledOut);

    /// <summary>Lines written to the sink.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Lines lost because the sink failed (I/O errors).</summary>
    public long WriteErrors => Interlocked.Read(ref _writeErrors);

    /// <summary>Lines that could not be formatted (e.g. invalid UTF-16 in a header).</summary>
    public long FormatErrors => Interlocked.Read(ref _formatErrors);

    /// <summary>Lines waiting for the writer.</summary>
    public int Queued => _channel.Reader.CanCount ? _channel.Reader.Count : 0;

    /// <summary>Queues one line; never waits (a full queue drops it).</summary>
    public void Enqueue(in AccessLogEntry entry)
    {
        Interlocked.Increment(ref _enqueued);
        _channel.Writer.TryWrite(entry);
        // Exactly one request sees the count reach the mark: it wakes the writer before the interval is up.
        if (Interlocked.Increment(ref _sinceDrain) == _highWater) WakeWriter();
    }

    /// <summary>
    /// The writer's pause between noticing a line and draining the queue: the flush interval of the
    /// current configuration, cut short when the queue reaches half its capacity.
    /// </summary>
    internal async Task GatherAsync(CancellationToken cancellationToken)
    {
        var interval = _store.Current.Observability.AccessLog?.FlushInterval ?? TimeSpan.Zero;
        if (interval > TimeSpan.Zero && Volatile.Read(ref _sinceDrain) < _highWater) await _halfFull.WaitAsync(interval, cancellationToken);
        Interlocked.Exchange(ref _sinceDrain, 0);
        if (_halfFull.CurrentCount > 0) _halfFull.Wait(0, CancellationToken.None); // a wake-up that raced the drain starts no empty round
    }

    private void WakeWriter()
    {
        try
        {
            _halfFull.Release();
        }
        catch (SemaphoreFullException)
        {
            // Already signalled.
        }
        catch (ObjectDisposedException)
        {
            // Shutting down: the writer has stopped, a late request's line wakes nobody.
        }
    }

    public void Dispose() => _halfFull.Dispose();

    internal void CountSampledOut() => Interlocked.Increment(ref _sampledOut);

    internal void CountWritten(int lines) => Interlocked.Add(ref _written, lines);

    internal void CountWriteErrors(int lines) => Interlocked.Add(ref _writeErrors, lines);

    internal void CountFormatError() => Interlocked.Increment(ref _formatErrors);

    internal void Complete() => _channel.Writer.TryComplete();

    private void OnDropped(AccessLogEntry entry) => Interlocked.Increment(ref _dropped);

    /// <summary>The admin API's view (GET /admin/observability).</summary>
    internal void WriteStatus(Utf8JsonWriter writer, Portcullis.Configuration.GatewaySnapshot snapshot)
    {
        var options = snapshot.Observability.AccessLog;
        writer.WriteStartObject("accessLog");
        writer.WriteBoolean("enabled", options is not null);
        if (options is not null)
        {
            writer.WriteString("target", options.Target == Configuration.AccessLogTarget.File ? "file" : "stdout");
            if (options.Path is not null) writer.WriteString("path", options.Path);
            writer.WriteNumber("sampleSuccesses", options.SampleSuccesses);
            writer.WriteNumber("flushIntervalMs", options.FlushInterval.TotalMilliseconds);
        }

        writer.WriteNumber("queueSize", Capacity);
        writer.WriteNumber("queued", Queued);
        writer.WriteNumber("enqueued", Enqueued);
        writer.WriteNumber("written", Written);
        writer.WriteNumber("dropped", Dropped);
        writer.WriteNumber("sampledOut", SampledOut);
        writer.WriteNumber("writeErrors", WriteErrors);
        writer.WriteNumber("formatErrors", FormatErrors);
        writer.WriteEndObject();
        writer.WriteStartObject("requestId");
        writer.WriteString("trustInbound", snapshot.Observability.RequestIdTrust switch
        {
            Configuration.RequestIdTrust.Always => "always",
            Configuration.RequestIdTrust.Never => "never",
            _ => "trustedProxies",
        });
        writer.WriteEndObject();
    }
}
