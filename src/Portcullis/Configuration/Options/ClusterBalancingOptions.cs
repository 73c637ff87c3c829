using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>clusters.NAME.consistentHash: the key of a consistent-hash cluster and its load bound.</summary>
internal sealed record ConsistentHashOptions
{
    [Description("The request source hashed to choose a destination: header:NAME, cookie:NAME, query:NAME, claim:NAME, consumer, consumerGroup, ip, path, ... A request without it goes to a random destination.")]
    public string Key { get; init; } = "";

    [Description("Bounded loads: a destination with this many times the average requests in flight is passed over for the next one on the ring. At least 1; default 1.25. 0 turns the bound off (pure consistent hashing).")]
    public double BalanceFactor { get; init; } = 1.25;
}

/// <summary>clusters.NAME.affinity: cookie-based session affinity.</summary>
internal sealed record ClusterAffinityOptions
{
    [Description("Cookie that names the destination (a hash of its name: the same on every instance, no key to share). Default .Portcullis.Affinity.")]
    public string Cookie { get; init; } = ".Portcullis.Affinity";

    [Description("When the destination in the cookie is not available: redistribute (default: choose another and set a new cookie) or return503.")]
    public AffinityFailurePolicy FailurePolicy { get; init; } = AffinityFailurePolicy.Redistribute;

    [Description("Cookie lifetime; without it a session cookie (until the browser closes).")]
    public TimeSpan? MaxAge { get; init; }
}

internal enum AffinityFailurePolicy
{
    Redistribute,
    Return503,
}
