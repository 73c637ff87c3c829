using System.Security.Cryptography;
using System.Text;

namespace Portcullis.Advice;

/// <summary>
/// One thing the advisor recommends or flags. Detectors return these; the engine keeps first/last seen across
/// runs (by <see cref="Id"/>), drops a patch that would not validate, and publishes the set to the API, the
/// dashboard, metrics and the webhook.
/// </summary>
internal sealed record Finding
{
    /// <summary>Stable across runs and restarts: <see cref="MakeId"/> of kind, subject and discriminator.</summary>
    public required string Id { get; init; }

    /// <summary>One of <see cref="FindingKinds"/>.</summary>
    public required string Kind { get; init; }

    public required FindingSeverity Severity { get; init; }

    public required FindingSubject Subject { get; init; }

    /// <summary>When the condition was first seen (the engine keeps the earliest across runs). UTC.</summary>
    public required DateTime FirstSeen { get; init; }

    /// <summary>When the condition was last seen. UTC.</summary>
    public required DateTime LastSeen { get; init; }

    /// <summary>One line: what is wrong or what is suggested ("Suggest 12/s per consumer on route reports").</summary>
    public required string Title { get; init; }

    /// <summary>One paragraph in plain words: what was seen, why it matters, what the patch would do.</summary>
    public required string Explanation { get; init; }

    public required Evidence Evidence { get; init; }

    /// <summary>How sure: low when the data is thin (e.g. under a day of history); see <see cref="Evidence.Basis"/>.</summary>
    public FindingConfidence Confidence { get; init; } = FindingConfidence.High;

    /// <summary>The config change that acts on it; null when none applies (or it would not validate).</summary>
    public ConfigPatch? Patch { get; init; }

    /// <summary>
    /// A short stable id: the first 12 hex digits of SHA-256 over "kind|subjectKind|subjectName|discriminator".
    /// The discriminator separates findings of one kind on one subject (e.g. the consumer group of a suggestion).
    /// </summary>
    public static string MakeId(string kind, FindingSubject subject, string? discriminator = null)
    {
        var text = $"{kind}|{subject.Kind.ToString().ToLowerInvariant()}|{subject.Name}|{discriminator}";
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..12];
    }
}

internal enum FindingSeverity
{
    /// <summary>A suggestion: nothing is wrong (e.g. a rate limit to add).</summary>
    Info,

    /// <summary>Likely a problem or an attack worth a look.</summary>
    Warning,

    /// <summary>Hurting clients now, or about to (an upstream failing, a certificate expiring in days).</summary>
    Critical,
}

internal enum FindingConfidence
{
    Low,
    Medium,
    High,
}

internal enum SubjectKind
{
    Route,
    Consumer,
    ConsumerGroup,
    Cluster,
    Destination,
    Listener,

    /// <summary>A client address (anonymous callers: scanners, credential stuffing).</summary>
    Client,
    Certificate,
    Issuer,
    RateLimit,

    /// <summary>The gateway as a whole (e.g. unmatched traffic).</summary>
    Gateway,
}

/// <summary>What a finding is about: a route, consumer, cluster, … by name; <paramref name="Route"/> narrows a consumer or client finding to one route.</summary>
internal sealed record FindingSubject(SubjectKind Kind, string Name, string? Route = null);

/// <summary>
/// The numbers behind a finding and the window they come from, with a link to the dashboard rows behind them
/// (<see cref="DashboardLinks"/>). <see cref="Basis"/> says how much data it rests on ("3 h of data, 1,204 requests").
/// </summary>
internal sealed record Evidence(DateTime From, DateTime To, IReadOnlyList<EvidenceValue> Values)
{
    public string? DashboardLink { get; init; }

    public string? Basis { get; init; }
}

/// <summary>One number of the evidence, e.g. ("p99 upstream latency", 4.6, "s", baseline 0.2).</summary>
internal sealed record EvidenceValue(string Name, double Value, string? Unit = null, double? Baseline = null);

/// <summary>
/// A YAML fragment merged into the config file: mappings merge key by key, recursively; sequences of named
/// items (routes, listeners: items with a `name`) merge item by item on `name`, an unknown name is appended;
/// other sequences and scalars replace; a key set to null is removed. Only what changes is in the fragment,
/// e.g. a new rate limit and the route that uses it:
/// <code>
/// rateLimits:
///   suggested-reports: { key: [consumer], limit: 12, per: 1s, burst: 30 }
/// routes:
///   - name: reports
///     rateLimits: [per-consumer, suggested-reports]
/// </code>
/// </summary>
/// <param name="Yaml">The fragment.</param>
/// <param name="Summary">One line for `portcullis advise` and the dashboard ("adds rateLimits.suggested-reports and uses it on route reports").</param>
internal sealed record ConfigPatch(string Yaml, string Summary)
{
    /// <summary>
    /// The file the fragment is merged into, relative to the main config file's folder (or a full path outside it):
    /// the file that defines what it changes — an included file, the overlay whose definition wins, or the main
    /// file. Set by the engine when it validates the patch; null before.
    /// </summary>
    public string? File { get; init; }
}
