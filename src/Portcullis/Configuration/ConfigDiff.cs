using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using Portcullis.Pipeline;

namespace Portcullis.Configuration;

/// <summary>
/// What a reload from <c>before</c> to <c>after</c> would change, like <c>terraform plan</c>. Items are
/// matched by name and compared field by field through the JSON form of the config
/// (<see cref="ConfigJson"/>), so new model fields show up without changes here. Values are printed
/// from the redacted form only: a changed secret shows as "(sensitive value changed)". Map entries are
/// compared as compiled (file and inline), so a changed map file shows even when the config is unchanged.
/// </summary>
internal static partial class ConfigDiff
{
    internal const string ListenerSection = "listener";

    /// <summary>Listener fields applied per request from the current snapshot (the inbound header scrub), not by Kestrel.</summary>
    internal static readonly string[] ReloadableListenerFields = ["dropUnderscoreHeaders"];

    /// <summary>Limits read at each build (the heap trim), not by Kestrel at start.</summary>
    internal static readonly string[] ReloadableLimitsFields = ["trimHeapAfterBuilds"];

    internal static bool IsReloadableListenerDetail(string detail) => IsDetailOf(detail, ReloadableListenerFields);

    /// <summary>Whether a change detail ("field: old → new", relative to its section) is about one of <paramref name="fields"/>.</summary>
    internal static bool IsDetailOf(string detail, string[] fields)
    {
        foreach (var field in fields)
        {
            if (detail.StartsWith(field + ":", StringComparison.Ordinal)) return true;
        }

        return false;
    }
    internal const string RouteSection = "route";
    internal const string ClusterSection = "cluster";
    internal const string DestinationSection = "destination";
    internal const string MapSection = "map";
    internal const string LimitsSection = "limits";
    internal const string TrustedProxiesSection = "trustedProxies";

    private const string None = "(none)";
    private const string Arrow = " → ";

    // Output order: what a reader checks first.
    private static readonly string[] SectionOrder =
        [RouteSection, ClusterSection, DestinationSection, MapSection, ListenerSection, LimitsSection, TrustedProxiesSection];

    // Unredacted twin of ConfigJson.Options: used only to detect that a secret changed, never printed.
    private static readonly JsonSerializerOptions RawOptions = CreateRawOptions();

    private static readonly JsonSerializerOptions TextOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    internal static IComparer<ConfigChange> Order { get; } = Comparer<ConfigChange>.Create((x, y) =>
    {
        var result = SectionRank(x.Section).CompareTo(SectionRank(y.Section));
        if (result == 0) result = string.CompareOrdinal(x.Section, y.Section);
        if (result == 0) result = x.Kind.CompareTo(y.Kind);
        if (result == 0) result = string.CompareOrdinal(x.Name, y.Name);
        return result;
    });

    public static ConfigDiffResult Compare(GatewaySnapshot before, GatewaySnapshot after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        return Compare(before, after, Node.Of(before.Source), Node.Of(after.Source));
    }

    private static ConfigDiffResult Compare(GatewaySnapshot before, GatewaySnapshot after, Node a, Node b)
    {
        var changes = new List<ConfigChange>();
        foreach (var key in Keys(a, b))
        {
            var x = a.Property(key);
            var y = b.Property(key);
            switch (key)
            {
                case "listeners":
                    CompareNamedList(changes, ListenerSection, x, y);
                    break;
                case "routes":
                    CompareRoutes(changes, before, after, x, y);
                    break;
                case "clusters":
                    CompareClusters(changes, x, y);
                    break;
                case "maps":
                    CompareMaps(changes, before, after, x, y);
                    break;
                case "trustedProxies":
                    CompareTrustedProxies(changes, x, y);
                    break;
                default:
                    // limits, and any newer top-level section: one item, compared field by field.
                    var details = new List<string>();
                    if (x is { Kind: JsonValueKind.Object } && y is { Kind: JsonValueKind.Object })
                    {
                        DiffFields(x, y, details);
                    }
                    else
                    {
                        Diff(key, x, y, details);
                    }

                    if (details.Count > 0) changes.Add(new ConfigChange(ChangeKind.Changed, Section(key), Section(key), details));
                    break;
            }
        }

        changes.Sort(Order);
        return new ConfigDiffResult(changes);
    }

    private static string Section(string key) => key == "limits" ? LimitsSection : key;

    private static int SectionRank(string section)
    {
        var index = Array.IndexOf(SectionOrder, section);
        return index < 0 ? SectionOrder.Length : index;
    }

    private static void CompareNamedList(List<ConfigChange> changes, string section, Node? before, Node? after)
    {
        var x = ByName(before);
        var y = ByName(after);
        foreach (var name in x.Keys.Union(y.Keys))
        {
            var inBefore = x.TryGetValue(name, out var a);
            var inAfter = y.TryGetValue(name, out var b);
            if (!inBefore) changes.Add(new ConfigChange(ChangeKind.Added, section, name, []));
            else if (!inAfter) changes.Add(new ConfigChange(ChangeKind.Removed, section, name, []));
            else
            {
                var details = new List<string>();
                DiffFields(a, b, details, "name");
                if (details.Count > 0) changes.Add(new ConfigChange(ChangeKind.Changed, section, name, details));
            }
        }
    }

