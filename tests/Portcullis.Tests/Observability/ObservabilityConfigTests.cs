using Portcullis.Configuration;
using Portcullis.Observability;

namespace Portcullis.Tests.Observability;

/// <summary>The observability section: defaults, compilation, and refusals with file:line:column.</summary>
public sealed class ObservabilityConfigTests() : ConfigBuildTestBase("portcullis-observability-")
{
    private const string Head = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]

        """;

    [Fact]
    public void The_access_log_is_off_by_default_and_request_ids_trust_proxies_only()
    {
        var result = Build(Head);
        Assert.True(result.Succeeded, Dump(result));
        Assert.Null(result.Snapshot!.Observability.AccessLog);
        Assert.Equal(RequestIdTrust.TrustedProxies, result.Snapshot.Observability.RequestIdTrust);
    }

    [Fact]
    public void A_complete_section_compiles()
    {
        Directory.CreateDirectory(Path.Combine(_directory.FullName, "logs"));
        var result = Build(Head + """
            identity:
              apiKeys: { file: keys.yaml, queryParameter: token_key }
            observability:
              requestId: { trustInbound: never }
              accessLog:
                enabled: true
                target: file
                path: logs/access.log
                maxSize: 10MiB
                maxFiles: 3
                exclude: [userAgent, spanId]
                sampleSuccesses: 0.25
                redactQuery: false
                queueSize: 500
                flushInterval: 250ms
            """.Replace("keys.yaml", WriteFile("keys.yaml", "consumers: {}\n"), StringComparison.Ordinal));
        Assert.True(result.Succeeded, Dump(result));
        var observability = result.Snapshot!.Observability;
        Assert.Equal(RequestIdTrust.Never, observability.RequestIdTrust);
        var log = observability.AccessLog!;
        Assert.Equal(Path.Combine(_directory.FullName, "logs", "access.log"), log.Path);
        Assert.Equal(10L << 20, log.MaxSize);
        Assert.Equal(3, log.MaxFiles);
        Assert.Equal(AccessLogFields.All & ~AccessLogFields.UserAgent & ~AccessLogFields.SpanId, log.Fields);
        Assert.Equal(0.25, log.SampleSuccesses);
        Assert.False(log.RedactQuery);
        Assert.Equal(500, log.QueueSize);
        Assert.Equal(TimeSpan.FromMilliseconds(250), log.FlushInterval);
        Assert.True(log.IsSecretParameter("TOKEN_KEY"));
        Assert.True(log.IsSecretParameter("access_token"));
        Assert.False(log.IsSecretParameter("page"));
    }

    [Fact]
    public void Unknown_fields_get_a_did_you_mean_at_their_position()
    {
        var result = Build(Head + """
            observability:
              accessLog:
                enabled: true
                fields: [time, requestID, statuss]
                exclude: [bogus]
            """);
        var id = ErrorContaining(result, "unknown access-log field 'requestID'");
        AssertAt(id, 5, 20);
        Assert.Contains("'requestId'", id.Hint, StringComparison.Ordinal);
        var status = ErrorContaining(result, "unknown access-log field 'statuss'");
        AssertAt(status, 5, 31);
        Assert.Contains("'status'", status.Hint, StringComparison.Ordinal);
        AssertAt(ErrorContaining(result, "unknown access-log field 'bogus'"), 6, 15);
    }

    [Fact]
    public void Absurd_values_are_refused_with_positions()
    {
        var result = Build(Head + """
            observability:
              accessLog:
                enabled: true
                target: file
                path: missing-dir/access.log
                maxSize: 10
                maxFiles: -1
                sampleSuccesses: 1.5
                queueSize: 0
                flushInterval: 1m
            """);
        AssertAt(ErrorContaining(result, "directory of 'missing-dir/access.log' does not exist"), 6, 11);
        AssertAt(ErrorContaining(result, "maxSize must be at least 1KiB"), 7, 14);
        AssertAt(ErrorContaining(result, "maxFiles cannot be negative"), 8, 15);
        AssertAt(ErrorContaining(result, "sampleSuccesses must be between 0 and 1"), 9, 22);
        AssertAt(ErrorContaining(result, "queueSize must be at least 1"), 10, 16);
        AssertAt(ErrorContaining(result, "flushInterval must be between 0 and 10s"), 11, 20);
    }

    [Fact]
    public void A_file_target_needs_a_path_and_a_directory_is_not_one()
    {
        var missing = Build(Head + """
            observability:
              accessLog: { enabled: true, target: file }
            """);
        AssertAt(ErrorContaining(missing, "target: file needs a path"), 3, 39);

        Directory.CreateDirectory(Path.Combine(_directory.FullName, "logs"));
        var directory = Build(Head + """
            observability:
              accessLog: { enabled: true, target: file, path: logs }
            """);
        Assert.Contains(directory.Errors, e => e.Message.Contains("is a directory", StringComparison.Ordinal));
    }

    [Fact]
    public void File_settings_on_stdout_and_a_disabled_log_warn()
    {
        var result = Build(Head + """
            observability:
              accessLog: { target: stdout, maxFiles: 2 }
            """);
        Assert.True(result.Succeeded, Dump(result));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.Contains("maxFiles applies to target: file only", StringComparison.Ordinal));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.Contains("configured but not enabled", StringComparison.Ordinal));
    }

    [Fact]
    public void Unknown_trust_mode_is_refused_by_the_binder()
    {
        var result = Build(Head + """
            observability:
              requestId: { trustInbound: sometimes }
            """);
        Assert.False(result.Succeeded);
        Assert.Contains(result.Errors, e => e.Message.Contains("trustInbound", StringComparison.Ordinal));
    }
}
