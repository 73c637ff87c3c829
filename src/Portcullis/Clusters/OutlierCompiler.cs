using System.Globalization;
using Portcullis.Configuration;

namespace Portcullis.Clusters;

/// <summary>A cluster's outlier detection, validated; null rules are off.</summary>
internal sealed record CompiledOutlierDetection(
    TimeSpan Interval,
    TimeSpan BaseEjectionTime,
    TimeSpan MaxEjectionTime,
    int MaxEjectionPercent,
    CompiledSuccessRateRule? SuccessRate,
    CompiledFailurePercentageRule? FailurePercentage,
    CompiledLatencyRule? Latency);

internal sealed record CompiledSuccessRateRule(int MinRequests, int MinDestinations, double StdevFactor);

internal sealed record CompiledFailurePercentageRule(int Threshold, int MinRequests, int MinDestinations);

internal sealed record CompiledLatencyRule(double Factor, int MinRequests, int MinDestinations, TimeSpan MinLatency);

/// <summary>Validation of clusters.NAME.healthCheck.outlierDetection (positions at the offending key).</summary>
internal static class OutlierCompiler
{
    public static CompiledOutlierDetection? Compile(CompileContext context, OutlierDetectionOptions? options, int destinations, string path)
    {
        if (options is null) return null;
        if (options.Interval <= TimeSpan.Zero) context.Error(path + ".interval", "interval must be greater than zero", "e.g. interval: 10s");
        if (options.BaseEjectionTime <= TimeSpan.Zero) context.Error(path + ".baseEjectionTime", "baseEjectionTime must be greater than zero", "e.g. baseEjectionTime: 30s");
        if (options.MaxEjectionTime < options.BaseEjectionTime) context.Error(path + ".maxEjectionTime", "maxEjectionTime must be at least baseEjectionTime", "e.g. maxEjectionTime: 5m");
        if (options.MaxEjectionPercent is < 1 or > 100) context.Error(path + ".maxEjectionPercent", $"maxEjectionPercent must be between 1 and 100 (it is {options.MaxEjectionPercent})", "50 keeps at least half of the destinations in service");
        if (options.SuccessRate is null && options.FailurePercentage is null && options.Latency is null)
        {
            context.Error(path, "outlierDetection has no rule", "add successRate: {}, failurePercentage: { threshold: 50 } and/or latency: { factor: 3 }");
        }

        CompiledSuccessRateRule? successRate = null;
        if (options.SuccessRate is { } sr)
        {
            var p = path + ".successRate";
            CheckVolume(context, p, sr.MinRequests, sr.MinDestinations);
            if (!(sr.StdevFactor > 0) || !double.IsFinite(sr.StdevFactor)) context.Error(p + ".stdevFactor", "stdevFactor must be greater than zero", "1.9 (Envoy's default)");
            else if (destinations >= 2 && Math.Sqrt(destinations - 1) <= sr.StdevFactor)
            {
                // One outlier among N values lies at most √(N−1) population standard deviations from their mean.
                context.Warning(p + ".stdevFactor", $"with {destinations} destinations the success-rate rule can never eject: one outlier is at most √{destinations - 1} = {Math.Sqrt(destinations - 1).ToString("0.##", CultureInfo.InvariantCulture)} standard deviations from the mean, not more than stdevFactor {sr.StdevFactor.ToString(CultureInfo.InvariantCulture)}",
                    "lower stdevFactor, or use failurePercentage for small clusters");
            }

            successRate = new CompiledSuccessRateRule(sr.MinRequests, sr.MinDestinations, sr.StdevFactor);
        }

        CompiledFailurePercentageRule? failurePercentage = null;
        if (options.FailurePercentage is { } fp)
        {
            var p = path + ".failurePercentage";
            CheckVolume(context, p, fp.MinRequests, fp.MinDestinations);
            if (fp.Threshold is < 1 or > 100) context.Error(p + ".threshold", $"threshold must be a percentage between 1 and 100 (it is {fp.Threshold})", "e.g. threshold: 50");
            failurePercentage = new CompiledFailurePercentageRule(fp.Threshold, fp.MinRequests, fp.MinDestinations);
        }

        CompiledLatencyRule? latency = null;
        if (options.Latency is { } l)
        {
            var p = path + ".latency";
            CheckVolume(context, p, l.MinRequests, l.MinDestinations);
            if (!(l.Factor > 1) || !double.IsFinite(l.Factor)) context.Error(p + ".factor", "factor must be greater than 1", "e.g. factor: 3 (three times the median p90)");
            if (l.MinLatency < TimeSpan.Zero) context.Error(p + ".minLatency", "minLatency cannot be negative", "e.g. minLatency: 100ms");
            latency = new CompiledLatencyRule(l.Factor, l.MinRequests, l.MinDestinations, l.MinLatency);
        }

        // Any error rejects the whole config; nothing compiled from it runs.
        return context.HasErrors
            ? null
            : new CompiledOutlierDetection(options.Interval, options.BaseEjectionTime, options.MaxEjectionTime, options.MaxEjectionPercent, successRate, failurePercentage, latency);
    }

    private static void CheckVolume(CompileContext context, string path, int minRequests, int minDestinations)
    {
        if (minRequests < 1) context.Error(path + ".minRequests", "minRequests must be at least 1", "a destination is judged only on enough requests, e.g. minRequests: 100");
        if (minDestinations < 2) context.Error(path + ".minDestinations", "minDestinations must be at least 2", "an outlier needs others to stand out from, e.g. minDestinations: 3");
    }
}
