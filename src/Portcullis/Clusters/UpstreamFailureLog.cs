using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace Portcullis.Clusters;

/// <summary>
/// Routine upstream failures (a refused connection, a timeout, a failed health probe) as one line with
/// their cause at Warning; the exception with its stack trace only at Debug. YARP logs each of them with
/// the full exception at Warning (hundreds of stack traces per minute for one stopped upstream), so its
/// categories for these events are filtered (<see cref="Filtered"/>) and the gateway logs them here.
/// </summary>
internal static partial class UpstreamFailureLog
{
    /// <summary>YARP's categories whose Warning lines this class replaces (their Error lines stay).</summary>
    public static readonly string[] Filtered =
    [
        "Yarp.ReverseProxy.Forwarder.HttpForwarder", // "{error}: {message}" with the exception, per failed request
        "Yarp.ReverseProxy.Health.ActiveHealthCheckMonitor", // "Probing destination … failed" with the exception, per probe
        "Yarp.ReverseProxy.LoadBalancing.LoadBalancingMiddleware", // "No available destinations", which ForwarderMiddleware logs again
    ];

    private const int MaxCauseLength = 300;

    /// <summary>The log category of these lines (<c>Portcullis.Clusters.UpstreamFailureLog.Category</c>).</summary>
    internal sealed class Category;

    /// <summary>Logs a request the forwarder could not complete: Warning when the upstream failed, Debug when the client did.</summary>
    public static void ProxyFailed(ILogger logger, ForwarderError error, Exception? exception, string requestId, string? route, string? cluster, string? destination)
    {
        if (error == ForwarderError.NoAvailableDestinations) return; // YARP's ForwarderMiddleware says it in one line
        var clientSide = IsClientSide(error);
        if (!logger.IsEnabled(clientSide ? LogLevel.Debug : LogLevel.Warning)) return;
        var cause = Describe(error, exception);
        if (clientSide) Log.ClientEnded(logger, requestId, route ?? "-", error, cause);
        else Log.ProxyFailed(logger, requestId, route ?? "-", destination ?? "-", cluster ?? "-", error, cause);
        if (exception is not null && logger.IsEnabled(LogLevel.Debug)) Log.ProxyFailedDetail(logger, requestId, exception);
    }

    /// <summary>A failed health probe, already judged worth a line (<paramref name="repeat"/>: the same cause as the probe before).</summary>
    public static void ProbeFailed(ILogger logger, string destination, string cluster, string cause, bool repeat, Exception? exception)
    {
        if (repeat) Log.ProbeFailedAgain(logger, destination, cluster, cause);
        else Log.ProbeFailed(logger, destination, cluster, cause);
        if (exception is not null && logger.IsEnabled(LogLevel.Debug)) Log.ProbeFailedDetail(logger, destination, cluster, exception);
    }

    // The client went away or sent a broken body: nothing an operator of the upstream can act on.
    private static bool IsClientSide(ForwarderError error) => error is ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled
        or ForwarderError.RequestBodyClient or ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient
        or ForwarderError.UpgradeRequestCanceled or ForwarderError.UpgradeRequestClient or ForwarderError.UpgradeResponseCanceled
        or ForwarderError.UpgradeResponseClient;

    /// <summary>The cause in one short line: the messages of the exception chain, each said once.</summary>
    public static string Describe(ForwarderError error, Exception? exception)
    {
        // YARP reports its own request timeout (cluster `timeouts.request`) as a bare cancellation.
        if (error == ForwarderError.RequestTimedOut && exception is OperationCanceledException { InnerException: not TimeoutException })
        {
            return "no answer within the cluster's request timeout";
        }

        return Describe(exception);
    }

    public static string Describe(Exception? exception)
    {
        if (exception is null) return "no details";
        var cause = "";
        for (var e = exception; e is not null; e = e.InnerException)
        {
            var message = e.Message.Trim().TrimEnd('.');
            if (message.Length == 0 || cause.Contains(message, StringComparison.OrdinalIgnoreCase)) continue;
            // A wrapper's message that the inner one repeats in full adds nothing.
            cause = cause.Length == 0 || message.Contains(cause, StringComparison.OrdinalIgnoreCase) ? message : cause + ": " + message;
        }

        if (cause.Length == 0) cause = exception.GetType().Name;
        return cause.Length <= MaxCauseLength ? cause : cause[..MaxCauseLength] + "…";
    }

    private static partial class Log
    {
        [LoggerMessage(2003, LogLevel.Warning, "Request {RequestId} on route {Route} to destination {Destination} of cluster {Cluster} failed: {Error}: {Cause}")]
        public static partial void ProxyFailed(ILogger logger, string requestId, string route, string destination, string cluster, ForwarderError error, string cause);

        [LoggerMessage(2004, LogLevel.Debug, "Request {RequestId} failed upstream; the exception")]
        public static partial void ProxyFailedDetail(ILogger logger, string requestId, Exception exception);

        [LoggerMessage(2005, LogLevel.Debug, "Request {RequestId} on route {Route} ended by the client: {Error}: {Cause}")]
        public static partial void ClientEnded(ILogger logger, string requestId, string route, ForwarderError error, string cause);

        [LoggerMessage(2110, LogLevel.Warning, "Health probe of destination {Destination} of cluster {Cluster} failed: {Cause}")]
        public static partial void ProbeFailed(ILogger logger, string destination, string cluster, string cause);

        [LoggerMessage(2111, LogLevel.Debug, "Health probe of destination {Destination} of cluster {Cluster} failed again: {Cause}")]
        public static partial void ProbeFailedAgain(ILogger logger, string destination, string cluster, string cause);

        [LoggerMessage(2112, LogLevel.Debug, "Health probe of destination {Destination} of cluster {Cluster} failed; the exception")]
        public static partial void ProbeFailedDetail(ILogger logger, string destination, string cluster, Exception exception);
    }
}
