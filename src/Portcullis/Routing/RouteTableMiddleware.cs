using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Matching;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;

namespace Portcullis.Routing;

/// <summary>
/// Whether the route listeners match with <see cref="RouteTable"/> (the default) or with ASP.NET Core's DFA
/// matcher: <c>PORTCULLIS_ROUTE_TABLE=off</c> chooses the DFA, as an escape hatch and for comparisons.
/// </summary>
internal sealed record RouteMatcherSettings(bool UseRouteTable)
{
    public static RouteMatcherSettings FromEnvironment() =>
        new(!string.Equals(Environment.GetEnvironmentVariable("PORTCULLIS_ROUTE_TABLE"), "off", StringComparison.OrdinalIgnoreCase));
}

/// <summary>
/// The current <see cref="RouteTable"/> of the route listeners' endpoints: built on first use and again, on the
/// reload's own thread, whenever the endpoints change (YARP publishes a changed route set). Requests read it
/// without locks.
/// </summary>
internal sealed partial class RouteTableSource(RouteMatcherSettings settings, IEnumerable<MatcherPolicy> policies, ParameterPolicyFactory parameterPolicies,
    ILogger<RouteTableSource> logger)
{
    private readonly RouteTable.CandidateCache _prepared = new(policies, parameterPolicies);
    private readonly Lock _gate = new();
    private EndpointDataSource? _endpoints;
    private Built? _built;

    /// <summary>The table to match with, or null to leave matching to ASP.NET Core's routing.</summary>
    public RouteTable? Current => (Volatile.Read(ref _built) ?? Initialize())?.Table;

    /// <summary>Follows <paramref name="endpoints"/> (the route listeners' endpoints, all of them) from now on.</summary>
    public void Attach(EndpointDataSource endpoints)
    {
        if (!settings.UseRouteTable) return;
        _endpoints = endpoints;
        ChangeToken.OnChange(endpoints.GetChangeToken, Rebuild);
    }

    private Built? Initialize()
    {
        if (_endpoints is null) return null;
        lock (_gate)
        {
            return _built ??= Build(_endpoints);
        }
    }

    private void Rebuild()
    {
        lock (_gate)
        {
            // Not built yet: the first request builds it from the endpoints as they are then.
            if (_built is null) return;
            Volatile.Write(ref _built, Build(_endpoints!));
        }
    }

    private Built Build(EndpointDataSource source)
    {
        var started = Stopwatch.GetTimestamp();
        RouteTable? table;
        string? unsupported;
        try
        {
            table = RouteTable.Build(source.Endpoints, _prepared, out unsupported);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // This runs inside YARP's reload (the endpoints' change callback): a failure here must not fail the
            // reload; ASP.NET Core's matcher routes instead.
            (table, unsupported) = (null, $"an endpoint ({ex.GetType().Name}: {ex.Message})");
        }

        if (table is null) Log.Unsupported(logger, unsupported!);
        else Log.Built(logger, table.Count, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return new Built(table);
    }

    private sealed record Built(RouteTable? Table);

    private static partial class Log
    {
        [LoggerMessage(1040, LogLevel.Debug, "Route table built: {Count} endpoints in {Milliseconds:F1} ms")]
        public static partial void Built(ILogger logger, int count, double milliseconds);

        [LoggerMessage(1041, LogLevel.Warning, "The route table cannot hold {What}; ASP.NET Core's matcher routes requests instead")]
        public static partial void Unsupported(ILogger logger, string what);
    }
}

/// <summary>
/// Routing for the route listeners (<see cref="RouteTable"/>): sets the request's endpoint ahead of ASP.NET Core's
/// routing middleware, which then matches nothing itself. The gateway's own paths run at once, as routing's
/// short-circuit runs them.
/// </summary>
internal sealed class RouteTableMiddleware(RequestDelegate next, RouteTableSource source)
{
    public Task InvokeAsync(HttpContext context)
    {
        if (context.GetEndpoint() is null && source.Current is { } table && table.Match(context) is { } match)
        {
            context.SetEndpoint(match.Endpoint);
            if (match.ShortCircuit) return match.Endpoint.RequestDelegate!(context);
        }

        return next(context);
    }
}
