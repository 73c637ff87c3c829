using Portcullis.Configuration;

namespace Portcullis.Advice;

internal static partial class AdviceCompiler
{
    private const string Services = "services";

    static partial void ValidateServices(CompileContext context, AdviceServiceOptions options, ref bool ok)
    {
        var valid = true;
        void Error(string key, string message, string hint)
        {
            context.Error($"{Section}.{Services}.{key}", message, hint);
            valid = false;
        }

        void Between(string key, TimeSpan value, TimeSpan min, TimeSpan max, string hint)
        {
            if (value < min || value > max) Error(key, $"{key} must be between {DurationFormat.Format(min)} and {DurationFormat.Format(max)} (it is {value})", hint);
        }

        void Share(string key, double value, string hint)
        {
            if (!(value > 0 && value <= 1)) Error(key, $"{key} must be above 0 and at most 1 (it is {value})", hint);
        }

        void AtLeast(string key, long value, long min, string hint)
        {
            if (value < min) Error(key, $"{key} must be at least {min} (it is {value})", hint);
        }

        Between("errorWindow", options.ErrorWindow, TimeSpan.FromSeconds(30), TimeSpan.FromHours(1), "the upstream checks look this far back: e.g. errorWindow: 2m");
        Share("errorRatio", options.ErrorRatio, "a share of requests: e.g. errorRatio: 0.05 (5 %)");
        Share("timeoutRatio", options.TimeoutRatio, "a share of requests: e.g. timeoutRatio: 0.02 (2 %)");
        AtLeast("minErrors", options.MinErrors, 1, "e.g. minErrors: 10");
        AtLeast("minRequests", options.MinRequests, 1, "e.g. minRequests: 30");
        if (options.SustainedFor < TimeSpan.Zero || options.SustainedFor >= options.ErrorWindow)
        {
            Error("sustainedFor", $"sustainedFor must be at least 0 and shorter than errorWindow ({options.ErrorWindow})", "e.g. sustainedFor: 30s with errorWindow: 2m");
        }

        Between("latencyWindow", options.LatencyWindow, TimeSpan.FromMinutes(1), TimeSpan.FromHours(6), "e.g. latencyWindow: 5m");
        AtLeast("minLatencyRequests", options.MinLatencyRequests, 1, "e.g. minLatencyRequests: 50");
        Share("tightShare", options.TightShare, "a share of the timeout: e.g. tightShare: 0.8");
        if (!(options.LooseFactor >= 2)) Error("looseFactor", $"looseFactor must be at least 2 (it is {options.LooseFactor})", "e.g. looseFactor: 20");
        AtLeast("minLooseRequests", options.MinLooseRequests, 1, "e.g. minLooseRequests: 1000");
        Between("flapWindow", options.FlapWindow, TimeSpan.FromMinutes(1), TimeSpan.FromDays(1), "e.g. flapWindow: 10m");
        AtLeast("flapTransitions", options.FlapTransitions, 2, "e.g. flapTransitions: 4 (two round trips)");
        AtLeast("minTrafficRequests", options.MinTrafficRequests, 1, "e.g. minTrafficRequests: 100");
        Headers("securityHeaders", options.SecurityHeaders);
        Headers("leakingHeaders", options.LeakingHeaders);
        if (options.CertificateCritical <= TimeSpan.Zero) Error("certificateCritical", "certificateCritical must be greater than zero", "e.g. certificateCritical: 7d");
        if (options.CertificateWarning < options.CertificateCritical)
        {
            Error("certificateWarning", $"certificateWarning ({options.CertificateWarning}) must not be shorter than certificateCritical ({options.CertificateCritical})", "e.g. certificateWarning: 30d, certificateCritical: 7d");
        }

        Between("jwksFailingFor", options.JwksFailingFor, TimeSpan.Zero, TimeSpan.FromDays(1), "e.g. jwksFailingFor: 1m");
        if (!valid) ok = false;

        void Headers(string key, IReadOnlyList<string> headers)
        {
            for (var i = 0; i < headers.Count; i++)
            {
                if (string.IsNullOrWhiteSpace(headers[i]) || headers[i].Any(c => c <= ' ' || c == ':' || c > '~'))
                {
                    context.Error($"{Section}.{Services}.{key}[{i}]", $"'{headers[i]}' is not a header name", "e.g. Strict-Transport-Security");
                    valid = false;
                }
            }
        }
    }
}
