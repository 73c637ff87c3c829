using System.Buffers;
using System.Security.Authentication;
using System.Text.Encodings.Web;
using System.Text.Json;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// Formats access-log entries as JSON lines (Utf8JsonWriter into a reused buffer: no allocation per
/// line once the buffer has grown). Used by the background writer only — one instance per writer.
/// </summary>
internal sealed class AccessLogFormatter : IDisposable
{
    // Relaxed escaping keeps paths and user agents readable; quotes, backslashes and control
    // characters (CR/LF: no log injection) are still escaped.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };

    private readonly ArrayBufferWriter<byte> _line = new(1024);
    private readonly ArrayBufferWriter<byte> _batch;
    private readonly Utf8JsonWriter _writer;

    public AccessLogFormatter(int batchCapacity = 64 * 1024)
    {
        _batch = new ArrayBufferWriter<byte>(batchCapacity);
        _writer = new Utf8JsonWriter(_line, WriterOptions);
    }

    /// <summary>The lines formatted since the last <see cref="Clear"/>, each ending in '\n'.</summary>
    public ReadOnlyMemory<byte> Written => _batch.WrittenMemory;

    public int Length => _batch.WrittenCount;

    public void Dispose() => _writer.Dispose();

    public void Clear() => _batch.ResetWrittenCount();

    /// <summary>Appends one line; false (nothing appended) when the entry cannot be written as JSON (e.g. invalid UTF-16).</summary>
    public bool Append(in AccessLogEntry entry)
    {
        _line.ResetWrittenCount();
        _writer.Reset(_line);
        try
        {
            Write(_writer, entry);
            _writer.Flush();
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }

        var line = _line.WrittenSpan;
        var target = _batch.GetSpan(line.Length + 1);
        line.CopyTo(target);
        target[line.Length] = (byte)'\n';
        _batch.Advance(line.Length + 1);
        return true;
    }

    internal static void Write(Utf8JsonWriter w, in AccessLogEntry e)
    {
        var f = e.Options.Fields;
        w.WriteStartObject();
        if (Has(f, AccessLogFields.Time)) w.WriteString(Names.Time, e.Time.UtcDateTime);
        if (Has(f, AccessLogFields.RequestId)) WriteOrNull(w, Names.RequestId, e.RequestId);
        Span<byte> id = stackalloc byte[16];
        if (Has(f, AccessLogFields.TraceId))
        {
            if (e.TraceId != default) e.TraceId.CopyTo(id);
            WriteHexOrNull(w, Names.TraceId, e.TraceId == default ? [] : id);
        }

        if (Has(f, AccessLogFields.SpanId))
        {
            if (e.SpanId != default) e.SpanId.CopyTo(id[..8]);
            WriteHexOrNull(w, Names.SpanId, e.SpanId == default ? [] : id[..8]);
        }

        if (Has(f, AccessLogFields.Listener)) WriteOrNull(w, Names.Listener, e.Listener);
        if (Has(f, AccessLogFields.Method)) WriteOrNull(w, Names.Method, e.Method);
        if (Has(f, AccessLogFields.Scheme)) WriteOrNull(w, Names.Scheme, e.Scheme);
        if (Has(f, AccessLogFields.Host)) WriteOrNull(w, Names.Host, e.Host);
        if (Has(f, AccessLogFields.Path))
        {
            WriteOrNull(w, Names.Path, e.Path);
            if (e.UpstreamPath is not null) w.WriteString(Names.UpstreamPath, e.UpstreamPath);
        }
        if (Has(f, AccessLogFields.Query))
        {
            if (string.IsNullOrEmpty(e.Query)) w.WriteNull(Names.Query);
            else WriteQuery(w, e.Query, e.Options);
        }

        if (Has(f, AccessLogFields.Protocol)) WriteOrNull(w, Names.Protocol, e.Protocol);
        if (Has(f, AccessLogFields.Status)) w.WriteNumber(Names.Status, e.Status);
        if (Has(f, AccessLogFields.Route)) WriteOrNull(w, Names.Route, e.Route);
        if (Has(f, AccessLogFields.Cluster)) WriteOrNull(w, Names.Cluster, e.Cluster);
        if (Has(f, AccessLogFields.Destination)) WriteOrNull(w, Names.Destination, e.Destination);
        if (Has(f, AccessLogFields.Attempts)) w.WriteNumber(Names.Attempts, e.Attempts);
        if (Has(f, AccessLogFields.BytesIn)) WriteBytes(w, Names.BytesIn, e.BytesIn);
        if (Has(f, AccessLogFields.BytesOut)) WriteBytes(w, Names.BytesOut, e.BytesOut);
        if (Has(f, AccessLogFields.TotalMs)) w.WriteNumber(Names.TotalMs, Milliseconds(e.Total));
        if (Has(f, AccessLogFields.IdentityMs)) WriteDuration(w, Names.IdentityMs, e.Identity);
        if (Has(f, AccessLogFields.TrafficMs)) WriteDuration(w, Names.TrafficMs, e.Traffic);
        if (Has(f, AccessLogFields.UpstreamMs)) WriteDuration(w, Names.UpstreamMs, e.Upstream);
        if (Has(f, AccessLogFields.ClientIp)) WriteOrNull(w, Names.ClientIp, e.ClientIp);
        if (Has(f, AccessLogFields.UserAgent)) WriteOrNull(w, Names.UserAgent, e.UserAgent);
        if (Has(f, AccessLogFields.TlsVersion)) WriteOrNull(w, Names.TlsVersion, TlsName(e.Tls));
        if (Has(f, AccessLogFields.Sni)) WriteOrNull(w, Names.Sni, e.Sni);
        if (Has(f, AccessLogFields.Consumer)) WriteOrNull(w, Names.Consumer, e.Consumer);
        if (Has(f, AccessLogFields.Auth)) w.WriteString(Names.Auth, AuthName(e.Auth));
        if (Has(f, AccessLogFields.AuthReason)) WriteOrNull(w, Names.AuthReason, e.AuthReason);
        if (Has(f, AccessLogFields.RateLimit)) WriteOrNull(w, Names.RateLimit, e.TrafficDecision);
        if (Has(f, AccessLogFields.Reason)) WriteOrNull(w, Names.Reason, e.Reason?.Code);
        if (e.ResponseFindings is { Count: > 0 } findings && Has(f, AccessLogFields.Reason))
        {
            w.WriteStartArray(Names.ResponseFindings);
            foreach (var finding in findings) w.WriteStringValue(finding);
            w.WriteEndArray();
        }

        if (Has(f, AccessLogFields.Stages)) WriteStages(w, e);
        w.WriteEndObject();
    }

