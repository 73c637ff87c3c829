using System.Globalization;
using System.Text;

namespace Portcullis.Configuration;

internal enum ChangeKind
{
    Added,
    Removed,
    Changed,
}

/// <summary>
/// One thing a reload would add, remove or change. <see cref="Section"/> is listener, route, cluster,
/// destination, map, limits or trustedProxies (or the JSON name of a newer top-level section).
/// A destination's <see cref="Name"/> is "cluster/destination". <see cref="Details"/> are the rendered
/// lines under the item (field changes as <c>path: old → new</c>, member changes as <c>+ ...</c>);
/// they never contain a secret value.
/// </summary>
internal sealed record ConfigChange(ChangeKind Kind, string Section, string Name, IReadOnlyList<string> Details)
{
    /// <summary>
    /// The change touches a setting read at start-up (<see cref="ConfigDiff.ReadAtStart"/>): a reload
    /// cannot apply it.
    /// </summary>
    public bool RestartRequired => ConfigDiff.ReadAtStartOf(this).Any();

    /// <summary>For a destination: the cluster it belongs to (its own name follows "cluster/").</summary>
    internal string? Cluster { get; init; }
}

/// <summary>The changes between two snapshots, sorted by section, kind (added, removed, changed) and name.</summary>
internal sealed record ConfigDiffResult(IReadOnlyList<ConfigChange> Changes)
{
    public bool HasChanges => Changes.Count > 0;

    /// <summary>Some change (listeners, limits) only takes effect after a restart.</summary>
    public bool RestartRequired => Changes.Any(c => c.RestartRequired);

    /// <summary>
    /// Renders the plan: one <c>+</c>/<c>-</c>/<c>~</c> line per item with indented details (destinations
    /// under their cluster), or "No changes.", then "N to add, M to change, K to remove.". Every line,
    /// the last included, ends with '\n'.
    /// </summary>
    public string Format()
    {
        var text = new StringBuilder();
        if (Changes.Count == 0)
        {
            text.Append("No changes.\n");
        }
        else
        {
            // Destinations are shown inside their cluster's block; a cluster that only changes in its
            // destinations still gets a "~ cluster" header.
            var destinations = Changes
                .Where(c => c.Section == ConfigDiff.DestinationSection)
                .GroupBy(ClusterOf, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => g.OrderBy(c => c, ConfigDiff.Order).ToList(), StringComparer.Ordinal);
            var blocks = Changes.Where(c => c.Section != ConfigDiff.DestinationSection).ToList();
            foreach (var cluster in destinations.Keys)
            {
                if (!blocks.Any(c => c.Section == ConfigDiff.ClusterSection && c.Name == cluster))
                {
                    blocks.Add(new ConfigChange(ChangeKind.Changed, ConfigDiff.ClusterSection, cluster, []));
                }
            }

            foreach (var change in blocks.OrderBy(c => c, ConfigDiff.Order))
            {
                text.Append(Sigil(change.Kind)).Append(' ').Append(change.Section);
                if (change.Name != change.Section) text.Append(' ').Append(change.Name);
                if (change.RestartRequired) text.Append(" (restart required)");
                text.Append('\n');
                if (change.Section == ConfigDiff.ClusterSection && destinations.TryGetValue(change.Name, out var members))
                {
                    foreach (var destination in members)
                    {
                        var name = destination.Name[(ClusterOf(destination).Length + 1)..];
                        if (destination.Kind == ChangeKind.Changed)
                        {
                            text.Append("    ~ destination ").Append(name).Append('\n');
                            foreach (var detail in destination.Details) text.Append("        ").Append(detail).Append('\n');
                        }
                        else
                        {
                            text.Append("    ").Append(ConfigDiff.DestinationLine(destination.Kind, name, destination.Details)).Append('\n');
                        }
                    }
                }

                foreach (var detail in change.Details) text.Append("    ").Append(detail).Append('\n');
            }
        }

        text.Append(CultureInfo.InvariantCulture,
            $"{Changes.Count(c => c.Kind == ChangeKind.Added)} to add, {Changes.Count(c => c.Kind == ChangeKind.Changed)} to change, {Changes.Count(c => c.Kind == ChangeKind.Removed)} to remove.\n");
        return text.ToString();
    }

    public override string ToString() => Format();

    internal static char Sigil(ChangeKind kind) => kind switch
    {
        ChangeKind.Added => '+',
        ChangeKind.Removed => '-',
        _ => '~',
    };

    private static string ClusterOf(ConfigChange destination)
    {
        if (destination.Cluster is not null) return destination.Cluster;
        var slash = destination.Name.IndexOf('/');
        return slash < 0 ? "" : destination.Name[..slash];
    }
}
