using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>The YAML fragments of the rate-limit findings (merge semantics: <see cref="ConfigPatch"/>).</summary>
internal static partial class RateLimitPatches
{
    /// <summary>A new policy under rateLimits and the route's rateLimits list with it appended (a list replaces, so it repeats the existing ones).</summary>
    public static ConfigPatch AddPolicy(string name, RatePolicy policy, IReadOnlyList<string> key, string route, IReadOnlyList<string> existing)
    {
        var yaml = new StringBuilder();
        yaml.Append("rateLimits:\n  ").Append(Scalar(name)).Append(":\n");
        yaml.Append("    key: [").Append(string.Join(", ", key.Select(Scalar))).Append("]\n");
        AppendSettings(yaml, policy, withAlgorithm: true);
        yaml.Append("routes:\n  - name: ").Append(Scalar(route)).Append('\n');
        yaml.Append("    rateLimits: [").Append(string.Join(", ", existing.Append(name).Select(Scalar))).Append("]\n");
        return new ConfigPatch(yaml.ToString(), $"adds rateLimits.{name} ({Describe(policy)} per {string.Join("+", key)}) and uses it on route {route}");
    }

    /// <summary>New numbers for an existing policy (its algorithm, key and store stay).</summary>
    public static ConfigPatch Adjust(string name, RatePolicy from, RatePolicy to)
    {
        var yaml = new StringBuilder();
        yaml.Append("rateLimits:\n  ").Append(Scalar(name)).Append(":\n");
        AppendSettings(yaml, to, withAlgorithm: false);
        return new ConfigPatch(yaml.ToString(), $"changes rateLimits.{name} from {Describe(from)} to {Describe(to)}");
    }

    /// <summary>The policy's key without the parts requests never carry (an empty key: the client IP, which is what it counts today).</summary>
    public static ConfigPatch Rekey(string name, IReadOnlyList<string> key, IReadOnlyList<string> absent)
    {
        var kept = key.Where(p => !absent.Contains(p, StringComparer.Ordinal)).ToList();
        if (kept.Count == 0) kept.Add("ip");
        var yaml = $"rateLimits:\n  {Scalar(name)}:\n    key: [{string.Join(", ", kept.Select(Scalar))}]\n";
        return new ConfigPatch(yaml, $"keys rateLimits.{name} on [{string.Join(", ", kept)}] instead of [{string.Join(", ", key)}]");
    }

    public static string Describe(RatePolicy policy)
    {
        var text = string.Create(CultureInfo.InvariantCulture, $"{policy.Limit} per {DurationFormat.Format(policy.Per)}");
        return policy.Algorithm switch
        {
            RateLimitAlgorithm.TokenBucket => text + string.Create(CultureInfo.InvariantCulture, $", burst {policy.Capacity}"),
            RateLimitAlgorithm.SlidingWindow => text + " (sliding window)",
            _ => text + " (spike arrest)",
        };
    }

    private static void AppendSettings(StringBuilder yaml, RatePolicy policy, bool withAlgorithm)
    {
        if (withAlgorithm) yaml.Append("    algorithm: ").Append(Algorithm(policy.Algorithm)).Append('\n');
        yaml.Append(CultureInfo.InvariantCulture, $"    limit: {policy.Limit}\n");
        yaml.Append("    per: ").Append(DurationFormat.Format(policy.Per)).Append('\n');
        if (policy.Algorithm == RateLimitAlgorithm.TokenBucket) yaml.Append(CultureInfo.InvariantCulture, $"    burst: {policy.Capacity}\n");
    }

    private static string Algorithm(RateLimitAlgorithm algorithm) => algorithm switch
    {
        RateLimitAlgorithm.TokenBucket => "tokenBucket",
        RateLimitAlgorithm.SlidingWindow => "slidingWindow",
        _ => "spikeArrest",
    };

    // Plain when safe, else a double-quoted YAML scalar.
    internal static string Scalar(string text) => PlainScalar().IsMatch(text) ? text
        : "\"" + text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";

    [GeneratedRegex("^[A-Za-z][A-Za-z0-9_.-]*$")]
    private static partial Regex PlainScalar();
}
