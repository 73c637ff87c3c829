using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>routes[].cache: keep the route's GET answers in memory as their Cache-Control allows.</summary>
internal sealed record RouteCacheOptions
{
    [Description("Cache this route's answers. Default true when the section is present.")]
    public bool Enabled { get; init; } = true;

    [Description("How long to keep an answer whose Cache-Control gives no max-age (or s-maxage). Default: none, such answers are not cached.")]
    public TimeSpan? DefaultTtl { get; init; }

    [Description("Request headers the answers may vary by (the upstream's Vary must name only these, else the answer is not cached), e.g. [Accept, Accept-Language]. The full query string always varies the cache.")]
    public IReadOnlyList<string> VaryByHeaders { get; init; } = [];

    [Description("On routes with auth: cache per consumer (one consumer never gets another's entry). Default false: routes with auth are not cached.")]
    public bool PerConsumer { get; init; }
}
