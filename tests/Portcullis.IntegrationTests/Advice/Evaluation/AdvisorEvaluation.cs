using System.Globalization;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests.Advice.Evaluation;

/// <summary>
/// The advisor's evaluation (issue 17, "an evaluation harness"): per seed, a real gateway on 7 days of pre-seeded
/// baseline history, live background traffic and eight labelled incidents; precision, recall and time to detect per
/// finding kind; a clean run's false positives per hour. Runs only when PORTCULLIS_BENCH_ADVISOR names a folder
/// (bench/advisor/run.sh); results in {folder}/results.md. See bench/advisor/README.md.
/// </summary>
public sealed class AdvisorEvaluation(ITestOutputHelper output)
{
    public const string Variable = "PORTCULLIS_BENCH_ADVISOR";

    [Fact]
    [Trait("Category", "Benchmark")]
    public async Task Precision_recall_and_time_to_detect_per_kind()
    {
        if (Environment.GetEnvironmentVariable(Variable) is not { Length: > 0 } folder) return; // a benchmark, not a test: opt in
        Directory.CreateDirectory(folder);
        var seeds = Setting("SEEDS", "1,2,3").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToList();
        var minutes = double.Parse(Setting("MINUTES", "7"), CultureInfo.InvariantCulture);
        var cleanMinutes = double.Parse(Setting("CLEAN_MINUTES", "15"), CultureInfo.InvariantCulture);
        var interval = TimeSpan.FromSeconds(int.Parse(Setting("INTERVAL", "60"), CultureInfo.InvariantCulture));
        if (minutes < 6) throw new InvalidOperationException($"{Variable}_MINUTES must be at least 6: the last incident starts at 3.5 min and has 2 min to be detected");
        var log = Path.Combine(folder, "log.txt");
        File.WriteAllText(log, "");
        void Say(string line)
        {
            output.WriteLine(line);
            File.AppendAllText(log, $"{DateTime.UtcNow:HH:mm:ss} {line}\n");
        }

        var runs = new List<RunResult>();
        void Write()
        {
            var header = $"Measured {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on {Environment.ProcessorCount} cores (load average {LoadAverage()}), advice.interval {interval.TotalSeconds:0} s, polled every 5 s.\n\n";
            File.WriteAllText(Path.Combine(folder, "results.md"), header + Scoring.Markdown(runs));
        }

        foreach (var seed in seeds)
        {
            Say($"seed {seed}: incident run, {minutes} min live");
            runs.Add(await new EvaluationRun(new TrafficModel(seed), Say).RunAsync(folder, TimeSpan.FromMinutes(minutes), interval, clean: false));
            Write();
        }

        if (cleanMinutes > 0)
        {
            var seed = seeds.DefaultIfEmpty(0).Max() + 100;
            Say($"seed {seed}: clean run, {cleanMinutes} min live");
            runs.Add(await new EvaluationRun(new TrafficModel(seed), Say).RunAsync(folder, TimeSpan.FromMinutes(cleanMinutes), interval, clean: true));
            Write();
        }

        Say(File.ReadAllText(Path.Combine(folder, "results.md")));
    }

    private static string Setting(string name, string fallback) => Environment.GetEnvironmentVariable($"{Variable}_{name}") is { Length: > 0 } value ? value : fallback;

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";
}
