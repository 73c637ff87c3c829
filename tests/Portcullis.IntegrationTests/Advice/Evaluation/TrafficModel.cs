namespace Portcullis.IntegrationTests.Advice.Evaluation;

/// <summary>A route of the evaluation gateway: its path prefix, cluster, whether it needs an API key, and its upstream's median latency.</summary>
internal sealed record EvalRoute(string Name, string Prefix, string Cluster, bool Auth, double MedianMs);

/// <summary>One caller: an API-key consumer (HasKey) or an anonymous client; its address (sent as X-Forwarded-For) and its streams.</summary>
internal sealed record EvalConsumer(string Name, string? Group, string Client, bool HasKey);

/// <summary>A Poisson stream of requests: who calls which route at what rate (requests per second at the daily peak).</summary>
internal sealed record EvalStream(EvalConsumer Caller, EvalRoute Route, double PeakRate, string? FixedOutcome = null);

/// <summary>
/// The background traffic of one seed: many consumers with heavy-tailed (Pareto) rates over a few routes each, a
/// diurnal shape, a normal share of 4xx (unknown ids at the upstream, an expired key, a missing key, favicon-style
/// unmatched paths) and a few 5xx. The same model writes the pre-seeded history and drives the live traffic, so the
/// advisor's baselines are what the live traffic keeps doing when nothing happens.
/// </summary>
internal sealed class TrafficModel
{
    public static readonly EvalRoute[] Routes =
    [
        new("orders", "/orders", "orders", true, 8),
        new("users", "/users", "users", true, 5),
        new("search", "/search", "search", true, 15),
        new("payments", "/payments", "payments", true, 12),
        new("inventory", "/inventory", "inventory", true, 6),
        new("reports", "/reports", "reports", true, 20),
        new("catalog", "/catalog", "catalog", false, 10),
        new("admin", "/admin-api", "admin", true, 7),
    ];

    /// <summary>Share of an API route's requests that ask for an id the upstream does not have (404), and that fail there (500).</summary>
    public const double NotFoundShare = 0.02;
    public const double ServerErrorShare = 0.002;

    /// <summary>Paths browsers and crawlers ask for that no route matches: background noise, not a scanner.</summary>
    public static readonly string[] NoisePaths = ["/favicon.ico", "/robots.txt", "/apple-touch-icon.png", "/sitemap.xml"];

    public static EvalRoute Route(string name) => Routes.Single(r => r.Name == name);

    public TrafficModel(int seed, int consumers = 120, double peakRate = 22)
    {
        Seed = seed;
        var random = new Random(seed);
        var apiRoutes = Routes.Where(r => r.Auth && r.Name != "admin").ToArray();
        var groups = new[] { "free", "silver", "gold" };
        var weights = new double[consumers];
        for (var i = 0; i < consumers; i++) weights[i] = Math.Min(60, Math.Pow(1 - random.NextDouble(), -1 / 1.3)); // Pareto, α = 1.3
        var authRate = peakRate * 0.8; // the rest: anonymous catalog and noise
        var scale = authRate / weights.Sum();
        for (var i = 0; i < consumers; i++)
        {
            var rate = weights[i] * scale;
            var caller = new EvalConsumer($"c-{i:000}", groups[rate > 0.4 ? 2 : rate > 0.1 ? 1 : 0], $"10.1.{i / 250}.{i % 250 + 1}", true);
            Consumers.Add(caller);
            var count = 1 + random.Next(4);
            var picked = apiRoutes.OrderBy(_ => random.Next()).Take(count).ToArray();
            var share = picked.Select(_ => 0.2 + random.NextDouble()).ToArray();
            for (var r = 0; r < picked.Length; r++) Streams.Add(new EvalStream(caller, picked[r], rate * share[r] / share.Sum()));
        }

        // Two staff consumers use the admin route, rarely; one consumer kept using a key that expired (steady 401s:
        // one client with a stale credential, which must not look like credential stuffing).
        foreach (var staff in new[] { "staff-1", "staff-2" })
        {
            var caller = new EvalConsumer(staff, "staff", $"10.2.0.{Consumers.Count % 250 + 1}", true);
            Consumers.Add(caller);
            Streams.Add(new EvalStream(caller, Route("admin"), 0.05));
            Streams.Add(new EvalStream(caller, Route("reports"), 0.1));
        }

        var expired = new EvalConsumer("c-expired", "free", "10.2.1.1", true);
        Consumers.Add(expired);
        Streams.Add(new EvalStream(expired, Route("orders"), 0.05, FixedOutcome: "expired"));

        // Anonymous: catalog browsing from many addresses, a few calls without a key, favicon-style unmatched paths.
        for (var i = 0; i < 200; i++)
        {
            var client = new EvalConsumer($"anon-{i}", null, $"10.9.{i / 200}.{i % 200 + 1}", false);
            Anonymous.Add(client);
            Streams.Add(new EvalStream(client, Route("catalog"), peakRate * 0.18 / 200));
            if (i % 10 == 0) Streams.Add(new EvalStream(client, Route("orders"), 0.002, FixedOutcome: "nokey"));
            if (i % 5 == 0) Streams.Add(new EvalStream(client, Route("catalog"), 0.003, FixedOutcome: "noise"));
        }
    }

    public int Seed { get; }

    public List<EvalConsumer> Consumers { get; } = [];

    public List<EvalConsumer> Anonymous { get; } = [];

    public List<EvalStream> Streams { get; } = [];

    /// <summary>Rate multiplier by time of day (UTC): 0.3 at 03:00, 1.0 at 15:00, smooth in between.</summary>
    public static double Diurnal(DateTime utc)
    {
        var hour = utc.TimeOfDay.TotalHours;
        return 0.3 + 0.7 * (0.5 - 0.5 * Math.Cos(2 * Math.PI * (hour - 3) / 24));
    }

    /// <summary>An upstream latency (ms) for a route: log-normal around its median.</summary>
    public static double LatencyMs(EvalRoute route, Random random)
    {
        var normal = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
        return Math.Min(route.MedianMs * Math.Exp(0.45 * normal), route.MedianMs * 8);
    }

    /// <summary>Poisson-distributed count with mean <paramref name="mean"/> (normal approximation above 50).</summary>
    public static int Poisson(double mean, Random random)
    {
        if (mean <= 0) return 0;
        if (mean > 50)
        {
            var normal = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
            return Math.Max(0, (int)Math.Round(mean + Math.Sqrt(mean) * normal));
        }

        var limit = Math.Exp(-mean);
        var k = 0;
        var p = random.NextDouble();
        while (p > limit)
        {
            k++;
            p *= random.NextDouble();
        }

        return k;
    }
}