    private static void CompareRoutes(List<ConfigChange> changes, GatewaySnapshot before, GatewaySnapshot after, Node? x, Node? y)
    {
        var a = ByName(x);
        var b = ByName(y);

        // Precedence: a route that moved relative to the other surviving routes (not merely shifted by an
        // insertion or removal) is reported with its position in the effective match order.
        var rankBefore = Ranks(before);
        var rankAfter = Ranks(after);
        var common = a.Keys.Where(b.ContainsKey).Where(n => rankBefore.ContainsKey(n) && rankAfter.ContainsKey(n))
            .OrderBy(n => rankBefore[n]).ToList();
        var stayed = LongestIncreasing(common.Select(n => rankAfter[n]).ToList()).Select(i => common[i]).ToHashSet(StringComparer.Ordinal);

        foreach (var name in a.Keys.Union(b.Keys))
        {
            var inBefore = a.TryGetValue(name, out var route);
            var inAfter = b.TryGetValue(name, out var next);
            if (!inBefore) changes.Add(new ConfigChange(ChangeKind.Added, RouteSection, name, []));
            else if (!inAfter) changes.Add(new ConfigChange(ChangeKind.Removed, RouteSection, name, []));
            else
            {
                var details = new List<string>();
                DiffFields(route, next, details, "name");
                if (rankBefore.TryGetValue(name, out var was) && rankAfter.TryGetValue(name, out var now) && !stayed.Contains(name))
                {
                    details.Add(string.Create(CultureInfo.InvariantCulture, $"position: {was + 1}{Arrow}{now + 1}"));
                }

                if (details.Count > 0) changes.Add(new ConfigChange(ChangeKind.Changed, RouteSection, name, details));
            }
        }
    }

    private static Dictionary<string, int> Ranks(GatewaySnapshot snapshot)
    {
        var ranks = new Dictionary<string, int>(StringComparer.Ordinal);
        var index = 0;
        foreach (var route in snapshot.ProxyRoutes.OrderBy(r => r.Order ?? 0))
        {
            ranks.TryAdd(route.RouteId, index++);
        }

        return ranks;
    }

    /// <summary>Indexes of one longest strictly increasing subsequence (patience sorting).</summary>
    private static List<int> LongestIncreasing(List<int> values)
    {
        var tails = new List<int>();
        var previous = new int[values.Count];
        for (var i = 0; i < values.Count; i++)
        {
            int lo = 0, hi = tails.Count;
            while (lo < hi)
            {
                var mid = (lo + hi) / 2;
                if (values[tails[mid]] < values[i]) lo = mid + 1;
                else hi = mid;
            }

            previous[i] = lo > 0 ? tails[lo - 1] : -1;
            if (lo == tails.Count) tails.Add(i);
            else tails[lo] = i;
        }

        var result = new List<int>();
        for (var i = tails.Count > 0 ? tails[^1] : -1; i >= 0; i = previous[i]) result.Add(i);
        result.Reverse();
        return result;
    }

    private static void CompareClusters(List<ConfigChange> changes, Node? x, Node? y)
    {
        foreach (var name in Keys(x, y))
        {
            var a = x?.Property(name);
            var b = y?.Property(name);
            if (a is null || b is null)
            {
                var kind = a is null ? ChangeKind.Added : ChangeKind.Removed;
                var members = Destinations((a ?? b)!.Value)
                    .OrderBy(d => d.Key, StringComparer.Ordinal)
                    .Select(d => DestinationLine(kind, d.Key, Describe(d.Value)))
                    .ToList();
                changes.Add(new ConfigChange(kind, ClusterSection, name, members));
                continue;
            }

            var details = new List<string>();
            DiffFields(a, b, details, "destinations");
            if (details.Count > 0) changes.Add(new ConfigChange(ChangeKind.Changed, ClusterSection, name, details));

            var before = Destinations(a.Value);
            var after = Destinations(b.Value);
            foreach (var destination in before.Keys.Union(after.Keys))
            {
                var inBefore = before.TryGetValue(destination, out var d1);
                var inAfter = after.TryGetValue(destination, out var d2);
                var id = name + "/" + destination;
                if (!inBefore) changes.Add(new ConfigChange(ChangeKind.Added, DestinationSection, id, Describe(d2)) { Cluster = name });
                else if (!inAfter) changes.Add(new ConfigChange(ChangeKind.Removed, DestinationSection, id, Describe(d1)) { Cluster = name });
                else
                {
                    var fields = new List<string>();
                    DiffFields(d1, d2, fields, "name");
                    if (fields.Count > 0) changes.Add(new ConfigChange(ChangeKind.Changed, DestinationSection, id, fields) { Cluster = name });
                }
            }
        }
    }

