using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>The compiled `observability.audit` section.</summary>
internal sealed class CompiledAudit
{
    /// <summary>Full path of the audit file.</summary>
    public required string Path { get; init; }

    public long MaxSize { get; init; } = 100L << 20;

    public int MaxFiles { get; init; } = 10;

    public bool SameFile(CompiledAudit other) =>
        string.Equals(Path, other.Path, StringComparison.Ordinal) && MaxSize == other.MaxSize && MaxFiles == other.MaxFiles;
}

/// <summary>
/// The audit log's queue: denials (authentication / authorization), admin actions and config changes,
/// each a JSON object body that <see cref="AuditWriter"/> chains and appends. The queue is bounded and
/// records are never dropped: when it is full a denied request waits for room before its answer is
/// sent (the back-pressure lands on the flood of denials, never on allowed requests, which write no
/// audit record); control-plane records wait on a task of their own.
/// </summary>
internal sealed class AuditLog
{
    internal const int Capacity = 4096;

    private static readonly JsonWriterOptions WriterOptions = new() { SkipValidation = false };

    private readonly Channel<byte[]> _channel;
    private readonly SnapshotStore _store;
    private readonly TimeProvider _time;
    private Dictionary<string, string> _fileHashes;
    private long _enqueued;
    private long _waited;
    private long _written;
    private long _writeErrors;
    private long _lost;

