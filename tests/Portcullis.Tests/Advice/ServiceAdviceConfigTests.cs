using Portcullis.Configuration;

namespace Portcullis.Tests.Advice;

/// <summary>advice.services: defaults, and a bad value is an error at its line and column with a hint.</summary>
public sealed class ServiceAdviceConfigTests() : ConfigBuildTestBase("portcullis-advice-services-config-")
{
    private const string Head = """
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        routes:
          - { name: r, match: { pathPrefix: / }, respond: { status: 204 } }
        """;

    [Fact]
    public void DefaultsAreTheDocumentedThresholds()
    {
        var result = Build(Head);
        Assert.True(result.Succeeded, Dump(result));
        var services = result.Snapshot!.Advice!.Services;
        Assert.Equal(TimeSpan.FromMinutes(2), services.ErrorWindow);
        Assert.Equal(0.05, services.ErrorRatio);
        Assert.Equal(TimeSpan.FromSeconds(30), services.SustainedFor);
        Assert.Equal(0.8, services.TightShare);
        Assert.Equal(20, services.LooseFactor);
        Assert.Equal(TimeSpan.FromDays(7), services.CertificateCritical);
        Assert.Equal(TimeSpan.FromDays(30), services.CertificateWarning);
    }

    [Theory]
    [InlineData("errorRatio: 1.5", "errorRatio must be above 0 and at most 1", 7, 17)]
    [InlineData("sustainedFor: 5m", "sustainedFor must be at least 0 and shorter than errorWindow", 7, 19)]
    [InlineData("certificateWarning: 3d", "certificateWarning (72h) must not be shorter than certificateCritical", 7, 25)]
    [InlineData("flapTransitions: 1", "flapTransitions must be at least 2", 7, 22)]
    [InlineData("leakingHeaders: [\"X Bad\"]", "'X Bad' is not a header name", 7, 22)]
    public void BadValueIsAnErrorAtItsPosition(string setting, string message, int line, int column)
    {
        var result = Build(Head + "\nadvice:\n  services:\n    " + setting + "\n");
        var error = ErrorContaining(result, message);
        AssertAt(error, line, column);
        Assert.NotNull(error.Hint);
    }
}
