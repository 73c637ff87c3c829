namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>What a timed-out <see cref="Portcullis.Testing.Eventually"/> wait prints about a gateway.</summary>
internal static class GatewayDiagnostics
{
    public static Func<Task<string>> LogDump(this TestGateway gateway) =>
        () => Task.FromResult($"generation {gateway.Generation}; logs:\n{gateway.Logs}");

    public static Func<Task<string>> ClustersAndLogDump(this TestGateway gateway) =>
        async () => $"admin: {await gateway.Admin.GetStringAsync("/admin/clusters")}\nlogs:\n{gateway.Logs}";
}
