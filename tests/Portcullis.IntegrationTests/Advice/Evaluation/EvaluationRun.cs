using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Portcullis.IntegrationTests.Advice.Evaluation;

/// <summary>
/// One seed: history written, the gateway started on it, live background traffic for <c>duration</c> with the
/// labelled incidents injected at fixed offsets (none on a clean run), GET /admin/advice polled every 5 s.
/// </summary>
internal sealed class EvaluationRun
{
    public static readonly string[] ScannerPaths =
    [
        "/.env", "/wp-admin/", "/.git/config", "/wp-login.php", "/phpmyadmin/", "/.aws/credentials", "/config.json", "/backup.zip",
        "/admin.php", "/.git/HEAD", "/server-status", "/.DS_Store", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/actuator/env",
        "/.svn/entries", "/wp-content/debug.log", "/db.sql", "/.htpasswd", "/cgi-bin/test.cgi", "/xmlrpc.php",
    ];

    private readonly TrafficModel _model;
    private readonly Action<string> _log;
    private readonly ConcurrentDictionary<string, ObservedFinding> _findings = new();
    private readonly ConcurrentDictionary<string, int> _statuses = new();
    private long _sent;
    private long _dropped;
    private int _inFlight;
    private double _maxRunMs;
    private string? _detectorErrors;

    public EvaluationRun(TrafficModel model, Action<string> log)
    {
        _model = model;
        _log = log;
    }

    /// <summary>
    /// Live traffic before the first incident: the gateway's first minutes (cold JIT, first connections, the detection
    /// window still holding the seconds before traffic began) are not what a gateway in service looks like. Findings
    /// first seen in it are listed, not scored; incident offsets count from its end.
    /// </summary>
    public static readonly TimeSpan WarmUp = TimeSpan.FromSeconds(150);

