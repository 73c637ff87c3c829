using System.Runtime.CompilerServices;
using Portcullis.Advice;
using Portcullis.Configuration;

namespace Portcullis.Tests.Advice;

/// <summary>
/// The advisor's patch check remembers its verdicts per generation without keeping that generation alive (issue 20:
/// at 50,000 routes a snapshot is ~250 MB, and a reload must free the old one before the next advisor run).
/// </summary>
public sealed class PatchValidatorRetentionTests() : ConfigBuildTestBase("portcullis-patch-retention-")
{
    private const string Yaml = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        routes:
          - { name: a, match: { pathPrefix: /a }, cluster: c }
        clusters:
          c: { destinations: [http://127.0.0.1:9] }
        """;

    private static readonly ConfigPatch Strip = new(ServiceAdvice.RoutePatch("a", "responseHeaders:\n  forbid: [Server]\n  action: strip"), "strips Server");

    [Fact]
    public void Verdicts_are_reused_for_the_same_generation_and_do_not_keep_it_alive()
    {
        var validator = new AdvicePatchValidator(_ => null, null, TimeProvider.System);
        var checkedSnapshot = CheckTwice(validator);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(checkedSnapshot.TryGetTarget(out _), "the patch check keeps the generation it checked alive");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private WeakReference<GatewaySnapshot> CheckTwice(AdvicePatchValidator validator)
    {
        var result = Build(Yaml);
        Assert.True(result.Succeeded, Dump(result));
        var snapshot = result.Snapshot!;
        var first = validator.CheckAll(snapshot, [Strip]);
        Assert.True(first[Strip.Yaml].Valid, string.Join("\n", first[Strip.Yaml].Errors));
        Assert.Equal(1, validator.Compiles);
        // The same generation again: answered from its verdicts, no compile.
        Assert.True(validator.CheckAll(snapshot, [Strip])[Strip.Yaml].Valid);
        Assert.Equal(1, validator.Compiles);
        return new WeakReference<GatewaySnapshot>(snapshot);
    }
}
