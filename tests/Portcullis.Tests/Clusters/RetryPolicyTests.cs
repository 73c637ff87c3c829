using Portcullis.Clusters;
using Portcullis.Configuration;

namespace Portcullis.Tests.Clusters;

/// <summary>
/// clusters.*.retries: the shorthand and the full form compiled, validation positions, the jittered backoff's
/// bounds, and the retry budget's arithmetic over its sliding window (seconds given explicitly: no clock).
/// </summary>
public sealed class RetryPolicyTests() : ConfigBuildTestBase("portcullis-retry-")
{
    private const string Head = """
        listeners:
          - name: public
            address: 127.0.0.1:8080
        routes:
          - { name: all, cluster: a }
        clusters:
          a:
            destinations: [http://127.0.0.1:5001, http://127.0.0.1:5002]

        """;

    [Fact]
    public void Shorthand_sets_attempts_and_keeps_the_defaults()
    {
        var result = Build(Head + "    retries: 3\n");
        Assert.True(result.Succeeded, Dump(result));
        var retry = result.Snapshot!.Clusters["a"].Retry;
        Assert.Equal(3, retry.Attempts);
        Assert.True(retry.OnConnectFailure && retry.OnReset);
        Assert.False(retry.OnTimeout || retry.OnStatus);
        Assert.Equal(64 * 1024, retry.BufferBody);
        Assert.Null(retry.PerTryTimeout);

        var off = Build(Head + "    retries: 0\n");
        Assert.Equal(0, off.Snapshot!.Clusters["a"].Retry.Attempts);
        // Unset: 2 attempts, as before the mapping form existed.
        Assert.Equal(2, Build(Head).Snapshot!.Clusters["a"].Retry.Attempts);
    }

    [Fact]
    public void Full_form_compiles_statuses_timeouts_and_bounds()
    {
        var result = Build(Head + """
                retries:
                  attempts: 1
                  on: [timeout, 502, 503]
                  perTryTimeout: 300ms
                  deadline: 2s
                  backoff: { base: 10ms, max: 40ms }
                  budget: { percent: 50, minPerSecond: 0 }
                  bufferBody: 1KiB

            """);
        Assert.True(result.Succeeded, Dump(result));
        var retry = result.Snapshot!.Clusters["a"].Retry;
        Assert.Equal(1, retry.Attempts);
        Assert.False(retry.OnConnectFailure || retry.OnReset);
        Assert.True(retry.OnTimeout && retry.OnStatus);
        Assert.Equal([502, 503], retry.Statuses);
        Assert.True(retry.RetriesStatus(503));
        Assert.False(retry.RetriesStatus(504));
        Assert.False(retry.RetriesStatus(200));
        Assert.Equal(TimeSpan.FromMilliseconds(300), retry.PerTryTimeout);
        Assert.Equal(TimeSpan.FromSeconds(2), retry.Deadline);
        Assert.Equal(1024, retry.BufferBody);
        Assert.True(retry.TimesTries);
    }

    [Fact]
    public void Envoys_status_groups_are_understood()
    {
        var result = Build(Head + "    retries: { on: [gateway-error, 503, 429] }\n");
        Assert.True(result.Succeeded, Dump(result));
        Assert.Equal([429, 502, 503, 504], result.Snapshot!.Clusters["a"].Retry.Statuses);
        var all = Build(Head + "    retries: { on: [5xx] }\n").Snapshot!.Clusters["a"].Retry;
        Assert.Equal(100, all.Statuses.Count);
        Assert.True(all.RetriesStatus(500) && all.RetriesStatus(599) && !all.RetriesStatus(499));
    }

