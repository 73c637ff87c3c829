using System.Globalization;

namespace Portcullis.Analytics;

/// <summary>The four analytics queries (docs/analytics.md#query-api).</summary>
internal enum AnalyticsQueryKind { Summary, Timeseries, Top, Samples }

/// <summary>The columns a query may group by: a fixed list, so no column name ever comes from the caller.</summary>
internal enum AnalyticsGroup { Route, Cluster, Consumer, ConsumerGroup, Status, Reason }

internal enum AnalyticsOrder { Requests, Errors, ErrorRate, P99, BytesOut }

/// <summary>A parameter the caller got wrong: the API answers 400 naming <see cref="Parameter"/> (never SQL).</summary>
internal sealed class AnalyticsQueryException(string parameter, string message) : Exception(message)
{
    public string Parameter { get; } = parameter;
}

/// <summary>A status filter: one status (503) or a class (5xx → 500..599).</summary>
internal readonly record struct StatusFilter(short Low, short High);

/// <summary>
/// The validated parameters of one analytics query. Filter values are kept as given and only ever bound as
/// DuckDB parameters; "(none)" stands for NULL (an anonymous consumer, an unmatched route, a served request).
/// </summary>
internal sealed record AnalyticsQueryParameters
{
    public const string None = "(none)";
    public const int DefaultTopLimit = 10;
    public const int MaxTopLimit = 1000;
    public const int DefaultSeriesLimit = 10;
    public const int MaxSeriesLimit = 50;
    public const int DefaultSamplesLimit = 100;
    public const int MaxSamplesLimit = 1000;
    public const int DefaultMaxPoints = 360;
    public const int MaxPoints = 1500;
    public const int MaxValueLength = 512;

    /// <summary>The steps a timeseries may use, smallest first.</summary>
    public static readonly (string Name, TimeSpan Step)[] Steps =
    [
        ("1m", TimeSpan.FromMinutes(1)), ("5m", TimeSpan.FromMinutes(5)), ("15m", TimeSpan.FromMinutes(15)),
        ("1h", TimeSpan.FromHours(1)), ("1d", TimeSpan.FromDays(1)),
    ];

    private static readonly string[] Common = ["from", "to", "route", "cluster", "consumer", "consumerGroup", "status", "reason"];

    public required AnalyticsQueryKind Kind { get; init; }
    public required DateTime From { get; init; }
    public required DateTime To { get; init; }

    /// <summary>Filters by group column: a value, or null for "(none)" (matches NULL).</summary>
    public IReadOnlyList<(AnalyticsGroup Column, string? Value)> Filters { get; init; } = [];
    public StatusFilter? Status { get; init; }

    public AnalyticsGroup? GroupBy { get; init; }
    public AnalyticsOrder OrderBy { get; init; } = AnalyticsOrder.Requests;
    public int Limit { get; init; }
    public string StepName { get; init; } = "";
    public TimeSpan Step { get; init; }
    public short? MinStatus { get; init; }

    /// <summary>Names as the API spells them (by=consumerGroup …).</summary>
    public static string Name(AnalyticsGroup group) => group switch
    {
        AnalyticsGroup.Route => "route",
        AnalyticsGroup.Cluster => "cluster",
        AnalyticsGroup.Consumer => "consumer",
        AnalyticsGroup.ConsumerGroup => "consumerGroup",
        AnalyticsGroup.Status => "status",
        _ => "reason",
    };

    public static string Name(AnalyticsOrder order) => order switch
    {
        AnalyticsOrder.Requests => "requests",
        AnalyticsOrder.Errors => "errors",
        AnalyticsOrder.ErrorRate => "errorRate",
        AnalyticsOrder.P99 => "p99",
        _ => "bytesOut",
    };

