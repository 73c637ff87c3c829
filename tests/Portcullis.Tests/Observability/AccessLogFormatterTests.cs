using System.Collections.Frozen;
using System.Diagnostics;
using System.Security.Authentication;
using System.Text;
using System.Text.Json;
using Portcullis.Configuration;
using Portcullis.Observability;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Observability;

/// <summary>The access-log JSON line: one line per entry, escaping, field selection and query redaction.</summary>
public sealed class AccessLogFormatterTests
{
    private static CompiledAccessLog Options(AccessLogFields fields = AccessLogFields.All, bool redactQuery = true, params string[] alsoSecret) => new()
    {
        Target = AccessLogTarget.Stdout,
        Fields = fields,
        RedactQuery = redactQuery,
        AlwaysRedacted = CompiledAccessLog.SecretParameters.Concat(alsoSecret).ToFrozenSet(StringComparer.OrdinalIgnoreCase),
    };

    internal static AccessLogEntry Entry(CompiledAccessLog options) => new()
    {
        Options = options,
        Time = new DateTimeOffset(2025, 6, 1, 12, 30, 45, 123, TimeSpan.Zero),
        RequestId = "0af7651916cd43dd8448eb211c80319c",
        TraceId = ActivityTraceId.CreateFromString("4bf92f3577b34da6a3ce929d0e0e4736"),
        SpanId = ActivitySpanId.CreateFromString("00f067aa0ba902b7"),
        Listener = "public",
        Method = "GET",
        Scheme = "https",
        Host = "api.example.com",
        Path = "/orders/42",
        Query = "?limit=10&access_token=SECRET1",
        Protocol = "HTTP/1.1",
        Status = 200,
        Route = "orders",
        Cluster = "orders",
        Destination = "http://10.0.0.5:8080/",
        Attempts = 1,
        BytesIn = 0,
        BytesOut = 512,
        Total = TimeSpan.FromTicks(12_346),
        Identity = TimeSpan.FromTicks(1_000),
        Traffic = null,
        Upstream = TimeSpan.FromTicks(10_000),
        ClientIp = "203.0.113.7",
        UserAgent = "curl/8.5.0",
        Tls = SslProtocols.Tls13,
        Sni = "api.example.com",
        Consumer = "acme",
        Auth = AuthOutcome.Allowed,
        AuthReason = "jwt.valid",
        RouteHasTraffic = false,
        UpstreamStatus = 200,
    };

    private static string Format(in AccessLogEntry entry)
    {
        var formatter = new AccessLogFormatter();
        Assert.True(formatter.Append(entry));
        return Encoding.UTF8.GetString(formatter.Written.Span);
    }

