using Portcullis.Configuration;

namespace Portcullis.Advice;

internal static partial class AdviceCompiler
{
    static partial void ValidateAnomalies(CompileContext context, AdviceAnomalyOptions options, ref bool ok)
    {
        var valid = true;
        void Error(string key, string message, string hint)
        {
            context.Error($"{Section}.anomalies.{key}", message, hint);
            valid = false;
        }

        void Range(string key, TimeSpan value, TimeSpan min, TimeSpan max, string hint)
        {
            if (value < min || value > max) Error(key, $"{key} must be between {min} and {max} (it is {value})", hint);
        }

        void AtLeast(string key, double value, double min, string hint)
        {
            if (double.IsNaN(value) || value < min) Error(key, $"{key} must be at least {min} (it is {value})", hint);
        }

        Range("detectionWindow", options.DetectionWindow, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(10), "the recent traffic compared with the baseline: e.g. detectionWindow: 2m");
        Range("recentBaseline", options.RecentBaseline, TimeSpan.FromHours(1), TimeSpan.FromHours(24), "minute rows are kept 48h: e.g. recentBaseline: 6h");
        Range("minHistory", options.MinHistory, TimeSpan.FromMinutes(10), TimeSpan.FromDays(7), "e.g. minHistory: 1h");
        Range("newRouteWindow", options.NewRouteWindow, TimeSpan.FromMinutes(1), TimeSpan.FromHours(24), "e.g. newRouteWindow: 15m");
        Range("burstWindow", options.BurstWindow, TimeSpan.FromMinutes(1), TimeSpan.FromHours(1), "e.g. burstWindow: 5m");
        Range("minLatencyIncrease", options.MinLatencyIncrease, TimeSpan.Zero, TimeSpan.FromMinutes(10), "e.g. minLatencyIncrease: 100ms");
        AtLeast("zThreshold", options.ZThreshold, 1, "a robust z of 6 is about one false alarm in a billion normal minutes: e.g. zThreshold: 6");
        AtLeast("volumeRatio", options.VolumeRatio, 1.1, "e.g. volumeRatio: 3");
        AtLeast("minVolumeChange", options.MinVolumeChange, 0, "requests per minute: e.g. minVolumeChange: 60");
        AtLeast("latencyRatio", options.LatencyRatio, 1.1, "e.g. latencyRatio: 2");
        AtLeast("surgeRatio", options.SurgeRatio, 1.1, "e.g. surgeRatio: 5");
        AtLeast("minSurgeRate", options.MinSurgeRate, 1, "requests per minute: e.g. minSurgeRate: 60");
        AtLeast("authBurstRatio", options.AuthBurstRatio, 1, "e.g. authBurstRatio: 5");
        AtLeast("minErrors", options.MinErrors, 1, "e.g. minErrors: 10");
        AtLeast("minLatencyRequests", options.MinLatencyRequests, 10, "a p99 needs at least this many requests: e.g. minLatencyRequests: 50");
        AtLeast("minAuthFailures", options.MinAuthFailures, 2, "e.g. minAuthFailures: 20");
        AtLeast("minProbePaths", options.MinProbePaths, 1, "e.g. minProbePaths: 3");
        AtLeast("minUnmatchedPaths", options.MinUnmatchedPaths, 2, "e.g. minUnmatchedPaths: 25");
        AtLeast("minEnumerationPaths", options.MinEnumerationPaths, 2, "e.g. minEnumerationPaths: 20");
        AtLeast("minShapeRequests", options.MinShapeRequests, 1, "e.g. minShapeRequests: 5");
        if (double.IsNaN(options.ErrorRateIncrease) || options.ErrorRateIncrease <= 0 || options.ErrorRateIncrease >= 1)
        {
            Error("errorRateIncrease", $"errorRateIncrease must be above 0 and below 1 (it is {options.ErrorRateIncrease})", "a share: e.g. errorRateIncrease: 0.05 (5 points)");
        }

        if (!valid) ok = false;
    }
}
