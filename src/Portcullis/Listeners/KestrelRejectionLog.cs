using System.Diagnostics;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Hosting;
using Portcullis.Configuration;
using Portcullis.Observability;
using Portcullis.Pipeline;

namespace Portcullis.Listeners;

/// <summary>
/// Access-log lines for the requests Kestrel refuses itself, before the gateway sees them: headers or a request
/// line beyond Kestrel's hard limits (twice the configured ones), header timeouts, malformed framing. Kestrel
/// answers those with a bare status (empty body, Connection: close) and calls no middleware; it does raise the
/// "Microsoft.AspNetCore.Server.Kestrel.BadRequest" diagnostic event with the request's features, which is where
/// the line is built. Refusals the gateway answered itself (its request had a <see cref="GatewayFeature"/>, or the
/// answer had started) are logged by <see cref="RequestObserver"/> and skipped here.
/// </summary>
internal sealed class KestrelRejectionLog(DiagnosticListener? listener, SnapshotStore store, AccessLog log, TimeProvider time)
    : IObserver<KeyValuePair<string, object?>>, IHostedService, IDisposable
{
    public const string EventName = "Microsoft.AspNetCore.Server.Kestrel.BadRequest";

    private IDisposable? _subscription;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // Hosting's per-request checks see a subscriber, but this predicate enables no event of theirs.
        _subscription ??= listener?.Subscribe(this, static name => name == EventName);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _subscription?.Dispose();

    public void OnNext(KeyValuePair<string, object?> value)
    {
        if (value.Key == EventName && value.Value is IFeatureCollection features) Record(features);
    }

    public void OnCompleted()
    {
    }

    public void OnError(Exception error)
    {
    }

    internal void Record(IFeatureCollection features)
    {
        if (features.Get<GatewayFeature>() is not null) return;
        if (features.Get<IHttpResponseFeature>() is { HasStarted: true }) return;
        if (features.Get<IBadRequestExceptionFeature>()?.Error is not BadHttpRequestException error) return;
        var snapshot = store.Current;
        if (snapshot.Observability.AccessLog is not { } options) return;

        var connection = features.Get<IHttpConnectionFeature>();
        var request = features.Get<IHttpRequestFeature>();
        var tls = features.Get<ITlsHandshakeFeature>();
        var entry = new AccessLogEntry
        {
            Options = options,
            Time = time.GetUtcNow(),
            RequestId = ActivityTraceId.CreateRandom().ToHexString(),
            TraceId = default,
            SpanId = default,
            Listener = connection is null ? null : RequestObserver.ListenerName(snapshot, connection.LocalPort, connection.LocalIpAddress),
            // What Kestrel had parsed when it refused (empty when the request line itself was refused).
            Method = NullIfEmpty(request?.Method),
            Scheme = NullIfEmpty(request?.Scheme),
            Path = NullIfEmpty(request?.Path),
            Protocol = NullIfEmpty(request?.Protocol),
            Status = error.StatusCode,
            BytesIn = -1,
            BytesOut = 0,
            ClientIp = connection?.RemoteIpAddress?.ToString() ?? "unknown",
            Tls = tls?.Protocol ?? System.Security.Authentication.SslProtocols.None,
            Sni = tls?.HostName is { Length: > 0 } sni ? sni : null,
            Auth = AuthOutcome.NotReached,
            Reason = ReasonOf(error),
        };
        log.Enqueue(entry);
    }

    /// <summary>
    /// The reason code for a Kestrel refusal. Kestrel's rejection reason is internal; its status and (English,
    /// not localized) message are public, so codes come from the status and, for 400, the message's start.
    /// </summary>
    internal static ReasonCode ReasonOf(BadHttpRequestException error) => error.StatusCode switch
    {
        StatusCodes.Status431RequestHeaderFieldsTooLarge => ReasonCodes.RequestHeadersTooLarge,
        StatusCodes.Status414UriTooLong => ReasonCodes.RequestLineTooLong,
        StatusCodes.Status413PayloadTooLarge => ReasonCodes.RequestBodyTooLarge,
        StatusCodes.Status408RequestTimeout => error.Message.StartsWith("Reading the request body", StringComparison.Ordinal) ? ReasonCodes.RequestBodyTimeout : ReasonCodes.RequestHeadersTimeout,
        StatusCodes.Status411LengthRequired => ReasonCodes.RequestLengthRequired,
        StatusCodes.Status405MethodNotAllowed or StatusCodes.Status505HttpVersionNotsupported => ReasonCodes.RequestBadRequestLine,
        _ => ReasonOf400(error.Message),
    };

    private static ReasonCode ReasonOf400(string message)
    {
        foreach (var (prefix, reason) in MessageReasons)
        {
            if (message.StartsWith(prefix, StringComparison.Ordinal)) return reason;
        }

        return ReasonCodes.RequestMalformed;
    }

    private static readonly (string Prefix, ReasonCode Reason)[] MessageReasons =
    [
        ("Invalid content length", ReasonCodes.RequestBadContentLength),
        ("Multiple Content-Length", ReasonCodes.RequestBadContentLength),
        ("Bad chunk", ReasonCodes.RequestBadChunkedBody),
        ("Chunked request incomplete", ReasonCodes.RequestBadChunkedBody),
        ("The message body length cannot be determined", ReasonCodes.RequestBadTransferEncoding),
        ("Invalid Host header", ReasonCodes.RequestBadHost),
        ("Request is missing Host header", ReasonCodes.RequestBadHost),
        ("Multiple Host headers", ReasonCodes.RequestBadHost),
        ("Invalid request line", ReasonCodes.RequestBadRequestLine),
        ("Invalid request target", ReasonCodes.RequestBadRequestLine),
        ("Unrecognized HTTP version", ReasonCodes.RequestBadRequestLine),
    ];

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}
