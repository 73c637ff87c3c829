using DuckDB.NET.Data;

namespace Portcullis.Advice;

/// <summary>
/// The `arrivals` of the advisor's window kept in memory between runs, so a run reads from the store only the
/// minutes that changed: each run first asks DuckDB for every minute's row count and request sum over the window
/// (one aggregate over two columns), and re-reads the rows of the earliest minute that differs from what it holds
/// and every later one — normally the last minute or two, flushed since. Minutes that left the window are
/// dropped. Each key's history keeps its <see cref="KeyReplays"/>, told what changed, so the replays continue
/// rather than restart (<see cref="RateLimitReplay"/>). A window that moves backwards or another store starts over.
/// What a run returns is exactly what a full read of the window gives (RateLimitReplayTests). Memory: 12 bytes per
/// second with arrivals per key (about 210 MB for the 7-day, 105 M-request store of bench/advisor/cycle.sh).
/// Used by one computation at a time.
/// </summary>
internal sealed class RateLimitHistoryCache
{
    private const int KeepUnused = 10;

    private readonly Dictionary<(string Route, string Key), Entry> _entries = [];
    private readonly Dictionary<string, Merge> _merged = new(StringComparer.Ordinal);
    private readonly SortedDictionary<long, List<(string Route, string Labels, long Requests)>> _missing = [];
    private Dictionary<long, (long Rows, long Requests)> _minutes = [];
    private object? _identity;
    private DateTime _from;
    private DateTime _to;
    private long _cycle;

    /// <summary>Minutes re-read by the last run (for the benchmark's report).</summary>
    public int LastMinutesRead { get; private set; }

    public Dictionary<string, RouteHistory> Load(DuckDBConnection connection, object identity, DateTime from, DateTime to, CancellationToken cancellation)
    {
        if (!ReferenceEquals(identity, _identity) || from < _from || to < _to) Reset();
        (_identity, _from, _to) = (identity, from, to);
        _cycle++;
        if (!RateLimitHistory.HasArrivals(connection))
        {
            Reset();
            return new Dictionary<string, RouteHistory>(StringComparer.Ordinal);
        }

        var cutoff = MinuteCeiling(from);
        var minutes = Fingerprint(connection, from, to);
        var changed = long.MaxValue;
        foreach (var (minute, print) in minutes)
        {
            if (!_minutes.TryGetValue(minute, out var held) || held != print) changed = Math.Min(changed, minute);
        }

        foreach (var minute in _minutes.Keys)
        {
            if (minute >= cutoff && !minutes.ContainsKey(minute)) changed = Math.Min(changed, minute);
        }

        _minutes = minutes;
        var read = changed == long.MaxValue ? new Dictionary<(string Route, string Key), Fresh>() : Read(connection, changed, to, cancellation);
        LastMinutesRead = minutes.Keys.Count(m => m >= changed);
        foreach (var minute in _missing.Keys.Where(m => m < cutoff || m >= changed).ToList()) _missing.Remove(minute);
        if (changed != long.MaxValue) ReadMissing(connection, changed, to);

        foreach (var (id, entry) in _entries.ToList())
        {
            cancellation.ThrowIfCancellationRequested();
            read.Remove(id, out var fresh);
            if (!entry.Apply(cutoff, changed, fresh)) _entries.Remove(id);
        }

        foreach (var (id, fresh) in read)
        {
            var entry = new Entry(id.Route, id.Key);
            if (entry.Apply(cutoff, changed, fresh)) _entries[id] = entry;
        }

        foreach (var (id, merge) in _merged.ToList())
        {
            if (_cycle - merge.Used > KeepUnused) _merged.Remove(id);
            else Touch(merge.Replays);
        }

        var routes = new Dictionary<string, RouteHistory>(StringComparer.Ordinal);
        foreach (var entry in _entries.Values.OrderBy(e => e.Route, StringComparer.Ordinal).ThenBy(e => e.Key, StringComparer.Ordinal))
        {
            Touch(entry.Replays);
            if (!routes.TryGetValue(entry.Route, out var history)) routes[entry.Route] = history = new RouteHistory { Route = entry.Route };
            history.Keys.Add(entry.History!);
        }

        foreach (var rows in _missing.Values)
        {
            foreach (var (route, labels, requests) in rows)
            {
                if (!routes.TryGetValue(route, out var history)) continue;
                foreach (var label in labels.Split(", ", StringSplitOptions.RemoveEmptyEntries))
                {
                    history.Missing[label] = history.Missing.GetValueOrDefault(label) + requests;
                }
            }
        }

        return routes;
    }