    [Fact]
    public void Missing_trace_and_span_ids_are_written_as_null()
    {
        var entry = Entry(Options());
        entry.TraceId = default;
        entry.SpanId = default;
        using var json = JsonDocument.Parse(Format(entry));
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("traceId").ValueKind);
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("spanId").ValueKind);
    }

    [Fact]
    public void Writes_one_json_line_with_every_field_in_order()
    {
        var line = Format(Entry(Options()));
        Assert.EndsWith("\n", line, StringComparison.Ordinal);
        Assert.Single(line.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        using var json = JsonDocument.Parse(line);
        var root = json.RootElement;
        var names = root.EnumerateObject().Select(p => p.Name).ToArray();
        Assert.Equal(AccessLogFieldNames.All.Select(f => f.Name), names);
        Assert.Equal("2025-06-01T12:30:45.123Z", root.GetProperty("time").GetString());
        Assert.Equal("4bf92f3577b34da6a3ce929d0e0e4736", root.GetProperty("traceId").GetString());
        Assert.Equal("00f067aa0ba902b7", root.GetProperty("spanId").GetString());
        Assert.Equal(1.235, root.GetProperty("totalMs").GetDouble());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("trafficMs").ValueKind);
        Assert.Equal("TLSv1.3", root.GetProperty("tlsVersion").GetString());
        Assert.Equal("allowed", root.GetProperty("auth").GetString());

        var stages = root.GetProperty("stages");
        Assert.Equal("TLSv1.3", stages.GetProperty("edge").GetProperty("tls").GetString());
        Assert.Equal("ok", stages.GetProperty("edge").GetProperty("limits").GetString());
        Assert.Equal("matched", stages.GetProperty("route").GetProperty("result").GetString());
        Assert.Equal("jwt.valid", stages.GetProperty("identity").GetProperty("result").GetString());
        Assert.Equal("allowed", stages.GetProperty("authorization").GetProperty("result").GetString());
        Assert.Equal("none", stages.GetProperty("traffic").GetProperty("result").GetString());
        var upstream = stages.GetProperty("upstream");
        Assert.Equal("ok", upstream.GetProperty("result").GetString());
        Assert.Equal(200, upstream.GetProperty("status").GetInt32());
        Assert.Equal(1, upstream.GetProperty("attempt").GetInt32());
    }

    [Fact]
    public void Control_characters_and_quotes_are_escaped_so_a_value_cannot_forge_a_line()
    {
        var entry = Entry(Options());
        entry.UserAgent = "evil\"}\n{\"status\":200,\u0001\r\\";
        entry.Path = "/a b/ü/<script>";
        var line = Format(entry);

        Assert.Equal(1, line.Count(c => c == '\n'));
        Assert.DoesNotContain('\r', line);
        Assert.Contains("\\n", line, StringComparison.Ordinal);
        Assert.Contains("\\u0001", line, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(line);
        Assert.Equal(entry.UserAgent, json.RootElement.GetProperty("userAgent").GetString());
        Assert.Equal(entry.Path, json.RootElement.GetProperty("path").GetString());
        Assert.Contains("/a b/ü/<script>", line, StringComparison.Ordinal); // readable, not \u-escaped
    }

    [Fact]
    public void Invalid_utf16_is_refused_without_leaving_half_a_line()
    {
        var formatter = new AccessLogFormatter();
        var bad = Entry(Options());
        bad.UserAgent = "x\ud800y";
        formatter.Append(Entry(Options()));
        var before = formatter.Length;
        var appended = formatter.Append(bad);
        if (!appended) Assert.Equal(before, formatter.Length);
        foreach (var line in Encoding.UTF8.GetString(formatter.Written.Span).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            using var _ = JsonDocument.Parse(line);
        }
    }

    [Theory]
    [InlineData(true, "?limit=*&access_token=*")]
    [InlineData(false, "?limit=10&access_token=*")]
    public void Query_values_are_redacted_and_secret_parameters_always(bool redact, string expected)
    {
        using var json = JsonDocument.Parse(Format(Entry(Options(redactQuery: redact))));
        Assert.Equal(expected, json.RootElement.GetProperty("query").GetString());
    }

    [Fact]
    public void The_api_key_parameter_encoded_names_and_empty_values_are_handled()
    {
        var entry = Entry(Options(AccessLogFields.All, false, "x-portcullis-key"));
        entry.Query = "?X-Portcullis-Key=KEY123&api%5Fkey=KEY456&flag&empty=&page=2";
        using var json = JsonDocument.Parse(Format(entry));
        Assert.Equal("?X-Portcullis-Key=*&api%5Fkey=*&flag&empty=&page=2", json.RootElement.GetProperty("query").GetString());
    }

    [Fact]
    public void Field_selection_writes_only_the_chosen_fields()
    {
        var line = Format(Entry(Options(AccessLogFields.RequestId | AccessLogFields.Status | AccessLogFields.Path)));
        using var json = JsonDocument.Parse(line);
        Assert.Equal(["requestId", "path", "status"], json.RootElement.EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public void Stages_tell_where_a_request_stopped()
    {
        var entry = Entry(Options(AccessLogFields.Stages | AccessLogFields.Auth));
        entry.Auth = AuthOutcome.Forbidden;
        entry.Authenticated = true;
        entry.AuthReason = "authz.scope";
        entry.Attempts = 0;
        entry.UpstreamStatus = 0;
        entry.Tls = SslProtocols.None;
        entry.Sni = null;
        entry.Status = 403;
        using var json = JsonDocument.Parse(Format(entry));
        var stages = json.RootElement.GetProperty("stages");
        Assert.Equal("forbidden", json.RootElement.GetProperty("auth").GetString());
        Assert.Equal("none", stages.GetProperty("edge").GetProperty("tls").GetString());
        Assert.Equal("authenticated", stages.GetProperty("identity").GetProperty("result").GetString());
        Assert.Equal("authz.scope", stages.GetProperty("authorization").GetProperty("result").GetString());
        Assert.Equal("not-reached", stages.GetProperty("upstream").GetProperty("result").GetString());

        entry.Reason = Portcullis.Pipeline.ReasonCodes.RequestHeadersTooLarge;
        entry.Route = null;
        entry.Auth = AuthOutcome.NotReached;
        using var limits = JsonDocument.Parse(Format(entry));
        var edge = limits.RootElement.GetProperty("stages");
        Assert.Equal("request.headers-too-large", edge.GetProperty("edge").GetProperty("limits").GetString());
        Assert.Equal("not-reached", edge.GetProperty("route").GetProperty("result").GetString());
        Assert.Equal("not-reached", edge.GetProperty("identity").GetProperty("result").GetString());
    }

    [Fact]
    public void Formatting_a_line_allocates_nothing_once_warm()
    {
        var formatter = new AccessLogFormatter();
        var entry = Entry(Options());
        for (var i = 0; i < 10; i++)
        {
            formatter.Append(entry);
            formatter.Clear();
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            formatter.Append(entry);
            formatter.Clear();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Theory]
    [InlineData("abc-123", true)]
    [InlineData("0af7651916cd43dd8448eb211c80319c", true)]
    [InlineData("a/b+c=d@e:f.g_h", true)]
    [InlineData("", false)]
    [InlineData("has space", false)]
    [InlineData("new\nline", false)]
    [InlineData("quote\"", false)]
    [InlineData("ünicode", false)]
    public void Request_ids_have_a_safe_charset(string value, bool valid)
    {
        Assert.Equal(valid, RequestObserver.IsValidRequestId(value));
    }

    [Fact]
    public void Request_ids_are_at_most_128_characters()
    {
        Assert.True(RequestObserver.IsValidRequestId(new string('a', 128)));
        Assert.False(RequestObserver.IsValidRequestId(new string('a', 129)));
    }

    [Fact]
    public void Traceparent_toward_the_upstream_is_w3c_and_parses_back()
    {
        var trace = ActivityTraceId.CreateFromString("4bf92f3577b34da6a3ce929d0e0e4736");
        var span = ActivitySpanId.CreateFromString("00f067aa0ba902b7");
        var text = TraceContextRequestTransform.Format(trace, span, ActivityTraceFlags.Recorded);
        Assert.Equal("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", text);
        Assert.True(ActivityContext.TryParse(text, null, out var parsed));
        Assert.Equal(trace, parsed.TraceId);
        Assert.Equal(span, parsed.SpanId);
        Assert.EndsWith("-00", TraceContextRequestTransform.Format(trace, span, ActivityTraceFlags.None), StringComparison.Ordinal);
    }
}
