using System.Collections.Frozen;
using System.Net;

namespace Portcullis.Pipeline;

/// <summary>
/// The compiled configuration a request runs on, as the per-request contract sees it. The contract needs
/// only what it resolves itself (the client address behind trusted proxies); stages read the whole model
/// through <c>GatewayFeature.Snapshot</c>, an accessor of the layer that composes it (Configuration), so
/// this folder names no capability (docs/architecture.md, dependency rules).
/// </summary>
internal interface IRequestGeneration
{
    /// <summary>The snapshot's generation number (1 for the first configuration, +1 per applied reload).</summary>
    long Generation { get; }

    bool IsTrustedProxy(IPAddress? address);
}

/// <summary>
/// What a route endpoint carries (endpoint metadata): the binding of its route to the generation it serves
/// now. YARP keeps the endpoint of a route a reload did not change, and the binding then moves to the new
/// generation; a request reads <see cref="Current"/> once (<see cref="GatewayFeature.BindRoute"/>) and runs on
/// that generation to the end.
/// </summary>
internal interface IRouteGenerationSource
{
    IRouteGeneration Current { get; }
}

/// <summary>
/// A route's binding to one generation: the route's id and the generation it was published
/// with. The request adopts that generation once routing matched (<see cref="GatewayFeature.BindRoute"/>);
/// Routing's <c>ResolveRoute</c> / <c>RouteBinding</c> accessors give stages the compiled route.
/// </summary>
internal interface IRouteGeneration
{
    string RouteId { get; }

    IRequestGeneration Generation { get; }

    /// <summary>The route authenticates (its auth is not anonymous): an undecided identity stage was not reached.</summary>
    bool HasAuth { get; }

    /// <summary>The route has rate limits, quotas or a concurrency limit.</summary>
    bool HasTrafficControl { get; }
}

/// <summary>
/// The caller the identity stage authenticated, as later stages, logs and analytics read it (the identity
/// capability's own model implements it; cached with the credential, so recording it allocates nothing).
/// </summary>
internal interface ICaller
{
    string? Subject { get; }

    /// <summary>Consumer id (token claim or API key consumer).</summary>
    string? Consumer { get; }

    string? ConsumerGroup { get; }

    /// <summary>Every claim as strings (arrays flattened), for map lookups and key templates.</summary>
    FrozenDictionary<string, string[]> Claims { get; }
}
