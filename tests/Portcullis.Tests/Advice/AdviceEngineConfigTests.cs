namespace Portcullis.Tests.Advice;

/// <summary>advice.statePath and advice.webhook: errors at the key's position with a hint.</summary>
public sealed class AdviceEngineConfigTests() : ConfigBuildTestBase("portcullis-advice-config-")
{
    private const string Listeners = "listeners: [{ name: public, address: \"127.0.0.1:8080\" }]\n";

    [Fact]
    public void AValidWebhookAndStatePathCompile()
    {
        var result = Build(Listeners + """
            advice:
              statePath: state/advice.json
              webhook: { url: "https://hooks.example.com/portcullis", timeout: 3s, maxAttempts: 20 }
            """);
        Assert.True(result.Succeeded, Dump(result));
        Assert.Equal(Path.Combine(_directory.FullName, "state", "advice.json"), result.Snapshot!.Advice!.StatePath);
        Assert.Equal(20, result.Snapshot.Advice.Webhook!.MaxAttempts);
    }

    [Fact]
    public void WebhookUrlMustBeHttpTimeoutPositiveAndAttemptsInRange()
    {
        var result = Build(Listeners + """
            advice:
              webhook:
                url: "ftp://hooks.example.com/x"
                timeout: 0s
                maxAttempts: 21
            """);
        AssertAt(ErrorContaining(result, "is not an http(s) URL"), 4, 10);
        AssertAt(ErrorContaining(result, "webhook.timeout must be above zero"), 5, 14);
        AssertAt(ErrorContaining(result, "webhook.maxAttempts must be between 1 and 20"), 6, 18);
        Assert.Contains(result.Errors, e => e.Hint is not null && e.Hint.Contains("maxAttempts: 5", StringComparison.Ordinal));
    }

    [Fact]
    public void AMissingUrlAndZeroAttemptsAreRefused()
    {
        var result = Build(Listeners + """
            advice:
              webhook: { maxAttempts: 0 }
            """);
        Assert.Contains(result.Errors, e => e.Message.Contains("webhook.url is required", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.Message.Contains("between 1 and 20 (it is 0)", StringComparison.Ordinal));
    }
}