    /// <summary>
    /// <paramref name="parts"/> merged as one key (what a policy counts together), kept between runs with its own
    /// replays: re-merged only when a part changed, and its replays told from which second.
    /// </summary>
    public KeyHistory Merged(string scope, string key, IReadOnlyList<KeyHistory> parts)
    {
        if (parts.Count == 1 && parts[0].Key == key) return parts[0];
        var id = scope + "\u001e" + key;
        KeyReplays? replays = null;
        if (_merged.TryGetValue(id, out var merge) && merge.Parts.Length == parts.Count)
        {
            long? changedFrom = long.MaxValue;
            var same = true;
            for (var i = 0; i < parts.Count; i++)
            {
                if (ReferenceEquals(parts[i], merge.Parts[i])) continue;
                same = false;
                if (changedFrom is null) continue;
                var since = parts[i].Replays is { } part && ReferenceEquals(part, merge.Parts[i].Replays) ? part.ChangedSince(merge.Versions[i]) : null;
                changedFrom = since is { } second ? Math.Min(changedFrom.Value, second) : null;
            }

            if (same)
            {
                merge.Used = _cycle;
                return merge.History;
            }

            if (changedFrom is { } from)
            {
                replays = merge.Replays;
                replays.Advance(from);
            }
        }

        replays ??= new KeyReplays { Cycle = _cycle };
        var history = KeyHistory.Merge(key, parts, replays);
        _merged[id] = new Merge([.. parts], [.. parts.Select(p => p.Replays?.Version ?? 0)], history, replays) { Used = _cycle };
        return history;
    }

    private void Touch(KeyReplays replays)
    {
        replays.Cycle = _cycle;
        replays.Sweep();
    }

    private void Reset()
    {
        _entries.Clear();
        _merged.Clear();
        _missing.Clear();
        _minutes = [];
    }

    private static long MinuteCeiling(DateTime time)
    {
        var minutes = (time.Ticks + TimeSpan.TicksPerMinute - 1) / TimeSpan.TicksPerMinute;
        return ((minutes * TimeSpan.TicksPerMinute) - DateTime.UnixEpoch.Ticks) / TimeSpan.TicksPerSecond;
    }

    // Rows and requests per minute of the window: a minute flushed again, a new one or one deleted shows here.
    private static Dictionary<long, (long Rows, long Requests)> Fingerprint(DuckDBConnection connection, DateTime from, DateTime to)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT CAST(epoch(minute) AS BIGINT), count(*), CAST(sum(requests) AS BIGINT) FROM arrivals
            WHERE minute >= $from AND minute < $to GROUP BY minute
            """;
        command.Parameters.Add(new DuckDBParameter("from", from));
        command.Parameters.Add(new DuckDBParameter("to", to));
        using var reader = command.ExecuteReader();
        var minutes = new Dictionary<long, (long, long)>();
        while (reader.Read()) minutes[reader.GetInt64(0)] = (reader.GetInt64(1), reader.GetInt64(2));
        return minutes;
    }

    // Every key's seconds from the minute `from` (unix seconds) to the end of the window. A minute flushed twice has two rows: summed.
    private static Dictionary<(string Route, string Key), Fresh> Read(DuckDBConnection connection, long from, DateTime to, CancellationToken cancellation)
    {
        var read = new Dictionary<(string, string), Fresh>();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT route, rate_key, any_value(consumer_group) AS consumer_group, minute_s + s AS second,
                   CAST(sum(n) AS BIGINT) AS n, CAST(sum(CASE WHEN limited THEN n ELSE 0 END) AS BIGINT) AS refused
            FROM (SELECT route, rate_key, consumer_group, limited, CAST(epoch(minute) AS BIGINT) AS minute_s,
                         unnest(seconds) AS s, unnest(counts) AS n
                  FROM arrivals WHERE minute >= $from AND minute < $to)
            GROUP BY route, rate_key, second
            ORDER BY route, rate_key, second
            """;
        command.Parameters.Add(new DuckDBParameter("from", DateTime.UnixEpoch.AddSeconds(from)));
        command.Parameters.Add(new DuckDBParameter("to", to));
        using var reader = command.ExecuteReader();
        Fresh? current = null;
        string? route = null, key = null;
        while (reader.Read())
        {
            cancellation.ThrowIfCancellationRequested();
            var r = reader.GetString(0);
            var k = reader.GetString(1);
            if (current is null || r != route || k != key)
            {
                (route, key) = (r, k);
                read[(r, k)] = current = new Fresh();
            }

            var second = reader.GetInt64(3);
            current.Seconds.Add(second);
            current.Counts.Add((int)Math.Min(int.MaxValue, reader.GetInt64(4)));
            var limited = reader.GetInt64(5);
            if (limited > 0) current.Limited.Add((second, limited));
            var group = reader.IsDBNull(2) ? null : reader.GetString(2);
            if (current.Groups.Count == 0 || current.Groups[^1].Group != group) current.Groups.Add((second, group));
        }