    /// <summary>
    /// Parses a query string's parameters strictly: unknown or repeated names, malformed values, from ≥ to,
    /// too many points and limits above the maximum are refused with the parameter named.
    /// </summary>
    public static AnalyticsQueryParameters Parse(AnalyticsQueryKind kind, IEnumerable<KeyValuePair<string, string[]>> query, DateTime now)
    {
        var allowed = kind switch
        {
            AnalyticsQueryKind.Timeseries => [.. Common, "step", "groupBy", "limit"],
            AnalyticsQueryKind.Top => [.. Common, "by", "limit", "orderBy"],
            AnalyticsQueryKind.Samples => [.. Common, "limit", "minStatus"],
            _ => Common,
        };
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, given) in query)
        {
            if (!allowed.Contains(name, StringComparer.Ordinal))
            {
                throw new AnalyticsQueryException(Printable(name), $"unknown parameter '{Printable(name)}'; this query takes {string.Join(", ", allowed)}");
            }

            if (given.Length != 1) throw new AnalyticsQueryException(name, $"'{name}' is given {given.Length} times; give it once");
            if (given[0].Length > MaxValueLength) throw new AnalyticsQueryException(name, $"'{name}' is longer than {MaxValueLength} characters");
            values[name] = given[0];
        }

        now = Truncate(now);
        var to = values.TryGetValue("to", out var toText) ? ParseTime("to", toText, now) : now;
        var from = values.TryGetValue("from", out var fromText) ? ParseTime("from", fromText, now) : to - TimeSpan.FromHours(1);
        if (from >= to) throw new AnalyticsQueryException("from", "'from' must be before 'to'");

        var filters = new List<(AnalyticsGroup, string?)>();
        foreach (var group in (AnalyticsGroup[])[AnalyticsGroup.Route, AnalyticsGroup.Cluster, AnalyticsGroup.Consumer, AnalyticsGroup.ConsumerGroup, AnalyticsGroup.Reason])
        {
            if (values.TryGetValue(Name(group), out var value)) filters.Add((group, value == None ? null : value));
        }

        var parameters = new AnalyticsQueryParameters
        {
            Kind = kind,
            From = from,
            To = to,
            Filters = filters,
            Status = values.TryGetValue("status", out var status) ? ParseStatus(status) : null,
        };
        return kind switch
        {
            AnalyticsQueryKind.Timeseries => Timeseries(parameters, values),
            AnalyticsQueryKind.Top => parameters with
            {
                GroupBy = values.TryGetValue("by", out var by) ? ParseEnum<AnalyticsGroup>("by", by, Name) : AnalyticsGroup.Route,
                OrderBy = values.TryGetValue("orderBy", out var order) ? ParseEnum<AnalyticsOrder>("orderBy", order, Name) : AnalyticsOrder.Requests,
                Limit = ParseLimit(values, DefaultTopLimit, MaxTopLimit),
            },
            AnalyticsQueryKind.Samples => parameters with
            {
                Limit = ParseLimit(values, DefaultSamplesLimit, MaxSamplesLimit),
                MinStatus = values.TryGetValue("minStatus", out var min) ? ParseStatusCode("minStatus", min) : null,
            },
            _ => parameters,
        };
    }

    private static AnalyticsQueryParameters Timeseries(AnalyticsQueryParameters parameters, Dictionary<string, string> values)
    {
        (string Name, TimeSpan Step) step;
        if (values.TryGetValue("step", out var stepText))
        {
            step = Array.Find(Steps, s => s.Name == stepText);
            if (step.Name is null) throw new AnalyticsQueryException("step", $"step must be one of {string.Join(", ", Steps.Select(s => s.Name))}");
        }
        else
        {
            step = Array.Find(Steps, s => Points(parameters.From, parameters.To, s.Step) <= DefaultMaxPoints);
            if (step.Name is null) step = Steps[^1];
        }

        var points = Points(parameters.From, parameters.To, step.Step);
        if (points > MaxPoints)
        {
            var name = values.ContainsKey("step") ? "step" : "from";
            throw new AnalyticsQueryException(name, $"'{name}' gives {points} points of {step.Name} between from and to; at most {MaxPoints}: choose a larger step or a shorter range");
        }

        return parameters with
        {
            StepName = step.Name,
            Step = step.Step,
            GroupBy = values.TryGetValue("groupBy", out var by) ? ParseEnum<AnalyticsGroup>("groupBy", by, Name) : null,
            Limit = ParseLimit(values, DefaultSeriesLimit, MaxSeriesLimit),
        };
    }

    /// <summary>The first step (whole steps since the Unix epoch, UTC) of [from, to).</summary>
    public static long FirstStep(DateTime from, TimeSpan step) => (from - DateTime.UnixEpoch).Ticks / step.Ticks;

    /// <summary>How many steps [from, to) touches, the steps aligned to whole steps since the Unix epoch (days at UTC midnight).</summary>
    public static long Points(DateTime from, DateTime to, TimeSpan step) => FirstStep(to.AddTicks(-1), step) - FirstStep(from, step) + 1;

    /// <summary>An ISO 8601 time (UTC, or with an offset), or now / now-15m / now-1h / now-24h / now-7d (any number of s, m, h, d); -1h is short for now-1h.</summary>
    public static DateTime ParseTime(string name, string text, DateTime now)
    {
        if (text == "now") return now;
        if (text.StartsWith('-')) text = "now" + text;
        if (text.StartsWith("now-", StringComparison.Ordinal) && text.Length > 5)
        {
            var unit = text[^1] switch { 's' => TimeSpan.FromSeconds(1), 'm' => TimeSpan.FromMinutes(1), 'h' => TimeSpan.FromHours(1), 'd' => TimeSpan.FromDays(1), _ => TimeSpan.Zero };
            if (unit != TimeSpan.Zero && int.TryParse(text.AsSpan(4, text.Length - 5), NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count <= 3660
                && text[4] != '0')
            {
                return now - unit * count;
            }
        }
        else if (text.Length >= 10 && char.IsAsciiDigit(text[0]) && text[4] == '-' && text[7] == '-'
            && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time)
            && time.Year is >= 2000 and <= 9000)
        {
            return time.UtcDateTime;
        }

        throw new AnalyticsQueryException(name, $"'{name}' must be an ISO 8601 time such as 2026-12-04T10:00:00Z, or now, now-15m, now-1h, now-24h, now-7d (-1h is short for now-1h)");
    }

    private static StatusFilter ParseStatus(string text)
    {
        if (text.Length == 3 && text[0] is >= '1' and <= '5' && text[1] == 'x' && text[2] == 'x')
        {
            var low = (short)((text[0] - '0') * 100);
            return new StatusFilter(low, (short)(low + 99));
        }

        var code = ParseStatusCode("status", text);
        return new StatusFilter(code, code);
    }

    private static short ParseStatusCode(string name, string text)
    {
        if (text.Length == 3 && short.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var code) && code is >= 100 and <= 599) return code;
        throw new AnalyticsQueryException(name, $"'{name}' must be a status code (100 to 599){(name == "status" ? " or a class such as 5xx" : "")}");
    }

    private static int ParseLimit(Dictionary<string, string> values, int fallback, int max)
    {
        if (!values.TryGetValue("limit", out var text)) return fallback;
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var limit) && limit is >= 1 && limit <= max) return limit;
        throw new AnalyticsQueryException("limit", $"'limit' must be a whole number from 1 to {max}");
    }

    private static T ParseEnum<T>(string name, string text, Func<T, string> spell) where T : struct, Enum
    {
        foreach (var value in Enum.GetValues<T>())
        {
            if (spell(value) == text) return value;
        }

        throw new AnalyticsQueryException(name, $"'{name}' must be one of {string.Join(", ", Enum.GetValues<T>().Select(spell))}");
    }

    // Times to the microsecond, as DuckDB's TIMESTAMP keeps them.
    private static DateTime Truncate(DateTime time) => new(time.Ticks - time.Ticks % 10, DateTimeKind.Utc);

    // Parameter names are echoed in the error; keep them short and printable.
    private static string Printable(string name)
    {
        var clean = new string(name.Where(c => !char.IsControl(c)).Take(64).ToArray());
        return clean.Length == 0 ? "?" : clean;
    }
}
