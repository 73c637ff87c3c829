using System.Collections.Frozen;
using Microsoft.IdentityModel.Tokens;

namespace Portcullis.Identity;

/// <summary>Where an issuer's keys come from, compiled from its options.</summary>
internal sealed record IssuerKeySource(string Name, string? Authority, string? JwksUri, string? JwksFile, TimeSpan RefreshInterval, TimeSpan UnknownKidRefreshInterval, TimeSpan StaleFor, TimeSpan Timeout, TimeSpan MinRefreshInterval);

/// <summary>One fetched set of verification keys.</summary>
internal sealed class IssuerKeySet(FrozenDictionary<string, SecurityKey> byKid, SecurityKey[] all, string? discoveredIssuer, DateTimeOffset fetchedAt)
{
    public FrozenDictionary<string, SecurityKey> ByKid { get; } = byKid;

    public SecurityKey[] All { get; } = all;

    public string? DiscoveredIssuer { get; } = discoveredIssuer;

    public DateTimeOffset FetchedAt { get; } = fetchedAt;
}

internal enum KeyAvailability
{
    /// <summary>Keys fetched within the refresh interval (or still inside the stale window).</summary>
    Available,

    /// <summary>Never fetched yet: the issuer's routes answer 503 until keys arrive.</summary>
    NotYetLoaded,

    /// <summary>The provider has been unreachable for longer than the stale window: fail closed.</summary>
    Expired,
}
