using Portcullis.Configuration;

namespace Portcullis.Advice;

internal static partial class AdviceCompiler
{
    internal const int MaxWebhookAttempts = 20;

    // advice.statePath and advice.webhook (interval and window are checked in AdviceCompiler.cs).
    static partial void ValidateEngine(CompileContext context, AdviceOptions options, ref bool ok)
    {
        if (options.StatePath is { } statePath && string.IsNullOrWhiteSpace(statePath))
        {
            context.Error($"{Section}.statePath", "statePath is empty", "leave it out (advice-state.json next to analytics.path) or name a file, e.g. statePath: advice-state.json");
            ok = false;
        }

        if (options.Webhook is not { } webhook) return;
        if (!CompileContext.IsHttpUrl(webhook.Url))
        {
            context.Error($"{Section}.webhook.url", webhook.Url.Length == 0 ? "webhook.url is required" : $"webhook.url '{webhook.Url}' is not an http(s) URL",
                "new findings are POSTed here as JSON, e.g. url: https://hooks.example.com/portcullis");
            ok = false;
        }

        if (webhook.Timeout <= TimeSpan.Zero)
        {
            context.Error($"{Section}.webhook.timeout", $"webhook.timeout must be above zero (it is {webhook.Timeout})", "each attempt is cut off after this long, e.g. timeout: 5s");
            ok = false;
        }

        if (webhook.MaxAttempts is < 1 or > MaxWebhookAttempts)
        {
            context.Error($"{Section}.webhook.maxAttempts", $"webhook.maxAttempts must be between 1 and {MaxWebhookAttempts} (it is {webhook.MaxAttempts})", "attempts per finding, with backoff between them, e.g. maxAttempts: 5");
            ok = false;
        }
    }
}