        return read;
    }

    private void ReadMissing(DuckDBConnection connection, long from, DateTime to)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT CAST(epoch(minute) AS BIGINT), route, key_missing, CAST(sum(requests) AS BIGINT) FROM arrivals
            WHERE minute >= $from AND minute < $to AND key_missing IS NOT NULL GROUP BY ALL
            """;
        command.Parameters.Add(new DuckDBParameter("from", DateTime.UnixEpoch.AddSeconds(from)));
        command.Parameters.Add(new DuckDBParameter("to", to));
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            var minute = reader.GetInt64(0);
            if (!_missing.TryGetValue(minute, out var rows)) _missing[minute] = rows = [];
            rows.Add((reader.GetString(1), reader.GetString(2), reader.GetInt64(3)));
        }
    }

    private sealed class Fresh
    {
        public readonly List<long> Seconds = [];
        public readonly List<int> Counts = [];
        public readonly List<(long Second, long Limited)> Limited = [];
        public readonly List<(long Second, string? Group)> Groups = [];
    }

    private sealed record Merge(KeyHistory[] Parts, long[] Versions, KeyHistory History, KeyReplays Replays)
    {
        public long Used { get; set; }
    }

    /// <summary>One (route, rate key): its seconds in the window, the refused ones, its group over time, its replays.</summary>
    private sealed class Entry(string route, string key)
    {
        private long[] _seconds = [];
        private int[] _counts = [];
        private List<(long Second, long Limited)> _limited = [];
        private List<(long Second, string? Group)> _groups = [];

        public string Route { get; } = route;

        public string Key { get; } = key;

        public KeyReplays Replays { get; } = new();

        public KeyHistory? History { get; private set; }

        /// <summary>Drops the seconds before <paramref name="cutoff"/>, replaces those from <paramref name="changed"/> by <paramref name="fresh"/>; false when nothing is left.</summary>
        public bool Apply(long cutoff, long changed, Fresh? fresh)
        {
            var drop = LowerBound(_seconds, cutoff);
            var keep = changed == long.MaxValue ? _seconds.Length : Math.Max(drop, LowerBound(_seconds, changed));
            var tailChanged = keep < _seconds.Length || fresh is not null;
            if (drop == 0 && !tailChanged && History is not null) return true;
            var added = fresh?.Seconds.Count ?? 0;
            var seconds = new long[keep - drop + added];
            var counts = new int[seconds.Length];
            Array.Copy(_seconds, drop, seconds, 0, keep - drop);
            Array.Copy(_counts, drop, counts, 0, keep - drop);
            fresh?.Seconds.CopyTo(seconds, keep - drop);
            fresh?.Counts.CopyTo(counts, keep - drop);
            if (seconds.Length == 0) return false;
            (_seconds, _counts) = (seconds, counts);

            _limited = [.. _limited.Where(l => l.Second >= cutoff && l.Second < changed), .. fresh?.Limited ?? []];
            var groups = _groups.Where(g => g.Second < changed).ToList();
            foreach (var g in fresh?.Groups ?? [])
            {
                if (groups.Count == 0 || groups[^1].Group != g.Group) groups.Add(g);
            }

            while (groups.Count > 1 && groups[1].Second <= seconds[0]) groups.RemoveAt(0);
            _groups = groups;

            long total = 0;
            foreach (var count in counts) total += count;
            Replays.Advance(tailChanged ? changed : long.MaxValue);
            History = new KeyHistory
            {
                Key = Key,
                Group = groups.Count > 0 ? groups[0].Group : null,
                Seconds = seconds,
                Counts = counts,
                Limited = _limited.Sum(l => l.Limited),
                Total = total,
                Replays = Replays,
            };
            return true;
        }

        private static int LowerBound(long[] values, long value)
        {
            var index = Array.BinarySearch(values, value);
            return index < 0 ? ~index : index;
        }
    }
}