    [Fact]
    public void Every_bad_value_is_reported_at_its_position()
    {
        var result = Build(Head + """
                retries:
                  attempts: -1
                  on: [connect-failure, 6xx, 700]
                  perTryTimeout: 0s
                  backoff: { base: 50ms, max: 10ms }
                  budget: { percent: 150, minPerSecond: -1 }
                  bufferBody: 1GiB

            """);
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "attempts cannot be negative"), 10, 17);
        AssertAt(ErrorContaining(result, "'6xx' is not something"), 11, 29);
        AssertAt(ErrorContaining(result, "'700' is not something"), 11, 34);
        AssertAt(ErrorContaining(result, "perTryTimeout must be"), 12, 22);
        AssertAt(ErrorContaining(result, "backoff.max is below"), 13, 35);
        AssertAt(ErrorContaining(result, "budget.percent must be"), 14, 26);
        AssertAt(ErrorContaining(result, "minPerSecond cannot be negative"), 14, 45);
        AssertAt(ErrorContaining(result, "bufferBody must be"), 15, 19);
        Assert.Equal(8, result.Errors.Count());
    }

    [Fact]
    public void Retrying_a_plain_4xx_or_timeout_without_perTryTimeout_warns()
    {
        var result = Build(Head + "    retries: { on: [404, timeout] }\n");
        Assert.True(result.Succeeded, Dump(result));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.Contains("status 404", StringComparison.Ordinal));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.Contains("without perTryTimeout", StringComparison.Ordinal));
    }

    [Fact]
    public void Backoff_is_full_jitter_up_to_base_times_two_to_the_retry_capped_at_max()
    {
        var retry = new CompiledRetryPolicy { Attempts = 5, Budget = new RetryBudget(20, 10), BackoffBase = TimeSpan.FromMilliseconds(25), BackoffMax = TimeSpan.FromMilliseconds(250) };
        Assert.Equal(TimeSpan.Zero, retry.Backoff(1, 0));
        Assert.Equal(25, retry.Backoff(1, 1).TotalMilliseconds, 3);
        Assert.Equal(50, retry.Backoff(2, 1).TotalMilliseconds, 3);
        Assert.Equal(100, retry.Backoff(3, 1).TotalMilliseconds, 3);
        Assert.Equal(250, retry.Backoff(5, 1).TotalMilliseconds, 3);
        Assert.Equal(250, retry.Backoff(60, 1).TotalMilliseconds, 3);
        Assert.Equal(50, retry.Backoff(3, 0.5).TotalMilliseconds, 3);
    }

    [Fact]
    public void Budget_allows_the_floor_then_the_share_of_requests()
    {
        // 20 % of requests + 1 per second of the 10-second window.
        var budget = new RetryBudget(20, 1);
        const long second = 1_000;
        Assert.Equal(10, Drain(budget, second));

        for (var i = 0; i < 100; i++) budget.RecordRequest(second);
        Assert.Equal(20, Drain(budget, second));
    }

    [Fact]
    public void Budget_window_slides_old_seconds_out()
    {
        var budget = new RetryBudget(10, 0);
        for (var i = 0; i < 100; i++) budget.RecordRequest(100);
        Assert.Equal(10, Drain(budget, 100));

        // Nine seconds on, the requests and retries of second 100 still count: nothing more is allowed.
        Assert.Equal(0, Drain(budget, 109));

        // At second 110 second 100 has left the window: no requests, no retries, nothing allowed (floor 0).
        Assert.Equal(0, Drain(budget, 110));
        for (var i = 0; i < 50; i++) budget.RecordRequest(110);
        Assert.Equal(5, Drain(budget, 110));

        // The bucket of second 100 is reused by second 120 (same slot): its old counts are gone.
        for (var i = 0; i < 30; i++) budget.RecordRequest(120);
        Assert.Equal(3, Drain(budget, 120));
    }

    [Fact]
    public void Under_a_total_outage_retries_stay_within_the_share_over_many_windows()
    {
        // 1,000 requests per second for a minute, each failing and asking for a retry.
        var budget = new RetryBudget(20, 10);
        long retries = 0, requests = 0;
        for (long second = 5_000; second < 5_060; second++)
        {
            for (var i = 0; i < 1_000; i++)
            {
                budget.RecordRequest(second);
                requests++;
                if (budget.TryRetry(second)) retries++;
            }
        }

        // At most 20 % + the floor (10/s): 12,000 + 600.
        Assert.InRange(retries, 11_000, 12_600);
    }

    private static int Drain(RetryBudget budget, long second)
    {
        var allowed = 0;
        while (allowed < 100_000 && budget.TryRetry(second)) allowed++;
        return allowed;
    }
}
