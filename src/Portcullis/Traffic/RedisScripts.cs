namespace Portcullis.Traffic;

/// <summary>
/// The Lua scripts behind the Redis counter store: each decision is one script, so it is atomic and one
/// round trip. They implement the arithmetic of <see cref="Traffic.RateLimitMath"/> on Redis server time
/// (<c>TIME</c>), so gateways whose clocks disagree still count one shared timeline. Every script touches
/// exactly one key, named in KEYS, so it runs unchanged on Redis Cluster. StackExchange.Redis sends them
/// with EVALSHA once the server has seen them and falls back to EVAL on NOSCRIPT (after a restart or a
/// SCRIPT FLUSH), so only the first call per server carries the script text.
/// </summary>
/// <remarks>
/// Lua numbers are doubles: integers are exact only below 2^53. Microseconds since 1970 (~1.7e15) fit;
/// ticks since 1970 (~1.7e16) do not. So GCRA, whose emission interval is an exact number of ticks
/// (per / limit need not be whole microseconds), computes in ticks relative to the current server second
/// and stores its theoretical arrival time as a decimal string it splits into seconds and sub-second
/// ticks; the sliding window only needs whole windows and an offset into the window, so it works in
/// microseconds.
/// </remarks>
internal static class RedisScripts
{
    /// <summary>
    /// GCRA (token bucket / spike arrest). KEYS[1]: the TAT key. ARGV: emission (ticks), capacity.
    /// Returns {admitted (1|0), start - now (ticks)}: the caller recomputes the decision's numbers with
    /// RateLimitMath.Gcra(start - now, 0, …), which yields the same outcome.
    /// The key expires when the TAT has passed: after that an absent key means exactly the same thing.
    /// </summary>
    public const string Gcra = """
        local t = redis.call('TIME')
        local sec = tonumber(t[1])
        local now = tonumber(t[2]) * 10
        local emission = tonumber(ARGV[1])
        local capacity = tonumber(ARGV[2])
        local tat = now
        local stored = redis.call('GET', KEYS[1])
        if stored then
          local len = string.len(stored)
          if len > 7 then
            tat = (tonumber(string.sub(stored, 1, len - 7)) - sec) * 10000000 + tonumber(string.sub(stored, len - 6))
          end
        end
        local start = math.max(tat, now)
        local nxt = start + emission
        if now < nxt - capacity * emission then
          return {0, start - now}
        end
        redis.call('SET', KEYS[1], string.format('%d%07d', sec + math.floor(nxt / 10000000), nxt % 10000000), 'PX', math.ceil((nxt - now) / 10000))
        return {1, start - now}
        """;

    // Brings the window state (hash fields w = window index, p = previous window's count, c = current
    // window's count) to the window containing now, as RateLimitMath.SlidingWindow does before deciding.
    private const string SlidingRoll = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local per = tonumber(ARGV[1])
        local nowWindow = math.floor(now / per)
        local elapsed = now - nowWindow * per
        if elapsed < 0 then nowWindow = nowWindow - 1 elseif elapsed >= per then nowWindow = nowWindow + 1 end
        elapsed = now - nowWindow * per
        local s = redis.call('HMGET', KEYS[1], 'w', 'p', 'c')
        local window = tonumber(s[1])
        local previous = tonumber(s[2]) or 0
        local current = tonumber(s[3]) or 0
        if window ~= nowWindow then
          if window and nowWindow == window + 1 then previous = current else previous = 0 end
          current = 0
          window = nowWindow
        end

        """;

    /// <summary>
    /// Sliding window counter, strict mode. KEYS[1]: the window hash. ARGV: window (µs), limit, key TTL
    /// (ms, two windows). Returns {admitted, previous, current before this request, elapsed in window (µs)}
    /// so the caller recomputes retry-after and remaining with RateLimitMath.SlidingWindow.
    /// One hash per policy+key (rather than a key per window) keeps the script to a single declared key.
    /// </summary>
    public const string SlidingWindow = SlidingRoll + """
        local limit = tonumber(ARGV[2])
        if previous * ((per - elapsed) / per) + current + 1 > limit then
          return {0, previous, current, elapsed}
        end
        redis.call('HSET', KEYS[1], 'w', window, 'p', previous, 'c', current + 1)
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return {1, previous, current, elapsed}
        """;

    /// <summary>
    /// Approximate mode's synchronisation: adds the deltas one gateway counted locally (pairs of window
    /// index and count in ARGV[3..]) and reads back the global state. KEYS[1]: the window hash. ARGV:
    /// window (µs), key TTL (ms), then w1, d1, w2, d2 … Returns {window, previous, current, server
    /// seconds, server microseconds}. A delta for a window older than the previous one no longer matters
    /// and is dropped; one for a window the server has not reached yet (the gateway's clock estimate ran
    /// slightly ahead) counts in the current one, which errs towards limiting.
    /// </summary>
    public const string SlidingSync = SlidingRoll + """
        local changed = false
        for i = 3, #ARGV - 1, 2 do
          local w = tonumber(ARGV[i])
          local d = tonumber(ARGV[i + 1])
          if d > 0 then
            if w >= window then
              current = current + d
              changed = true
            elseif w == window - 1 then
              previous = previous + d
              changed = true
            end
          end
        end
        if changed then
          redis.call('HSET', KEYS[1], 'w', window, 'p', previous, 'c', current)
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return {window, previous, current, tonumber(t[1]), tonumber(t[2])}
        """;

    /// <summary>
    /// Quota: counts one request unless the window's count already reached the limit (nothing is counted
    /// when refused). KEYS[1]: the window's counter. ARGV: limit, expiry (Unix ms: window end + 1 day, so
    /// the admin API can still read yesterday's). Returns {admitted, count after}.
    /// </summary>
    public const string Quota = """
        local used = tonumber(redis.call('GET', KEYS[1]) or '0')
        if used >= tonumber(ARGV[1]) then
          return {0, used}
        end
        used = redis.call('INCR', KEYS[1])
        redis.call('PEXPIREAT', KEYS[1], ARGV[2])
        return {1, used}
        """;

    /// <summary>
    /// A slot of a shared concurrency limit: a sorted set of lease ids scored by their expiry (Redis server
    /// time, ms). KEYS[1]: the set. ARGV: max, lease TTL (ms), lease id. Drops expired leases (those of a
    /// crashed or partitioned instance), then adds this one if fewer than max remain. Returns {admitted,
    /// leases held after}. The key itself expires with its longest lease, so an idle limit leaves nothing.
    /// </summary>
    public const string ConcurrencyAcquire = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        local held = redis.call('ZCARD', KEYS[1])
        if held >= tonumber(ARGV[1]) then
          return {0, held}
        end
        local ttl = tonumber(ARGV[2])
        redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
        if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
        return {1, held + 1}
        """;

    /// <summary>
    /// Extends this instance's leases of one shared concurrency limit. KEYS[1]: the set. ARGV: lease TTL
    /// (ms), then lease ids. A lease that already expired (and may have been taken over) is not brought
    /// back (ZADD XX). Returns how many were renewed.
    /// </summary>
    public const string ConcurrencyRenew = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local ttl = tonumber(ARGV[1])
        local renewed = 0
        for i = 2, #ARGV do
          renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i])
        end
        if renewed > 0 and redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
        return renewed
        """;
}
