using Portcullis.Advice;
using Portcullis.Configuration;

namespace Portcullis.Tests.Advice;

/// <summary>advice.anomalies: defaults, bad values refused at their position with a hint, and the scanner's deny-route patch validating.</summary>
public sealed class AnomalyConfigTests() : ConfigBuildTestBase("portcullis-anomaly-config-")
{
    private const string Routes = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        routes:
          - { name: site, match: { pathPrefix: / }, cluster: web }
        clusters:
          web: { destinations: [ "http://127.0.0.1:9000" ] }
        """;

    [Fact]
    public void Defaults_compile_and_set_values_are_kept()
    {
        var result = Build(Routes + "\nadvice:\n  anomalies: { detectionWindow: 3m, zThreshold: 8, newRouteSensitiveOnly: false, minLatencyIncrease: 250ms }\n");
        Assert.True(result.Succeeded, Dump(result));
        var anomalies = result.Snapshot!.Advice!.Anomalies;
        Assert.Equal((TimeSpan.FromMinutes(3), 8.0, false, TimeSpan.FromMilliseconds(250)), (anomalies.DetectionWindow, anomalies.ZThreshold, anomalies.NewRouteSensitiveOnly, anomalies.MinLatencyIncrease));
        Assert.Equal((3.0, 20, 5.0), (anomalies.VolumeRatio, anomalies.MinAuthFailures, anomalies.SurgeRatio));
    }

    [Theory]
    [InlineData("detectionWindow: 30s", "detectionWindow must be between")]
    [InlineData("recentBaseline: 3d", "recentBaseline must be between")]
    [InlineData("zThreshold: 0.5", "zThreshold must be at least 1")]
    [InlineData("errorRateIncrease: 1.5", "errorRateIncrease must be above 0 and below 1")]
    [InlineData("minAuthFailures: 1", "minAuthFailures must be at least 2")]
    [InlineData("surgeRatio: 1", "surgeRatio must be at least 1.1")]
    public void A_bad_value_is_refused_at_its_key_with_a_hint(string setting, string message)
    {
        var result = Build(Routes + "\nadvice:\n  anomalies:\n    " + setting + "\n");
        var error = ErrorContaining(result, message);
        AssertAt(error, 8, 5 + setting.IndexOf(':', StringComparison.Ordinal) + 2); // at the value
        Assert.False(string.IsNullOrEmpty(error.Hint));
    }

    [Fact]
    public void The_deny_route_patch_for_probes_that_reached_a_catch_all_route_validates_and_answers_them_at_the_gateway()
    {
        var patch = AnomalyUnmatchedDetector.DenyPatch(["/.env", "/wp-admin", "*.php"])!;
        Assert.DoesNotContain(".php", patch.Yaml, StringComparison.Ordinal); // a file ending is no prefix a route can match
        var result = Build(ConfigPatcher.Apply(Routes, patch.Yaml));
        Assert.True(result.Succeeded, Dump(result) + "\n" + patch.Yaml);
        var routes = result.Snapshot!.Routes;
        Assert.Equal(404, routes["deny-probe-env"].FixedStatus);
        Assert.Equal(404, routes["deny-probe-wp-admin"].FixedStatus);
        Assert.Equal(-1000, result.Snapshot.Config.Routes.Single(r => r.Name == "deny-probe-env").Order);
    }
}