    /// <summary>Destinations by effective name: their own, or d1, d2, ... by position (as the snapshot names them).</summary>
    private static Dictionary<string, Node> Destinations(Node cluster)
    {
        var result = new Dictionary<string, Node>(StringComparer.Ordinal);
        if (cluster.Property("destinations") is not { Kind: JsonValueKind.Array } list) return result;
        var i = 0;
        foreach (var item in list.Items())
        {
            i++;
            var own = item.Kind == JsonValueKind.Object ? item.Property("name") : null;
            var name = own is { Kind: JsonValueKind.String } n && !string.IsNullOrWhiteSpace(n.Shown.GetString())
                ? n.Shown.GetString()!
                : "d" + i.ToString(CultureInfo.InvariantCulture);
            result.TryAdd(name, item);
        }

        return result;
    }

    /// <summary>The address (unquoted), then any other set field as <c>key: value</c>.</summary>
    private static List<string> Describe(Node destination)
    {
        var result = new List<string>();
        if (destination.Kind != JsonValueKind.Object)
        {
            result.Add(Render(destination, quote: false));
            return result;
        }

        if (destination.Property("address") is { } address) result.Add(Render(address, quote: false));
        foreach (var key in Keys(destination, null))
        {
            if (key is "name" or "address") continue;
            result.Add(key + ": " + Render(destination.Property(key)!.Value, quote: true));
        }

        return result;
    }

    internal static string DestinationLine(ChangeKind kind, string name, IReadOnlyList<string> details) =>
        details.Count == 0
            ? $"{ConfigDiffResult.Sigil(kind)} destination {name}"
            : $"{ConfigDiffResult.Sigil(kind)} destination {name} ({string.Join(", ", details)})";

    private static void CompareMaps(List<ConfigChange> changes, GatewaySnapshot before, GatewaySnapshot after, Node? x, Node? y)
    {
        foreach (var name in Keys(x, y))
        {
            var a = x?.Property(name);
            var b = y?.Property(name);
            if (a is null || b is null)
            {
                changes.Add(new ConfigChange(a is null ? ChangeKind.Added : ChangeKind.Removed, MapSection, name, []));
                continue;
            }

            // Entries are compared as compiled (map file plus inline), not as written in the config.
            var details = new List<string>();
            if (before.Maps.TryGetValue(name, out var oldMap) && after.Maps.TryGetValue(name, out var newMap) && !SameEntries(oldMap, newMap))
            {
                var oldEntries = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var entry in oldMap.Entries) oldEntries.TryAdd(entry.Key, entry.Value);
                var newEntries = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var entry in newMap.Entries) newEntries.TryAdd(entry.Key, entry.Value);

                details.AddRange(newEntries.Keys.Where(k => !oldEntries.ContainsKey(k)).Order(StringComparer.Ordinal)
                    .Select(k => $"+ {k}{Arrow}{newEntries[k]}"));
                details.AddRange(oldEntries.Keys.Where(k => !newEntries.ContainsKey(k)).Order(StringComparer.Ordinal)
                    .Select(k => $"- {k}{Arrow}{oldEntries[k]}"));
                details.AddRange(oldEntries.Keys.Where(k => newEntries.TryGetValue(k, out var v) && v != oldEntries[k]).Order(StringComparer.Ordinal)
                    .Select(k => $"~ {k}: {oldEntries[k]}{Arrow}{newEntries[k]}"));

                if (newMap.Kind == MapKind.Regex)
                {
                    var oldOrder = oldMap.Entries.Select(e => e.Key).Where(newEntries.ContainsKey);
                    var newOrder = newMap.Entries.Select(e => e.Key).Where(oldEntries.ContainsKey);
                    if (!oldOrder.SequenceEqual(newOrder, StringComparer.Ordinal)) details.Add("~ entry order changed (first match wins)");
                }
            }

            DiffFields(a, b, details, "entries");
            if (details.Count > 0) changes.Add(new ConfigChange(ChangeKind.Changed, MapSection, name, details));
        }
    }

    // The common case on a reload (a million-line map file unchanged): one pass, no dictionaries.
    private static bool SameEntries(Routing.CompiledMap a, Routing.CompiledMap b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a.Entries.Count != b.Entries.Count) return false;
        for (var i = 0; i < a.Entries.Count; i++)
        {
            if (!string.Equals(a.Entries[i].Key, b.Entries[i].Key, StringComparison.Ordinal) || !string.Equals(a.Entries[i].Value, b.Entries[i].Value, StringComparison.Ordinal)) return false;
        }

        return true;
    }

    private static void CompareTrustedProxies(List<ConfigChange> changes, Node? x, Node? y)
    {
        // A set: order does not matter.
        static SortedSet<string> Entries(Node? node) => node is { Kind: JsonValueKind.Array } list
            ? new SortedSet<string>(list.Items().Select(n => Render(n, quote: false)), StringComparer.Ordinal)
            : new SortedSet<string>(StringComparer.Ordinal);

        var before = Entries(x);
        var after = Entries(y);
        var details = after.Except(before).Select(p => "+ " + p).Concat(before.Except(after).Select(p => "- " + p)).ToList();
        if (details.Count > 0) changes.Add(new ConfigChange(ChangeKind.Changed, TrustedProxiesSection, TrustedProxiesSection, details));
    }
}
