using Microsoft.IdentityModel.Protocols;

namespace Portcullis.Identity;

/// <summary>
/// Fetches documents as HttpDocumentRetriever does (GET, success status required, http allowed as before)
/// and keeps each response's freshness lifetime, which IdentityModel's retriever does not expose.
/// </summary>
internal sealed class IssuerDocumentRetriever(HttpClient http) : IDocumentRetriever
{
    private readonly Dictionary<string, TimeSpan?> _lifetimes = new(StringComparer.Ordinal);

    public TimeSpan? LifetimeOf(string? address) => address is not null && _lifetimes.TryGetValue(address, out var lifetime) ? lifetime : null;

    public async Task<string> GetDocumentAsync(string address, CancellationToken cancel)
    {
        using var response = await http.GetAsync(address, cancel).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new IOException($"{address} answered {(int)response.StatusCode} {response.ReasonPhrase}");
        }

        var body = await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false);
        _lifetimes[address] = FreshnessLifetime(response);
        return body;
    }

    /// <summary>The response's freshness lifetime per RFC 9111 (max-age minus Age; no-cache / no-store: zero); null when it sets none.</summary>
    public static TimeSpan? FreshnessLifetime(HttpResponseMessage response)
    {
        var cacheControl = response.Headers.CacheControl;
        if (cacheControl is null) return null;
        if (cacheControl.NoStore || cacheControl.NoCache) return TimeSpan.Zero;
        if (cacheControl.MaxAge is not { } maxAge) return null;
        var age = response.Headers.Age ?? TimeSpan.Zero;
        return maxAge > age ? maxAge - age : TimeSpan.Zero;
    }
}