    private static void WriteStages(Utf8JsonWriter w, in AccessLogEntry e)
    {
        w.WriteStartObject(Names.Stages);

        var limits = EdgeLimit(e.Reason);
        w.WriteStartObject(Names.Edge);
        WriteOrNull(w, Names.Listener, e.Listener);
        w.WriteString(Names.Tls, TlsName(e.Tls) ?? "none");
        if (e.Sni is not null) w.WriteString(Names.Sni, e.Sni);
        w.WriteString(Names.Limits, limits ?? "ok");
        w.WriteEndObject();

        w.WriteStartObject(Names.RouteStage);
        w.WriteString(Names.Result, e.Route is not null ? "matched" : limits is not null ? "not-reached" : "unmatched");
        if (e.Route is not null) w.WriteString(Names.Name, e.Route);
        w.WriteEndObject();

        w.WriteStartObject(Names.Identity);
        w.WriteString(Names.Result, e.Auth switch
        {
            AuthOutcome.None => "none",
            AuthOutcome.NotReached => "not-reached",
            AuthOutcome.Forbidden when e.Authenticated => "authenticated",
            _ => e.AuthReason ?? "not-reached",
        });
        if (e.Identity is { } identity) w.WriteNumber(Names.Ms, Milliseconds(identity));
        w.WriteEndObject();

        w.WriteStartObject(Names.Authorization);
        w.WriteString(Names.Result, e.Auth switch
        {
            AuthOutcome.None => "none",
            AuthOutcome.Allowed => "allowed",
            AuthOutcome.Forbidden => e.AuthReason ?? "denied",
            _ => "not-reached",
        });
        w.WriteEndObject();

        w.WriteStartObject(Names.Traffic);
        w.WriteString(Names.Result, !e.RouteHasTraffic ? "none" : e.TrafficDecision ?? "not-reached");
        if (e.Traffic is { } traffic) w.WriteNumber(Names.Ms, Milliseconds(traffic));
        if (e.Plan is not null) w.WriteString(Names.Plan, e.Plan);
        w.WriteEndObject();

        w.WriteStartObject(Names.Upstream);
        w.WriteString(Names.Result, e.Attempts == 0 ? "not-reached" : e.UpstreamError is not null ? "error" : "ok");
        if (e.Attempts > 0)
        {
            WriteOrNull(w, Names.Cluster, e.Cluster);
            WriteOrNull(w, Names.Destination, e.Destination);
            w.WriteNumber(Names.Attempt, e.Attempts);
            if (e.UpstreamStatus > 0) w.WriteNumber(Names.Status, e.UpstreamStatus);
            else w.WriteNull(Names.Status);
            if (e.UpstreamError is not null) w.WriteString(Names.Error, e.UpstreamError);
            if (e.Upstream is { } upstream) w.WriteNumber(Names.Ms, Milliseconds(upstream));
        }

        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>
    /// Writes the query with values replaced by `*` (every value with redactQuery, otherwise only the
    /// secret-looking parameters and the API-key parameter). Names are kept; the output is never longer
    /// than the input.
    /// </summary>
    private static void WriteQuery(Utf8JsonWriter w, string query, CompiledAccessLog options)
    {
        var rented = ArrayPool<char>.Shared.Rent(query.Length);
        try
        {
            var output = rented.AsSpan();
            var n = 0;
            var rest = query.AsSpan();
            if (rest.StartsWith('?'))
            {
                output[n++] = '?';
                rest = rest[1..];
            }

            var first = true;
            while (!rest.IsEmpty)
            {
                var amp = rest.IndexOf('&');
                var pair = amp < 0 ? rest : rest[..amp];
                rest = amp < 0 ? default : rest[(amp + 1)..];
                if (!first) output[n++] = '&';
                first = false;
                var eq = pair.IndexOf('=');
                var name = eq < 0 ? pair : pair[..eq];
                name.CopyTo(output[n..]);
                n += name.Length;
                if (eq < 0) continue;
                output[n++] = '=';
                var value = pair[(eq + 1)..];
                if (value.IsEmpty) continue;
                if (options.RedactQuery || options.IsSecretParameter(name))
                {
                    output[n++] = '*';
                }
                else
                {
                    value.CopyTo(output[n..]);
                    n += value.Length;
                }
            }

            w.WriteString(Names.Query, output[..n]);
        }
        finally
        {
            ArrayPool<char>.Shared.Return(rented);
        }
    }

    /// <summary>The edge-limit refusal a reason names, or null.</summary>
    internal static string? EdgeLimit(ReasonCode? reason) => reason?.Stage == ReasonStage.Edge ? reason.Code : null;

    internal static string? TlsName(SslProtocols protocol) => protocol switch
    {
        SslProtocols.None => null,
        SslProtocols.Tls13 => "TLSv1.3",
        SslProtocols.Tls12 => "TLSv1.2",
#pragma warning disable SYSLIB0039, CA5397 // names a protocol a client negotiated, for the log; never offered
        SslProtocols.Tls11 => "TLSv1.1",
        SslProtocols.Tls => "TLSv1",
#pragma warning restore SYSLIB0039, CA5397
        _ => "other",
    };

    internal static string AuthName(AuthOutcome outcome) => outcome switch
    {
        AuthOutcome.None => "none",
        AuthOutcome.NotReached => "not-reached",
        AuthOutcome.Allowed => "allowed",
        AuthOutcome.Unauthenticated => "unauthenticated",
        AuthOutcome.Forbidden => "forbidden",
        _ => "unavailable",
    };

    private static bool Has(AccessLogFields fields, AccessLogFields field) => (fields & field) != 0;

    private static double Milliseconds(TimeSpan span) => Math.Round(span.TotalMilliseconds, 3);

    private static void WriteOrNull(Utf8JsonWriter w, JsonEncodedText name, string? value)
    {
        if (value is null) w.WriteNull(name);
        else w.WriteString(name, value);
    }

    /// <summary>Lower-case hex of a trace or span id (at most 16 bytes), or null when there is none.</summary>
    private static void WriteHexOrNull(Utf8JsonWriter w, JsonEncodedText name, ReadOnlySpan<byte> id)
    {
        if (id.IsEmpty)
        {
            w.WriteNull(name);
            return;
        }

        Span<char> hex = stackalloc char[32];
        Convert.TryToHexStringLower(id, hex, out var written);
        w.WriteString(name, hex[..written]);
    }

    private static void WriteBytes(Utf8JsonWriter w, JsonEncodedText name, long value)
    {
        if (value < 0) w.WriteNull(name);
        else w.WriteNumber(name, value);
    }

    private static void WriteDuration(Utf8JsonWriter w, JsonEncodedText name, TimeSpan? value)
    {
        if (value is { } v) w.WriteNumber(name, Milliseconds(v));
        else w.WriteNull(name);
    }

    private static class Names
    {
        public static readonly JsonEncodedText Time = JsonEncodedText.Encode("time");
        public static readonly JsonEncodedText RequestId = JsonEncodedText.Encode("requestId");
        public static readonly JsonEncodedText TraceId = JsonEncodedText.Encode("traceId");
        public static readonly JsonEncodedText SpanId = JsonEncodedText.Encode("spanId");
        public static readonly JsonEncodedText Listener = JsonEncodedText.Encode("listener");
        public static readonly JsonEncodedText Method = JsonEncodedText.Encode("method");
        public static readonly JsonEncodedText Scheme = JsonEncodedText.Encode("scheme");
        public static readonly JsonEncodedText Host = JsonEncodedText.Encode("host");
        public static readonly JsonEncodedText Path = JsonEncodedText.Encode("path");
        public static readonly JsonEncodedText UpstreamPath = JsonEncodedText.Encode("upstreamPath");
        public static readonly JsonEncodedText Query = JsonEncodedText.Encode("query");
        public static readonly JsonEncodedText Protocol = JsonEncodedText.Encode("protocol");
        public static readonly JsonEncodedText Status = JsonEncodedText.Encode("status");
        public static readonly JsonEncodedText Route = JsonEncodedText.Encode("route");
        public static readonly JsonEncodedText Cluster = JsonEncodedText.Encode("cluster");
        public static readonly JsonEncodedText Destination = JsonEncodedText.Encode("destination");
        public static readonly JsonEncodedText Attempts = JsonEncodedText.Encode("attempts");
        public static readonly JsonEncodedText BytesIn = JsonEncodedText.Encode("bytesIn");
        public static readonly JsonEncodedText BytesOut = JsonEncodedText.Encode("bytesOut");
        public static readonly JsonEncodedText TotalMs = JsonEncodedText.Encode("totalMs");
        public static readonly JsonEncodedText IdentityMs = JsonEncodedText.Encode("identityMs");
        public static readonly JsonEncodedText TrafficMs = JsonEncodedText.Encode("trafficMs");
        public static readonly JsonEncodedText UpstreamMs = JsonEncodedText.Encode("upstreamMs");
        public static readonly JsonEncodedText ClientIp = JsonEncodedText.Encode("clientIp");
        public static readonly JsonEncodedText UserAgent = JsonEncodedText.Encode("userAgent");
        public static readonly JsonEncodedText TlsVersion = JsonEncodedText.Encode("tlsVersion");
        public static readonly JsonEncodedText Sni = JsonEncodedText.Encode("sni");
        public static readonly JsonEncodedText Consumer = JsonEncodedText.Encode("consumer");
        public static readonly JsonEncodedText Auth = JsonEncodedText.Encode("auth");
        public static readonly JsonEncodedText AuthReason = JsonEncodedText.Encode("authReason");
        public static readonly JsonEncodedText RateLimit = JsonEncodedText.Encode("rateLimit");
        public static readonly JsonEncodedText Reason = JsonEncodedText.Encode("reason");
        public static readonly JsonEncodedText ResponseFindings = JsonEncodedText.Encode("responseFindings");
        public static readonly JsonEncodedText Stages = JsonEncodedText.Encode("stages");
        public static readonly JsonEncodedText Edge = JsonEncodedText.Encode("edge");
        public static readonly JsonEncodedText Tls = JsonEncodedText.Encode("tls");
        public static readonly JsonEncodedText Limits = JsonEncodedText.Encode("limits");
        public static readonly JsonEncodedText RouteStage = JsonEncodedText.Encode("route");
        public static readonly JsonEncodedText Name = JsonEncodedText.Encode("name");
        public static readonly JsonEncodedText Result = JsonEncodedText.Encode("result");
        public static readonly JsonEncodedText Identity = JsonEncodedText.Encode("identity");
        public static readonly JsonEncodedText Authorization = JsonEncodedText.Encode("authorization");
        public static readonly JsonEncodedText Traffic = JsonEncodedText.Encode("traffic");
        public static readonly JsonEncodedText Plan = JsonEncodedText.Encode("plan");
        public static readonly JsonEncodedText Upstream = JsonEncodedText.Encode("upstream");
        public static readonly JsonEncodedText Attempt = JsonEncodedText.Encode("attempt");
        public static readonly JsonEncodedText Error = JsonEncodedText.Encode("error");
        public static readonly JsonEncodedText Ms = JsonEncodedText.Encode("ms");
    }
}
