using System.Globalization;
using System.Text.RegularExpressions;
using Portcullis.Configuration;

namespace Portcullis.Cli;

/// <summary>The checked option values of `portcullis keys`: times, scopes and names; a bad one is a <see cref="KeysUsageError"/>.</summary>
internal static partial class KeysArguments
{
    /// <summary>A duration from now (90d, 24h) or an absolute date and time (2027-01-01T00:00:00Z; UTC when no offset).</summary>
    public static DateTimeOffset ParseWhen(string option, string text, DateTimeOffset now)
    {
        var trimmed = text.Trim();
        if (trimmed.Length > 0 && char.IsAsciiDigit(trimmed[0]) && !IsoDateStart().IsMatch(trimmed))
        {
            if (DurationFormat.TryParse(trimmed, out var duration, out var error))
            {
                try
                {
                    return now + duration;
                }
                catch (ArgumentOutOfRangeException)
                {
                    throw new KeysUsageError($"{option} '{text}': duration too large");
                }
            }

            throw new KeysUsageError($"{option} '{text}': {error} (expected a duration such as 90d or 24h, or a date and time such as 2027-01-01T00:00:00Z)");
        }

        if (IsoDateStart().IsMatch(trimmed) && DateTimeOffset.TryParse(trimmed, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at))
        {
            return at.ToUniversalTime();
        }

        throw new KeysUsageError($"{option} '{text}' is neither a duration (90d, 24h) nor a date and time (2027-01-01T00:00:00Z)");
    }

    public static List<string> ParseScopes(string[] values)
    {
        var scopes = new List<string>();
        foreach (var value in values)
        {
            foreach (var scope in value.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                // RFC 6749 scope-token: printable ASCII except space, " and \.
                if (!ScopeToken().IsMatch(scope)) throw new KeysUsageError($"--scopes: '{scope}' is not a valid scope (printable ASCII without spaces, quotes or backslashes)");
                if (!scopes.Contains(scope, StringComparer.Ordinal)) scopes.Add(scope);
            }
        }

        return scopes;
    }

    /// <summary>Consumer ids and groups travel in request headers and map lookups: keep them to a safe alphabet.</summary>
    public static void CheckName(string option, string value)
    {
        if (!SafeName().IsMatch(value))
        {
            throw new KeysUsageError($"{option} '{value}' is not allowed: use 1-128 letters, digits and . _ - : @ (starting with a letter or digit)");
        }
    }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
    private static partial Regex SafeName();

    [GeneratedRegex(@"^[\x21\x23-\x5B\x5D-\x7E]+$")]
    private static partial Regex ScopeToken();

    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}")]
    private static partial Regex IsoDateStart();
}

/// <summary>A bad option value of a `portcullis keys` run (exit code 2).</summary>
internal sealed class KeysUsageError(string message) : Exception(message);
