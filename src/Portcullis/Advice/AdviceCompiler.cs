using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// Validation and compilation of `advice`. The engine's keys are checked here; each group of checks validates
/// its own sub-section in its own file (AdviceCompiler.RateLimits.cs, .Anomalies.cs, .Services.cs).
/// </summary>
internal static partial class AdviceCompiler
{
    internal const string Section = "advice";
    internal static readonly TimeSpan MinInterval = TimeSpan.FromSeconds(5);
    internal static readonly TimeSpan MinWindow = TimeSpan.FromHours(1);

    /// <summary>Null when the advisor is off (advice.enabled: false).</summary>
    internal static CompiledAdvice? Compile(CompileContext context, AdviceOptions options, string? analyticsPath)
    {
        if (!options.Enabled) return null;
        var ok = true;
        void Error(string key, string message, string hint)
        {
            context.Error($"{Section}.{key}", message, hint);
            ok = false;
        }

        if (options.Interval < MinInterval || options.Interval > TimeSpan.FromHours(1))
        {
            Error("interval", $"interval must be between 5s and 1h (it is {options.Interval})", "the advisor runs in the background this often: e.g. interval: 1m");
        }

        if (options.Window < MinWindow)
        {
            Error("window", $"window must be at least 1h (it is {options.Window})", "suggestions learn from this much history: e.g. window: 7d");
        }

        ValidateEngine(context, options, ref ok);
        ValidateRateLimits(context, options.RateLimits, ref ok);
        ValidateAnomalies(context, options.Anomalies, ref ok);
        ValidateServices(context, options.Services, ref ok);
        if (!ok) return null;

        string? statePath = null;
        if (options.StatePath is { Length: > 0 } configured) statePath = context.Loaded.Resolve(configured);
        else if (analyticsPath is not null) statePath = Path.Combine(Path.GetDirectoryName(analyticsPath) ?? ".", "advice-state.json");

        return new CompiledAdvice
        {
            Interval = options.Interval,
            Window = options.Window,
            StatePath = statePath,
            Webhook = options.Webhook,
            RateLimits = options.RateLimits,
            Anomalies = options.Anomalies,
            Services = options.Services,
        };
    }

    /// <summary>The engine's own keys beyond interval/window (webhook, statePath): AdviceCompiler.Engine.cs.</summary>
    static partial void ValidateEngine(CompileContext context, AdviceOptions options, ref bool ok);

    static partial void ValidateRateLimits(CompileContext context, AdviceRateLimitOptions options, ref bool ok);

    static partial void ValidateAnomalies(CompileContext context, AdviceAnomalyOptions options, ref bool ok);

    static partial void ValidateServices(CompileContext context, AdviceServiceOptions options, ref bool ok);
}
