using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Admin;

/// <summary>
/// GET /admin/analytics/summary|timeseries|top|samples (docs/analytics.md#query-api), `read` scope. Queries
/// run on a thread of their own (DuckDB blocks; the request threads stay free), at most
/// <see cref="MaxConcurrent"/> at once, each cut off after <see cref="Timeout"/>: a busy or failing store
/// answers 503 problem+json, a bad parameter 400, analytics off 404 — never SQL or a stack trace.
/// </summary>
internal sealed partial class AdminAnalyticsApi(SnapshotStore store, IServiceProvider services, TimeProvider time, ILogger<AdminAnalyticsApi> logger) : IDisposable
{
    public const int MaxConcurrent = 2;
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly SemaphoreSlim _slots = new(MaxConcurrent);

    /// <summary>The four endpoints, mapped by <see cref="AdminEndpoints"/>.</summary>
    public static readonly (string Path, AnalyticsQueryKind Kind)[] Endpoints =
    [
        ("/admin/analytics/summary", AnalyticsQueryKind.Summary),
        ("/admin/analytics/timeseries", AnalyticsQueryKind.Timeseries),
        ("/admin/analytics/top", AnalyticsQueryKind.Top),
        ("/admin/analytics/samples", AnalyticsQueryKind.Samples),
    ];

    public void Dispose() => _slots.Dispose();

    public async Task QueryAsync(HttpContext context, AnalyticsQueryKind kind)
    {
        if (Source() is not { } source)
        {
            await ProblemWriter.WriteAsync(context, 404, "Analytics off", "Analytics is off: set analytics.path to record and query requests.", ReasonCodes.AnalyticsOff);
            return;
        }

        AnalyticsQueryParameters parameters;
        try
        {
            parameters = AnalyticsQueryParameters.Parse(kind, context.Request.Query.Select(q => KeyValuePair.Create(q.Key, q.Value.Select(v => v ?? "").ToArray())), time.GetUtcNow().UtcDateTime);
        }
        catch (AnalyticsQueryException ex)
        {
            await ProblemWriter.WriteAsync(context, 400, "Bad analytics parameter", ex.Message, ReasonCodes.AnalyticsBadParameter);
            return;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        timeout.CancelAfter(Timeout);
        AnalyticsResult result;
        try
        {
            if (!await _slots.WaitAsync(Timeout, timeout.Token))
            {
                await Unavailable(context, "Analytics queries are busy; try again.");
                return;
            }

            try
            {
                // A thread of its own: the query blocks in DuckDB for as long as it runs.
                result = await Task.Factory.StartNew(() =>
                {
                    using var connection = source.OpenConnection();
                    return AnalyticsQuery.Run(connection, parameters, source.Name, timeout.Token);
                }, timeout.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }
            finally
            {
                _slots.Release();
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            if (context.RequestAborted.IsCancellationRequested) return;
            var timedOut = timeout.IsCancellationRequested;
            Log.QueryFailed(logger, kind.ToString(), timedOut ? "timed out" : ex.GetType().Name + ": " + ex.Message);
            await Unavailable(context, timedOut ? $"The analytics query did not finish within {Timeout.TotalSeconds:0} s; query a shorter range." : "The analytics store cannot answer right now.");
            return;
        }

        await AdminApi.Json(context, 200, result.WriteJson);
    }

    // The fleet folder when analytics.fleetPath is set, else this instance's store; null when analytics is off.
    private AnalyticsSource? Source()
    {
        var snapshot = store.Current;
        if (snapshot.Analytics is null || services.GetService<AnalyticsDatabase>() is not { } database) return null;
        if (snapshot.Analytics.FleetPath is { } fleet) return AnalyticsSource.Fleet(fleet);
        return AnalyticsSource.Local(database);
    }

    private static Task Unavailable(HttpContext context, string detail) =>
        ProblemWriter.WriteAsync(context, 503, "Analytics unavailable", detail, ReasonCodes.AnalyticsUnavailable);

    private static partial class Log
    {
        [LoggerMessage(3020, LogLevel.Warning, "Admin: analytics {Query} query failed: {Error}")]
        public static partial void QueryFailed(ILogger logger, string query, string error);
    }
}