    public async Task<RunResult> RunAsync(string folder, TimeSpan duration, TimeSpan interval, bool clean)
    {
        duration += WarmUp;
        var store = Path.Combine(folder, $"seed-{_model.Seed}{(clean ? "-clean" : "")}", "analytics.duckdb");
        if (Directory.Exists(Path.GetDirectoryName(store))) Directory.Delete(Path.GetDirectoryName(store)!, recursive: true);
        Directory.CreateDirectory(Path.GetDirectoryName(store)!);
        var watch = Stopwatch.StartNew();
        var (rows, samples, requests) = HistorySeeder.Write(store, _model, DateTime.UtcNow, days: 7);
        _log($"seed {_model.Seed}: history of 7 days written in {watch.Elapsed.TotalSeconds:0.0} s ({rows:N0} rollup rows, {samples:N0} samples, {requests:N0} requests)");

        await using var eval = await EvaluationGateway.StartAsync(_model, store, interval);
        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = 512, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) };
        using var client = new HttpClient(handler) { BaseAddress = new Uri(eval.Gateway.Url), Timeout = TimeSpan.FromSeconds(10) };
        var start = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        var incidents = clean ? [] : Incidents(eval);
        var tasks = new List<Task>
        {
            BackgroundAsync(client, eval, start, stop.Token),
            PollAsync(eval, start, stop.Token),
        };
        if (!clean) tasks.Add(InjectAsync(client, eval, incidents, start, stop.Token));
        while (start.Elapsed < duration)
        {
            await Task.Delay(TimeSpan.FromSeconds(30));
            _log($"  {(start.Elapsed - WarmUp).TotalSeconds:0} s: sent {Interlocked.Read(ref _sent):N0}, in flight {Volatile.Read(ref _inFlight)}, dropped {Interlocked.Read(ref _dropped)}, findings {_findings.Count}");
        }

        await stop.CancelAsync();
        await Task.WhenAll(tasks.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        await PollOnceAsync(eval, start); // the last word
        var statuses = string.Join(" ", _statuses.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => $"{s.Key}:{s.Value}"));
        var notes = $"Warm-up {WarmUp.TotalSeconds:0} s (not scored). Sent {_sent:N0} requests ({_sent / duration.TotalSeconds:0.0}/s; {statuses}), dropped {_dropped} (over 400 in flight); longest advisor run {_maxRunMs:0} ms.{(_detectorErrors is null ? "" : " Detector errors: " + _detectorErrors)}";
        _log("  " + notes);
        // Offsets from the end of the warm-up; findings first seen in it are kept apart.
        var seen = _findings.Values.Select(f => f with { FirstObserved = f.FirstObserved - WarmUp }).OrderBy(f => f.FirstObserved).ToList();
        return new RunResult(_model.Seed, clean, duration - WarmUp, incidents.Select(i => i).ToList(), [.. seen.Where(f => f.FirstObserved >= TimeSpan.Zero)], notes)
        {
            WarmUpFindings = [.. seen.Where(f => f.FirstObserved < TimeSpan.Zero)],
        };
    }

    /// <summary>The incidents of a run and their subjects (offsets into the live run; each lasts to the end unless said).</summary>
    private List<Incident> Incidents(EvaluationGateway eval)
    {
        var random = new Random(_model.Seed * 31 + 5);
        var (surger, surgeRoute) = SurgeTarget(random);
        var newcomer = _model.Consumers.Where(c => c.Name.StartsWith("c-", StringComparison.Ordinal) && c.Name != "c-expired" && c.Name != surger.Name).OrderBy(_ => random.Next()).First();
        _surge = (surger, surgeRoute);
        _newcomer = newcomer;
        var flapper = eval.Flapper;
        return
        [
            new("scanner", "traffic.scanner", [EvaluationGateway.ScannerClient], TimeSpan.FromSeconds(60), ["traffic.enumeration", "route.volume-anomaly"], ["(unmatched)"]),
            new("credential stuffing", "auth.failure-burst", [EvaluationGateway.StuffingClient], TimeSpan.FromSeconds(75), ["route.error-anomaly", "route.volume-anomaly"], ["orders"]),
            new("flapping destination", "destination.flapping", ["inventory", flapper.Name, flapper.Url, "inventory/" + flapper.Name], TimeSpan.FromSeconds(90), ["route.error-anomaly", "upstream.errors"]),
            new("failing upstream", "upstream.errors", ["payments", "payments-a", TrafficModel.Route("payments").Prefix], TimeSpan.FromSeconds(120), ["route.error-anomaly"]),
            new("consumer hammering a route", "consumer.rate-surge", [surger.Name], TimeSpan.FromSeconds(150), ["route.volume-anomaly", "ratelimit.too-tight"], [surgeRoute.Name]),
            new("latency creeping to the timeout", "upstream.timeout-too-tight", ["catalog", "catalog-a"], TimeSpan.FromSeconds(150), ["route.latency-anomaly", "upstream.timeouts", "route.error-anomaly"]), // past the timeout: 504s
            new("new consumer on the admin route", "consumer.new-route", [newcomer.Name], TimeSpan.FromSeconds(180), ["route.volume-anomaly"], ["admin"]),
            new("limit far too tight", "ratelimit.too-tight", ["reports-tight", "reports"], TimeSpan.FromSeconds(210), ["route.error-anomaly"]),
        ];
    }

    private (EvalConsumer Consumer, EvalRoute Route) _surge;
    private EvalConsumer _newcomer = null!;

    // A consumer of middling rate (not one of the heaviest, not idle): it starts calling one of its routes 30 times as often.
    private (EvalConsumer, EvalRoute) SurgeTarget(Random random)
    {
        var candidates = _model.Streams.Where(s => s.FixedOutcome is null && s.Caller.Name.StartsWith("c-", StringComparison.Ordinal) && s.PeakRate is > 0.02 and < 0.3).ToList();
        var stream = candidates[random.Next(candidates.Count)];
        return (stream.Caller, stream.Route);
    }

    private async Task InjectAsync(HttpClient client, EvaluationGateway eval, List<Incident> incidents, Stopwatch clock, CancellationToken stop)
    {
        async Task At(string name, Func<Task> action)
        {
            var incident = incidents.Single(i => i.Name == name);
            var wait = WarmUp + incident.Start - clock.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait, stop);
            _log($"  {(clock.Elapsed - WarmUp).TotalSeconds:0} s: incident '{name}' starts");
            await action();
        }

        var surgeRate = Math.Max(5, 30 * _model.Streams.Where(s => s.Caller == _surge.Consumer && s.Route == _surge.Route).Sum(s => s.PeakRate));
        var key = eval.Keys[_surge.Consumer.Name];
        var random = new Random(_model.Seed);
        await Task.WhenAll(
            At("scanner", () => Repeat(3, TimeSpan.FromSeconds(60), i => Send(client, ScannerPaths[i % ScannerPaths.Length] + (i >= ScannerPaths.Length ? "?" + i : ""), EvaluationGateway.ScannerClient, null), stop)),
            At("credential stuffing", () => Repeat(8, TimeSpan.FromSeconds(60), i => Send(client, $"/orders/{random.Next(100000)}", EvaluationGateway.StuffingClient, $"pck_{random.Next():x12}_{Guid.NewGuid():N}"), stop)),
            At("flapping destination", () => Flap(eval, stop)),
            At("failing upstream", () =>
            {
                eval.Behaviour["payments"].FailShare = 0.4f;
                return Task.CompletedTask;
            }),
            At("consumer hammering a route", () => Repeat(surgeRate, TimeSpan.MaxValue, _ => Send(client, $"{_surge.Route.Prefix}/{random.Next(100000)}", _surge.Consumer.Client, key), stop)),
            At("latency creeping to the timeout", () => Creep(eval, clock, stop)),
            At("new consumer on the admin route", () => Repeat(0.5, TimeSpan.MaxValue, _ => Send(client, $"/admin-api/users/{random.Next(1000)}", _newcomer.Client, eval.Keys[_newcomer.Name]), stop)),
            At("limit far too tight", eval.TightenReportsAsync));
    }

    // The flapping destination's health answer toggles every 4 s (probed every 1 s, one failure or success flips it).
    private static async Task Flap(EvaluationGateway eval, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            eval.Flapper.Healthy = !eval.Flapper.Healthy;
            await Task.Delay(TimeSpan.FromSeconds(4), stop);
        }
    }

    // Catalog's latency creeps from its usual ~10 ms to 1.7 s over 90 s (85 % of its 2 s request timeout), then stays there.
    private static async Task Creep(EvaluationGateway eval, Stopwatch clock, CancellationToken stop)
    {
        var from = clock.Elapsed;
        while (!stop.IsCancellationRequested)
        {
            var progress = Math.Min(1, (clock.Elapsed - from).TotalSeconds / 90);
            eval.Behaviour["catalog"].ExtraDelayMs = (float)(1700 * progress);
            await Task.Delay(TimeSpan.FromSeconds(1), stop);
        }
    }

    private static async Task Repeat(double perSecond, TimeSpan length, Action<int> send, CancellationToken stop)
    {
        var clock = Stopwatch.StartNew();
        var i = 0;
        while (!stop.IsCancellationRequested && clock.Elapsed < length)
        {
            var due = (int)(clock.Elapsed.TotalSeconds * perSecond);
            while (i < due) send(i++);
            await Task.Delay(50, stop);
        }
    }

    /// <summary>The background traffic: every stream a Poisson process at its rate × the time of day's share, in ticks of 100 ms.</summary>
    private async Task BackgroundAsync(HttpClient client, EvaluationGateway eval, Stopwatch clock, CancellationToken stop)
    {
        var random = new Random(_model.Seed * 101 + 3);
        var tick = TimeSpan.FromMilliseconds(100);
        var next = clock.Elapsed;
        while (!stop.IsCancellationRequested)
        {
            var share = TrafficModel.Diurnal(DateTime.UtcNow);
            foreach (var stream in _model.Streams)
            {
                var count = TrafficModel.Poisson(stream.PeakRate * share * tick.TotalSeconds, random);
                for (var i = 0; i < count; i++) SendStream(client, eval, stream, random);
            }

            next += tick;
            var wait = next - clock.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait, stop);
        }
    }

    private void SendStream(HttpClient client, EvaluationGateway eval, EvalStream stream, Random random)
    {
        var caller = stream.Caller;
        switch (stream.FixedOutcome)
        {
            case "expired":
                Send(client, $"{stream.Route.Prefix}/{random.Next(100000)}", caller.Client, eval.ExpiredKey);
                return;
            case "nokey":
                Send(client, $"{stream.Route.Prefix}/{random.Next(100000)}", caller.Client, null);
                return;
            case "noise":
                Send(client, TrafficModel.NoisePaths[random.Next(TrafficModel.NoisePaths.Length)], caller.Client, null);
                return;
        }

        var roll = random.NextDouble();
        var id = roll < TrafficModel.ServerErrorShare ? $"boom-{random.Next(1000)}" : roll < TrafficModel.ServerErrorShare + TrafficModel.NotFoundShare ? $"missing-{random.Next(1000)}" : random.Next(100000).ToString(CultureInfo.InvariantCulture);
        Send(client, $"{stream.Route.Prefix}/{id}", caller.Client, caller.HasKey ? eval.Keys[caller.Name] : null);
    }

    private void Send(HttpClient client, string path, string forwardedFor, string? apiKey)
    {
        if (Interlocked.Increment(ref _inFlight) > 400)
        {
            Interlocked.Decrement(ref _inFlight);
            Interlocked.Increment(ref _dropped);
            return;
        }

        Interlocked.Increment(ref _sent);
        _ = Task.Run(async () =>
        {
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, path);
                request.Headers.TryAddWithoutValidation("X-Forwarded-For", forwardedFor);
                if (apiKey is not null) request.Headers.TryAddWithoutValidation("X-Api-Key", apiKey);
                using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                await response.Content.CopyToAsync(Stream.Null);
                _statuses.AddOrUpdate(((int)response.StatusCode).ToString(CultureInfo.InvariantCulture), 1, (_, n) => n + 1);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                _statuses.AddOrUpdate("error", 1, (_, n) => n + 1);
            }
            finally
            {
                Interlocked.Decrement(ref _inFlight);
            }
        });
    }

    private async Task PollAsync(EvaluationGateway eval, Stopwatch clock, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            await PollOnceAsync(eval, clock);
            await Task.Delay(TimeSpan.FromSeconds(5), stop);
        }
    }

    private async Task PollOnceAsync(EvaluationGateway eval, Stopwatch clock)
    {
        using var response = await eval.Gateway.Admin.GetAsync("/admin/advice?state=all");
        var body = await response.Content.ReadAsStringAsync();
        if (response.StatusCode == System.Net.HttpStatusCode.NotFound && _detectorErrors is null or "no advisor")
        {
            // A gateway without the advisor's API: the traffic and incidents still run (to check the harness itself).
            _detectorErrors = "no advisor";
            return;
        }

        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"GET /admin/advice answered {(int)response.StatusCode}: {body}");
        using var document = JsonDocument.Parse(body);
        var root = document.RootElement;
        if (root.TryGetProperty("lastRun", out var run) && run.ValueKind == JsonValueKind.Object)
        {
            if (run.TryGetProperty("durationMs", out var ms) && ms.ValueKind == JsonValueKind.Number) _maxRunMs = Math.Max(_maxRunMs, ms.GetDouble());
            if (run.TryGetProperty("detectors", out var detectors) && detectors.ValueKind == JsonValueKind.Array)
            {
                foreach (var d in detectors.EnumerateArray())
                {
                    if (d.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.String) _detectorErrors = $"{d.GetProperty("name").GetString()}: {error.GetString()}";
                }
            }
        }

        var now = clock.Elapsed;
        foreach (var f in root.GetProperty("findings").EnumerateArray())
        {
            var id = f.GetProperty("id").GetString()!;
            if (_findings.ContainsKey(id)) continue;
            var subject = f.GetProperty("subject");
            var observed = new ObservedFinding(id, f.GetProperty("kind").GetString()!, f.GetProperty("severity").GetString()!,
                subject.GetProperty("kind").GetString()!, subject.GetProperty("name").GetString()!,
                subject.TryGetProperty("route", out var route) && route.ValueKind == JsonValueKind.String ? route.GetString() : null,
                f.GetProperty("title").GetString() ?? "", now);
            if (_findings.TryAdd(id, observed)) _log($"  {(now - WarmUp).TotalSeconds:0} s: {Scoring.Describe(observed with { FirstObserved = now - WarmUp })}");
        }
    }
}
