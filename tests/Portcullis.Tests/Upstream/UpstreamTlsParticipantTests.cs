using Microsoft.Extensions.Logging.Abstractions;
using Portcullis.Configuration;
using Portcullis.Hosting;
using Portcullis.Tls;
using Portcullis.Upstream;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Upstream;

/// <summary>The upstream TLS store as a reload participant: a file gone between the check and the prepare rejects the reload.</summary>
public sealed class UpstreamTlsParticipantTests() : ConfigBuildTestBase("portcullis-upstream-participant-")
{
    private const string Plain = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        routes: [{ name: all, match: { pathPrefix: / }, cluster: orders }]
        clusters:
          orders:
            destinations: [https://10.0.0.5:8443]
        """;

    private GatewaySnapshot BuildSnapshot(string yaml)
    {
        var result = Build(yaml);
        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        return result.Snapshot!;
    }

    private GatewaySnapshot WithCa()
    {
        var now = DateTimeOffset.UtcNow;
        using var ca = DevCertificates.CreateCa("Upstream CA", now.AddDays(-1), now.AddDays(365));
        WriteFile("ca.pem", DevCertificates.CertificatePem(ca));
        return BuildSnapshot(Plain + "\n    tls: { ca: ca.pem }\n");
    }

    [Fact]
    public void A_ca_file_gone_after_the_check_fails_the_prepare_and_nothing_is_applied()
    {
        using var store = new UpstreamTlsStore(_ => null, TimeProvider.System, NullLogger<UpstreamTlsStore>.Instance);
        var current = BuildSnapshot(Plain);
        store.Sync(current);
        var next = WithCa();
        File.Delete(Path.Combine(_directory.FullName, "ca.pem"));

        var change = ((ISnapshotParticipant)store).Prepare(next, current);

        Assert.Equal(ParticipantOutcome.Failed, change.Outcome);
        Assert.StartsWith("cluster orders: ", change.Reason, StringComparison.Ordinal);
        Assert.Empty(store.Clusters);
    }

    [Fact]
    public void A_new_tls_section_is_applied_at_the_commit_only_and_an_unchanged_one_reports_unchanged()
    {
        using var store = new UpstreamTlsStore(_ => null, TimeProvider.System, NullLogger<UpstreamTlsStore>.Instance);
        var current = BuildSnapshot(Plain);
        store.Sync(current);
        var next = WithCa();

        var change = store.Prepare(next, current);
        Assert.Equal(ParticipantOutcome.Applied, change.Outcome);
        Assert.Empty(store.Clusters);
        change.Commit();
        Assert.NotNull(store.Get(next.Clusters["orders"].Tls!.Fingerprint));

        Assert.Equal(ParticipantOutcome.Unchanged, store.Prepare(next, next).Outcome);
    }

    [Fact]
    public void An_aborted_prepare_applies_nothing_and_a_later_prepare_loads_the_files_again()
    {
        using var store = new UpstreamTlsStore(_ => null, TimeProvider.System, NullLogger<UpstreamTlsStore>.Instance);
        var current = BuildSnapshot(Plain);
        store.Sync(current);
        var next = WithCa();

        var aborted = store.Prepare(next, current);
        Assert.Equal(ParticipantOutcome.Applied, aborted.Outcome);
        aborted.Abort();
        Assert.Empty(store.Clusters);

        var change = store.Prepare(next, current);
        change.Commit();
        var live = store.Get(next.Clusters["orders"].Tls!.Fingerprint)!;
        Assert.NotEqual(IntPtr.Zero, live.Trust.Current!.Roots[0].Handle);
    }

    [Fact]
    public void Releasing_a_runtime_that_never_went_live_disposes_its_certificates()
    {
        using var store = new UpstreamTlsStore(_ => null, TimeProvider.System, NullLogger<UpstreamTlsStore>.Instance);
        var next = WithCa();
        store.Sync(next);
        var cluster = store.Get(next.Clusters["orders"].Tls!.Fingerprint)!;
        var root = cluster.Trust.Current!.Roots[0];
        Assert.NotEqual(IntPtr.Zero, root.Handle);

        UpstreamTlsStore.Release([cluster]);

        Assert.Equal(IntPtr.Zero, root.Handle);
    }
}
