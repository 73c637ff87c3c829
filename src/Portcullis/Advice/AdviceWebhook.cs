using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// advice.webhook: every new finding (not muted) is POSTed as JSON, from a bounded queue of its own, so the engine
/// only enqueues (a full queue drops the finding and counts it). Each delivery is tried up to maxAttempts times,
/// each attempt cut off after timeout, with jittered exponential backoff between attempts (1 s, 2 s, 4 s … up to
/// 1 min, each ×0.5–1.5). A 2xx answer delivers it; anything else is a failed attempt.
/// </summary>
internal sealed partial class AdviceWebhook(
    SnapshotStore store,
    AdviceStateStore state,
    IHttpClientFactory clients,
    TimeProvider time,
    ILogger<AdviceWebhook> logger) : BackgroundService, IAdviceListener
{
    public const string HttpClientName = "portcullis-advice-webhook";
    public const int QueueSize = 1000;

    private static readonly MediaTypeHeaderValue Json = new("application/json") { CharSet = "utf-8" };

    private readonly Channel<Finding> _queue = Channel.CreateBounded<Finding>(new BoundedChannelOptions(QueueSize) { SingleReader = true });
    private long _delivered;
    private long _gaveUp;
    private long _dropped;
    private long _failedAttempts;

    /// <summary>First backoff; doubled per attempt up to <see cref="MaxDelay"/>.</summary>
    internal TimeSpan BaseDelay { get; init; } = TimeSpan.FromSeconds(1);

    internal static readonly TimeSpan MaxDelay = TimeSpan.FromMinutes(1);

    public long Delivered => Interlocked.Read(ref _delivered);

    /// <summary>Findings given up after maxAttempts.</summary>
    public long GaveUp => Interlocked.Read(ref _gaveUp);

    /// <summary>Findings not queued: the queue was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    public long FailedAttempts => Interlocked.Read(ref _failedAttempts);

    public void Published(FindingSet set, IReadOnlyList<Finding> newFindings)
    {
        if (store.Current.Advice?.Webhook is null) return;
        foreach (var finding in newFindings)
        {
            if (state.Get(finding.Id)?.Decision == FindingDecision.Muted) continue;
            if (_queue.Writer.TryWrite(finding)) continue;
            if (Interlocked.Increment(ref _dropped) == 1 || _dropped % 100 == 0) Log.Dropped(logger, finding.Id, finding.Kind, Dropped);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var finding in _queue.Reader.ReadAllAsync(stoppingToken))
            {
                await DeliverAsync(finding, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task DeliverAsync(Finding finding, CancellationToken stoppingToken)
    {
        var body = Body(finding);
        string? lastError = null;
        var attempts = 0;
        for (var attempt = 1; ; attempt++)
        {
            // The webhook of the snapshot current now: a reload may have changed or removed it.
            if (store.Current.Advice?.Webhook is not { } webhook) return;
            if (attempt > webhook.MaxAttempts) break;
            attempts = attempt;
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken))
            {
                timeout.CancelAfter(webhook.Timeout);
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, webhook.Url) { Content = new ByteArrayContent(body) };
                    request.Content.Headers.ContentType = Json;
                    request.Headers.TryAddWithoutValidation("X-Portcullis-Finding", finding.Id);
                    using var response = await clients.CreateClient(HttpClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
                    if (response.IsSuccessStatusCode)
                    {
                        Interlocked.Increment(ref _delivered);
                        return;
                    }

                    lastError = $"HTTP {(int)response.StatusCode}";
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    throw;
                }
                catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
                {
                    lastError = ex is OperationCanceledException ? $"no answer within {webhook.Timeout.TotalSeconds:0.###} s" : ex.Message;
                }
            }

            Interlocked.Increment(ref _failedAttempts);
            if (attempt >= webhook.MaxAttempts) break;
            await Task.Delay(Backoff(attempt), time, stoppingToken);
        }

        Interlocked.Increment(ref _gaveUp);
        Log.GaveUp(logger, finding.Id, finding.Kind, attempts, lastError ?? "the webhook was removed");
    }

    /// <summary>The pause after failed attempt <paramref name="attempt"/> (1-based): base × 2^(attempt-1), at most a minute, × 0.5–1.5.</summary>
    internal TimeSpan Backoff(int attempt)
    {
        var exponential = Math.Min(BaseDelay.TotalMilliseconds * Math.Pow(2, attempt - 1), MaxDelay.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(exponential * (0.5 + Random.Shared.NextDouble()));
    }

    private byte[] Body(Finding finding)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("event", "finding.new");
            w.WriteString("sentAt", time.GetUtcNow());
            w.WritePropertyName("finding");
            FindingJson.Write(w, new AdviceEntry(finding), state.Get(finding.Id));
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    private static partial class Log
    {
        [LoggerMessage(9710, LogLevel.Warning, "Advice: webhook gave up on finding {Id} ({Kind}) after {Attempts} attempt(s): {Error}")]
        public static partial void GaveUp(ILogger logger, string id, string kind, int attempts, string error);

        [LoggerMessage(9711, LogLevel.Warning, "Advice: webhook queue full, finding {Id} ({Kind}) not sent ({Dropped} dropped so far)")]
        public static partial void Dropped(ILogger logger, string id, string kind, long dropped);
    }
}