    public AuditLog(SnapshotStore store, TimeProvider time)
    {
        _store = store;
        _time = time;
        _channel = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(Capacity)
        {
            FullMode = BoundedChannelFullMode.Wait, SingleReader = true, SingleWriter = false, AllowSynchronousContinuations = false,
        });
        _fileHashes = store.IsInitialized ? HashFiles(store.Current) : [];
    }

    internal ChannelReader<byte[]> Reader => _channel.Reader;

    public bool Enabled => _store.Current.Observability.Audit is not null;

    /// <summary>Records queued (control-plane records waiting for room included).</summary>
    public long Enqueued => Interlocked.Read(ref _enqueued);

    /// <summary>Denied requests that found the queue full and waited for room.</summary>
    public long Waited => Interlocked.Read(ref _waited);

    public long Written => Interlocked.Read(ref _written);

    /// <summary>Failed attempts to write a batch (the batch is retried, not lost).</summary>
    public long WriteErrors => Interlocked.Read(ref _writeErrors);

    /// <summary>Records that could not be queued because the gateway was stopping.</summary>
    public long Lost => Interlocked.Read(ref _lost);

    public int Queued => _channel.Reader.CanCount ? _channel.Reader.Count : 0;

    /// <summary>
    /// Records the identity stage's denial of this request (its reason from <see cref="GatewayFeature.Auth"/>;
    /// see <see cref="RecordDenialAsync"/>). When the queue is full the
    /// wait is attached to the response (OnCompleted): the answer goes out, but the request — and the
    /// next one on its connection — finishes only once its record is queued.
    /// </summary>
    public void RecordDenial(HttpContext context, GatewayFeature gateway, int status, string? consumer, string? subject)
    {
        if (gateway.Snapshot.Observability.Audit is null || gateway.Auth.Reason is not { } reason) return;
        var pending = RecordDenialAsync(context, gateway, status, reason, consumer, subject);
        if (pending.IsCompletedSuccessfully) return;
        var task = pending.AsTask();
        context.Response.OnCompleted(static state => (Task)state, task);
    }

    /// <summary>
    /// Records an authentication or authorization denial: route, status, reason code, consumer and
    /// subject when known, client IP, request id. Never a token, key or cookie. Completes at once unless
    /// the queue is full (then it completes when the record is queued).
    /// </summary>
    public ValueTask RecordDenialAsync(HttpContext context, GatewayFeature gateway, int status, ReasonCode reason, string? consumer, string? subject)
    {
        if (gateway.Snapshot.Observability.Audit is null) return ValueTask.CompletedTask;
        var body = Build(w =>
        {
            w.WriteString("type", "auth.denied");
            w.WriteString("route", gateway.RouteName);
            w.WriteNumber("status", status);
            w.WriteString("reason", reason.Code);
            w.WriteString("consumer", consumer);
            w.WriteString("subject", subject);
            w.WriteString("clientIp", gateway.ClientAddress(context));
            w.WriteString("requestId", gateway.RequestId ?? context.TraceIdentifier);
            w.WriteString("method", context.Request.Method);
        });
        Interlocked.Increment(ref _enqueued);
        if (_channel.Writer.TryWrite(body)) return ValueTask.CompletedTask;
        Interlocked.Increment(ref _waited);
        return WaitAsync(body);
    }

    /// <summary>Records a reload asked for on the admin API, with its result and who asked.</summary>
    public void RecordReload(AuditActor caller, string? clientIp, ReloadResult result) => Record(w =>
    {
        w.WriteString("type", "admin.reload");
        WriteActor(w, caller, clientIp);
        w.WriteString("result", !result.Applied ? "rejected" : result.Changed ? "applied" : "unchanged");
        w.WriteNumber("generation", result.Generation);
        w.WriteNumber("errors", result.Diagnostics.Count(d => d.Severity == DiagnosticSeverity.Error));
        w.WriteStartArray("restartRequired");
        foreach (var item in result.RestartRequired) w.WriteStringValue(item);
        w.WriteEndArray();
        result.WriteParticipants(w);
    });

    /// <summary>Records a key refresh forced on the admin API, its outcome, and who asked.</summary>
    public void RecordIssuerRefresh(AuditActor caller, string? clientIp, string issuer, string result, int? keyCount) => Record(w =>
    {
        w.WriteString("type", "admin.issuer-refresh");
        WriteActor(w, caller, clientIp);
        w.WriteString("issuer", issuer);
        w.WriteString("result", result);
        if (keyCount is { } count) w.WriteNumber("keyCount", count);
    });

    /// <summary>Records draining or undraining a destination on the admin API, and who did it.</summary>
    public void RecordDrain(AuditActor caller, string? clientIp, string cluster, string destination, bool drained, string scope = "instance") => Record(w =>
    {
        w.WriteString("type", drained ? "admin.drain" : "admin.undrain");
        WriteActor(w, caller, clientIp);
        w.WriteString("cluster", cluster);
        w.WriteString("destination", destination);
        w.WriteString("scope", scope);
    });

    /// <summary>
    /// Records an admin request refused by admin.auth: who (as far as known: the token or certificate rule
    /// name, never the token), from where, what was asked and why. Completes at once unless the queue is full.
    /// </summary>
    public ValueTask RecordAdminDeniedAsync(HttpContext context, AuditActor caller, int status, string reason)
    {
        if (!Enabled) return ValueTask.CompletedTask;
        var body = Build(w =>
        {
            w.WriteString("type", "admin.denied");
            WriteActor(w, caller, context.Connection.RemoteIpAddress?.ToString());
            w.WriteString("method", context.Request.Method);
            w.WriteString("path", context.Request.Path.Value);
            w.WriteNumber("status", status);
            w.WriteString("reason", reason);
        });
        Interlocked.Increment(ref _enqueued);
        if (_channel.Writer.TryWrite(body)) return ValueTask.CompletedTask;
        Interlocked.Increment(ref _waited);
        return WaitAsync(body);
    }

    /// <summary>
    /// Records a dashboard sign-in (<c>/ui/login</c>) or sign-out: the token's name when it matched, never the
    /// token. A failed sign-in waits for room in a full queue, as a denial does.
    /// </summary>
    public ValueTask RecordUiSignInAsync(HttpContext context, AuditActor caller, string type, string result, string? reason = null)
    {
        if (!Enabled) return ValueTask.CompletedTask;
        var body = Build(w =>
        {
            w.WriteString("type", type);
            WriteActor(w, caller, context.Connection.RemoteIpAddress?.ToString());
            w.WriteString("result", result);
            if (reason is not null) w.WriteString("reason", reason);
        });
        Interlocked.Increment(ref _enqueued);
        if (_channel.Writer.TryWrite(body)) return ValueTask.CompletedTask;
        Interlocked.Increment(ref _waited);
        return WaitAsync(body);
    }

    private static void WriteActor(Utf8JsonWriter w, AuditActor caller, string? clientIp)
    {
        w.WriteString("actor", caller.Actor);
        if (caller.Subject is { } subject) w.WriteString("subject", subject);
        w.WriteString("clientIp", clientIp);
    }

    /// <summary>Start and stop of the gateway (the chain shows restarts).</summary>
    public void RecordLifecycle(string type) => Record(w =>
    {
        var snapshot = _store.Current;
        w.WriteString("type", type);
        w.WriteNumber("generation", snapshot.Generation);
        w.WriteString("fingerprint", snapshot.Fingerprint);
        w.WriteNumber("pid", Environment.ProcessId);
    });

    /// <summary>Queues a record; never waits (a full queue hands it to a task that waits for room).</summary>
    public void Record(Action<Utf8JsonWriter> fields)
    {
        if (!Enabled) return;
        var body = Build(fields);
        Interlocked.Increment(ref _enqueued);
        if (!_channel.Writer.TryWrite(body)) _ = WaitAsync(body).AsTask();
    }

    private async ValueTask WaitAsync(byte[] body)
    {
        try
        {
            await _channel.Writer.WriteAsync(body);
        }
        catch (ChannelClosedException)
        {
            Interlocked.Increment(ref _lost);
        }
    }

    private byte[] Build(Action<Utf8JsonWriter> fields)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("time", _time.GetUtcNow());
            fields(writer);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// A config change the reloader applied: generation, fingerprints, which of its files changed (by content
    /// hash), each reload participant's result and the settings that wait for a restart.
    /// </summary>
    public void RecordConfigChange(GatewaySnapshot current, GatewaySnapshot next, ReloadResult result)
    {
        var hashes = HashFiles(next);
        var before = _fileHashes;
        _fileHashes = hashes;
        if (next.Observability.Audit is null && current.Observability.Audit is null) return;
        var changed = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (file, hash) in hashes)
        {
            if (!before.TryGetValue(file, out var old) || old != hash) changed.Add(file);
        }

        foreach (var file in before.Keys)
        {
            if (!hashes.ContainsKey(file)) changed.Add(file);
        }

        var body = Build(w =>
        {
            w.WriteString("type", "config.change");
            w.WriteNumber("generation", next.Generation);
            w.WriteNumber("previousGeneration", current.Generation);
            w.WriteString("oldFingerprint", current.Fingerprint);
            w.WriteString("newFingerprint", next.Fingerprint);
            w.WriteStartArray("files");
            foreach (var file in changed) w.WriteStringValue(file);
            w.WriteEndArray();
            result.WriteParticipants(w);
            w.WriteStartArray("restartRequired");
            foreach (var item in result.RestartRequired) w.WriteStringValue(item);
            w.WriteEndArray();
        });
        Interlocked.Increment(ref _enqueued);
        if (!_channel.Writer.TryWrite(body)) _ = WaitAsync(body).AsTask();
    }

    private static Dictionary<string, string> HashFiles(GatewaySnapshot snapshot)
    {
        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in snapshot.Files.Append(snapshot.Source.Path).Select(Path.GetFullPath).Distinct(StringComparer.Ordinal).Where(f => !Directory.Exists(f)))
        {
            try
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                hashes[file] = Convert.ToHexStringLower(SHA256.HashData(stream));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                hashes[file] = "unreadable";
            }
        }

        return hashes;
    }

    internal void CountWritten(int records) => Interlocked.Add(ref _written, records);

    internal void CountWriteError() => Interlocked.Increment(ref _writeErrors);

    internal void CountLost(int records) => Interlocked.Add(ref _lost, records);

    internal void Complete() => _channel.Writer.TryComplete();

    /// <summary>The admin API's view (in GET /admin/observability).</summary>
    internal void WriteStatus(Utf8JsonWriter writer, GatewaySnapshot snapshot)
    {
        var options = snapshot.Observability.Audit;
        writer.WriteStartObject("audit");
        writer.WriteBoolean("enabled", options is not null);
        if (options is not null) writer.WriteString("path", options.Path);
        writer.WriteNumber("queueSize", Capacity);
        writer.WriteNumber("queued", Queued);
        writer.WriteNumber("enqueued", Enqueued);
        writer.WriteNumber("written", Written);
        writer.WriteNumber("waited", Waited);
        writer.WriteNumber("writeErrors", WriteErrors);
        writer.WriteNumber("lost", Lost);
        writer.WriteEndObject();
    }
}

/// <summary>Who did an admin action, for the audit record: the token or certificate rule name and, when known, its subject.</summary>
internal readonly record struct AuditActor(string Actor, string? Subject);
