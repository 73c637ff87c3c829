using System.CommandLine;

namespace Portcullis.Cli;

/// <summary>
/// `portcullis health --url URL`: one GET, exit 0 on 200 and 1 otherwise. The container image's HEALTHCHECK:
/// the .NET runtime images (chiseled ones above all) have no curl or wget.
/// </summary>
internal static class HealthCommand
{
    public static Command Create(TextWriter output, TextWriter errors)
    {
        var url = new Option<string>("--url") { Description = "The URL to probe, e.g. http://127.0.0.1:9901/healthz.", DefaultValueFactory = _ => "http://127.0.0.1:9901/healthz" };
        var timeout = new Option<TimeSpan>("--timeout") { Description = "Give up after this long (e.g. 00:00:03).", DefaultValueFactory = _ => TimeSpan.FromSeconds(3) };
        var health = new Command("health", "Probe a health endpoint (the admin listener's /healthz or /readyz): exit 0 on 200, 1 otherwise.") { url, timeout };
        health.SetAction((result, ct) => ProbeAsync(result.GetRequiredValue(url), result.GetValue(timeout), output, errors, ct));
        return health;
    }

    internal static async Task<int> ProbeAsync(string text, TimeSpan timeout, TextWriter output, TextWriter errors, CancellationToken cancellationToken)
    {
        if (!Uri.TryCreate(text, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
        {
            await errors.WriteLineAsync($"error: --url must be an absolute http(s) URL, not '{text}'");
            return PortcullisCli.Usage;
        }

        using var client = new HttpClient { Timeout = timeout };
        try
        {
            using var response = await client.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            var line = $"{url}: {(int)response.StatusCode} {response.ReasonPhrase}";
            if (response.StatusCode == System.Net.HttpStatusCode.OK)
            {
                await output.WriteLineAsync(line);
                return PortcullisCli.Ok;
            }

            await errors.WriteLineAsync(line);
            return PortcullisCli.Invalid;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            var reason = e is TaskCanceledException ? $"no answer within {timeout.TotalSeconds:0.#} s" : e.Message;
            await errors.WriteLineAsync($"{url}: unhealthy ({reason})");
            return PortcullisCli.Invalid;
        }
    }
}
