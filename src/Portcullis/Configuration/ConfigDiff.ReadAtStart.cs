using Portcullis.Pipeline;

namespace Portcullis.Configuration;

/// <summary>The settings a reload cannot apply: "restart required".</summary>
internal static partial class ConfigDiff
{
    /// <summary>
    /// Every setting read once at start-up, with why: the single source of "restart required" for the
    /// reload answer, its log and audit record, and <c>portcullis diff</c>. Keep in step with
    /// docs/configuration.md (settings documented as "read at start").
    /// </summary>
    internal static readonly (string Setting, string Reason)[] ReadAtStart =
    [
        ("listeners", "listeners are bound by Kestrel at start-up"),
        ("limits", "Kestrel's limits are set at start-up"),
        ("identity.tokenCacheSize", "the token caches are sized at start-up"),
        ("identity.sessions", "sign-in providers, cookie and session store are built at start-up"),
        ("observability.accessLog.queueSize", "the access-log queue is sized at start-up"),
        ("observability.metrics.enabled", "the metrics reader is registered at start-up"),
        ("observability.tracing", "the trace exporter is set up at start-up"),
        ("analytics.path", "the analytics store is opened (or left off) at start-up"),
        ("analytics.samples.queueSize", "the analytics sample queue is sized at start-up"),
    ];

    /// <summary>The <see cref="ReadAtStart"/> settings a change touches.</summary>
    internal static IEnumerable<(string Setting, string Reason)> ReadAtStartOf(ConfigChange change)
    {
        foreach (var entry in ReadAtStart)
        {
            var dot = entry.Setting.IndexOf('.', StringComparison.Ordinal);
            var section = dot < 0 ? entry.Setting : entry.Setting[..dot];
            var field = dot < 0 ? null : entry.Setting[(dot + 1)..];
            var matches = section switch
            {
                "listeners" => change.Section == ListenerSection
                    && (change.Kind != ChangeKind.Changed || !change.Details.All(IsReloadableListenerDetail)),
                "limits" => change.Section == LimitsSection
                    && (change.Kind != ChangeKind.Changed || !change.Details.All(d => IsDetailOf(d, ReloadableLimitsFields))),
                // Sections compared field by field: details are "path: old → new" relative to the section.
                _ => change.Section == section && field is not null && change.Details.Any(d =>
                    d.StartsWith(field + ":", StringComparison.Ordinal) || d.StartsWith(field + ".", StringComparison.Ordinal)
                    || d.StartsWith(field + "[", StringComparison.Ordinal)),
            };
            if (matches) yield return entry;
        }
    }

    /// <summary>The sections of <see cref="ReadAtStart"/>, the rest left at their defaults.</summary>
    private static LoadedConfig ReadAtStartSections(LoadedConfig loaded) => loaded with
    {
        Config = new PortcullisConfig
        {
            Listeners = loaded.Config.Listeners,
            Limits = loaded.Config.Limits,
            Identity = loaded.Config.Identity,
            Observability = loaded.Config.Observability,
            Analytics = loaded.Config.Analytics,
        },
    };

    /// <summary>
    /// Serializes the sections read at start once, as a reload's restart diff will: System.Text.Json builds its
    /// metadata for the whole config model on first use (0.25–0.34 s on two cores, three quarters of the first reload
    /// of a 10-route config), which the reloader has done after start rather than during the first reload.
    /// </summary>
    internal static void WarmUp(GatewaySnapshot running) => _ = Node.Of(ReadAtStartSections(running.Source));

    /// <summary>
    /// The settings read at start-up that differ between what the gateway started with and
    /// <paramref name="next"/> (so a change stays reported until a restart, and undoing it needs none).
    /// </summary>
    internal static IReadOnlyList<(string Setting, string Reason)> PendingRestart(GatewaySnapshot running, GatewaySnapshot next)
    {
        if (ReferenceEquals(running, next)) return [];
        // Only the sections holding such settings are compared: serializing and walking every route and cluster
        // took most of a 50,000-route reload (issue 20).
        var pending = Compare(running, next, Node.Of(ReadAtStartSections(running.Source)), Node.Of(ReadAtStartSections(next.Source)))
            .Changes.SelectMany(ReadAtStartOf).Distinct().ToList();
        // In table order, as documented.
        pending.Sort((a, b) => Array.IndexOf(ReadAtStart, a).CompareTo(Array.IndexOf(ReadAtStart, b)));
        return pending;
    }
}
