using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// headers.missing-security and headers.leaking. Live, from the response-header findings the gateway counts
/// (require:NAME and forbid:NAME per route); from the config, offline too: a TLS listener without HSTS (the
/// gateway's own security-header setting), and a proxied cluster through which nothing strips the leaking headers.
/// </summary>
internal sealed class ServiceHeaderDetector : IAdviceDetector
{
    public string Name => "services.headers";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        var findings = new List<Finding>();
        var options = context.Settings.Services;
        if (options.SecurityHeaders.Count > 0) MissingSecurity(context, findings);
        if (options.LeakingHeaders.Count > 0) Leaking(context, findings);
        return findings;
    }

    private static void MissingSecurity(AdviceContext context, List<Finding> findings)
    {
        var options = context.Settings.Services;
        var from = context.Now - TimeSpan.FromDays(1);
        if (options.SecurityHeaders.Contains("Strict-Transport-Security", StringComparer.OrdinalIgnoreCase))
        {
            foreach (var listener in context.Snapshot.Listeners)
            {
                if (listener.Admin || listener.Tls is not { Hsts: null }) continue;
                var patch = new ConfigPatch($"listeners:\n  - name: {ServiceAdvice.Yaml(listener.Name)}\n    tls:\n      hsts:\n        maxAge: 180d\n",
                    $"turns on HSTS (Strict-Transport-Security, max-age 180 days) on listener {listener.Name}");
                findings.Add(ServiceAdvice.Make(context, FindingKinds.MissingSecurityHeaders, FindingSeverity.Info, new FindingSubject(SubjectKind.Listener, listener.Name),
                    $"Listener {listener.Name} serves HTTPS without Strict-Transport-Security",
                    $"Listener {listener.Name} serves HTTPS but sends no Strict-Transport-Security header, so a browser that once reached it over plain HTTP can be downgraded again. "
                    + "The patch turns on the listener's hsts setting (max-age 180 days, the default); add includeSubDomains once every subdomain serves HTTPS.",
                    new Evidence(context.Now, context.Now, [new("listeners over TLS without hsts", 1, "listeners")]) { Basis = "the configuration" },
                    patch: patch, discriminator: "hsts"));
            }
        }

        // Answers seen without a header a route's responseHeaders.require asks for.
        foreach (var group in context.Runtime.ResponseHeaderFindings().Where(f => f.Count > 0 && f.Finding.StartsWith("require:", StringComparison.OrdinalIgnoreCase))
                     .Select(f => (f.Route, Header: f.Finding["require:".Length..], f.Count))
                     .Where(f => options.SecurityHeaders.Contains(f.Header, StringComparer.OrdinalIgnoreCase))
                     .GroupBy(f => f.Route))
        {
            var headers = string.Join(", ", group.Select(g => g.Header));
            var count = group.Sum(g => g.Count);
            findings.Add(ServiceAdvice.Make(context, FindingKinds.MissingSecurityHeaders, FindingSeverity.Warning, new FindingSubject(SubjectKind.Route, group.Key),
                $"Answers of route {group.Key} lack {headers}",
                $"Since the gateway started, {ServiceAdvice.Number(count)} answers of route {group.Key} came from the upstream without {headers}, which its responseHeaders.require asks for. "
                + "Browsers then apply no such protection to them. The upstream has to add the header (the gateway only adds Strict-Transport-Security, with a TLS listener's hsts).",
                new Evidence(from, context.Now, [.. group.Select(g => new EvidenceValue("answers without " + g.Header, g.Count, "responses"))])
                {
                    Basis = "the gateway's response-header findings since start (portcullis_response_header_findings_total)",
                    DashboardLink = DashboardLinks.Route(group.Key, from, context.Now),
                },
                discriminator: "observed"));
        }
    }

    private void Leaking(AdviceContext context, List<Finding> findings)
    {
        var options = context.Settings.Services;
        var config = context.Snapshot.Config;
        var from = context.Now - TimeSpan.FromDays(1);

        // Observed: forbid:NAME counted on a route that only logs it, so the header reached clients.
        var observed = context.Runtime.ResponseHeaderFindings().Where(f => f.Count > 0 && f.Finding.StartsWith("forbid:", StringComparison.OrdinalIgnoreCase))
            .Select(f => (f.Route, Header: f.Finding["forbid:".Length..], f.Count))
            .Where(f => options.LeakingHeaders.Contains(f.Header, StringComparer.OrdinalIgnoreCase))
            .GroupBy(f => f.Route);
        foreach (var group in observed)
        {
            var route = config.Routes.FirstOrDefault(r => r.Name == group.Key);
            if (route is null || route.ResponseHeaders is not { Action: ResponseHeaderAction.Log }) continue;
            var headers = string.Join(", ", group.Select(g => g.Header));
            findings.Add(ServiceAdvice.Make(context, FindingKinds.LeakingHeaders, FindingSeverity.Warning, new FindingSubject(SubjectKind.Route, group.Key),
                $"Route {group.Key} passes {headers} to clients",
                $"Since the gateway started, {ServiceAdvice.Number(group.Sum(g => g.Count))} answers of route {group.Key} carried {headers}, which its responseHeaders forbid but only log. "
                + "They tell an attacker which server software and version to aim at. The patch sets the route's responseHeaders.action to strip, which removes forbidden headers (and headers failing a rule) from the answers.",
                new Evidence(from, context.Now, [.. group.Select(g => new EvidenceValue("answers with " + g.Header, g.Count, "responses"))])
                {
                    Basis = "the gateway's response-header findings since start (portcullis_response_header_findings_total)",
                    DashboardLink = DashboardLinks.Route(group.Key, from, context.Now),
                },
                patch: new ConfigPatch(ServiceAdvice.RoutePatch(group.Key, "responseHeaders:\n  action: strip"), $"sets routes.{group.Key}.responseHeaders.action to strip"),
                discriminator: "observed"));
        }

        // Config: a proxied cluster where neither it nor every route to it strips the leaking headers. Folded per
        // cluster in one pass over the routes, and clusters grouped by what they miss without a list per cluster:
        // this runs every minute, and at 50,000 routes the lists were megabytes a run that an idle gateway never collects.
        var leaking = options.LeakingHeaders;
        var traffic = context.Analytics is null ? null : ServiceAdvice.ClusterTraffic(context, from);
        var strippedByEveryRoute = new Dictionary<string, bool[]>(StringComparer.Ordinal);
        foreach (var (route, cluster) in ServiceAdvice.RouteClusters(config))
        {
            if (!strippedByEveryRoute.TryGetValue(cluster, out var stripped))
            {
                strippedByEveryRoute[cluster] = stripped = new bool[leaking.Count];
                Array.Fill(stripped, true);
            }

            if (route.ResponseHeaders is null)
            {
                Array.Clear(stripped);
                continue;
            }

            for (var i = 0; i < leaking.Count; i++) stripped[i] &= Strips(route.ResponseHeaders, leaking[i]);
        }

        var plain = new List<(bool[] Missing, List<(string Cluster, long Requests)> Clusters)>();
        var single = new List<(string Cluster, List<string> Missing, ResponseHeaderPolicyOptions? Existing, long Requests)>();
        var missingNow = new bool[leaking.Count];
        foreach (var (cluster, strippedByRoutes) in strippedByEveryRoute)
        {
            if (!config.Clusters.TryGetValue(cluster, out var clusterOptions)) continue;
            if (traffic is not null && traffic.GetValueOrDefault(cluster) < options.MinTrafficRequests) continue;
            var any = false;
            for (var i = 0; i < leaking.Count; i++)
            {
                missingNow[i] = !strippedByRoutes[i] && !Strips(clusterOptions.ResponseHeaders, leaking[i]);
                any |= missingNow[i];
            }

            if (!any) continue;
            var requests = traffic?.GetValueOrDefault(cluster) ?? 0;
            if (clusterOptions.ResponseHeaders is null)
            {
                var group = 0;
                while (group < plain.Count && !plain[group].Missing.AsSpan().SequenceEqual(missingNow)) group++;
                if (group == plain.Count) plain.Add(((bool[])missingNow.Clone(), []));
                plain[group].Clusters.Add((cluster, requests));
            }
            else
            {
                single.Add((cluster, Names(leaking, missingNow), clusterOptions.ResponseHeaders, requests));
            }
        }

        var groupedPatches = new Dictionary<string, (List<string> Names, ConfigPatch Patch)>(StringComparer.Ordinal);
        foreach (var (mask, group) in plain)
        {
            var missing = Names(leaking, mask);
            if (group.Count > GroupAbove)
            {
                findings.Add(LeakingFromClusters(context, from, missing, group, traffic is not null, groupedPatches));
                continue;
            }

            foreach (var (cluster, requests) in group) single.Add((cluster, missing, null, requests));
        }

        _groupedPatches = groupedPatches;

        foreach (var (cluster, missing, existing, requests) in single)
        {
            ConfigPatch? patch = null;
            if (existing is null || existing.Action != ResponseHeaderAction.Block)
            {
                patch = new ConfigPatch(ServiceAdvice.ClusterPatch(cluster, StripBody(existing, missing)),
                    $"strips {string.Join(", ", missing)} from the answers of cluster {cluster}" + (existing is { Action: ResponseHeaderAction.Log } ? " (its responseHeaders.action becomes strip)" : ""));
            }

            findings.Add(ServiceAdvice.Make(context, FindingKinds.LeakingHeaders, FindingSeverity.Info, new FindingSubject(SubjectKind.Cluster, cluster),
                $"Nothing strips {string.Join(", ", missing)} from cluster {cluster}'s answers",
                $"Answers from cluster {cluster} reach clients with whatever {string.Join(" and ", missing)} header the upstream sets: nothing in its responseHeaders (or its routes') forbids and strips them. "
                + "They tell an attacker which server software and version to aim at. " + (patch is not null ? "The patch forbids them on the cluster with action strip." : "The cluster's responseHeaders blocks on findings, so there is no patch: add them to its forbid list if a 502 is what you want."),
                new Evidence(from, context.Now, [new("headers not stripped", missing.Count, "headers"), new("requests", requests, "requests")])
                {
                    Basis = traffic is null ? "the configuration" : "the configuration and the last day of traffic",
                    DashboardLink = DashboardLinks.Samples(from, context.Now, ("cluster", cluster)),
                },
                patch: patch, discriminator: "config"));
        }
    }

    /// <summary>
    /// More clusters than this with the same headers unstripped (and no responseHeaders of their own) are one finding
    /// with one patch: at 5,000 clusters, 5,000 findings saying the same thing bury everything else.
    /// </summary>
    internal const int GroupAbove = 10;

    // The grouped patches of the last run, by their headers: one names every cluster (454 KB at 50,000 routes), so it
    // is built again only when its clusters change. Runs are serialized by the engine.
    private Dictionary<string, (List<string> Names, ConfigPatch Patch)> _groupedPatches = new(StringComparer.Ordinal);

    private Finding LeakingFromClusters(AdviceContext context, DateTime from, List<string> missing, List<(string Cluster, long Requests)> group, bool fromTraffic,
        Dictionary<string, (List<string> Names, ConfigPatch Patch)> patches)
    {
        var headers = string.Join(", ", missing);
        var names = group.Select(g => g.Cluster).Order(StringComparer.Ordinal).ToList();
        if (!_groupedPatches.TryGetValue(headers, out var built) || !built.Names.SequenceEqual(names, StringComparer.Ordinal))
        {
            var yaml = new System.Text.StringBuilder("clusters:\n");
            var body = string.Join('\n', StripBody(null, missing).TrimEnd('\n').Split('\n').Select(line => "    " + line)) + "\n";
            foreach (var name in names) yaml.Append("  ").Append(ServiceAdvice.Yaml(name)).Append(":\n").Append(body);
            built = (names, new ConfigPatch(yaml.ToString(), $"strips {headers} from the answers of {ServiceAdvice.Number(names.Count)} clusters"));
        }

        patches[headers] = built;
        var shown = string.Join(", ", names.Take(5)) + (names.Count > 5 ? $" and {ServiceAdvice.Number(names.Count - 5)} more" : "");
        return ServiceAdvice.Make(context, FindingKinds.LeakingHeaders, FindingSeverity.Info, new FindingSubject(SubjectKind.Gateway, "clusters"),
            $"Nothing strips {headers} from the answers of {ServiceAdvice.Number(names.Count)} clusters",
            $"Answers from {ServiceAdvice.Number(names.Count)} clusters ({shown}) reach clients with whatever {string.Join(" and ", missing)} header the upstream sets: "
            + "none of them has responseHeaders, and not every route to them strips these. They tell an attacker which server software and version to aim at. "
            + "The patch forbids them on each of these clusters with action strip.",
            new Evidence(from, context.Now, [new("clusters not stripping them", names.Count, "clusters"), new("headers not stripped", missing.Count, "headers"),
                new("requests", group.Sum(g => g.Requests), "requests")])
            {
                Basis = fromTraffic ? "the configuration and the last day of traffic" : "the configuration",
                DashboardLink = DashboardLinks.Samples(from, context.Now),
            },
            patch: built.Patch,
            discriminator: "config:" + string.Join(",", missing));
    }

    // The cluster's responseHeaders with the missing headers forbidden and action strip (require and the rest kept by the merge).
    private static string StripBody(ResponseHeaderPolicyOptions? existing, List<string> missing)
    {
        var forbid = (existing?.Forbid ?? []).Concat(missing.Where(m => !(existing?.Forbid ?? []).Contains(m, StringComparer.OrdinalIgnoreCase))).ToList();
        return $"responseHeaders:\n  forbid: {ServiceAdvice.FlowList(forbid)}\n  action: strip";
    }

    private static List<string> Names(IReadOnlyList<string> headers, bool[] chosen)
    {
        var names = new List<string>();
        for (var i = 0; i < headers.Count; i++)
        {
            if (chosen[i]) names.Add(headers[i]);
        }

        return names;
    }

    private static bool Strips(ResponseHeaderPolicyOptions? policy, string header) =>
        policy is { Action: not ResponseHeaderAction.Log } && policy.Forbid.Contains(header, StringComparer.OrdinalIgnoreCase);
}
