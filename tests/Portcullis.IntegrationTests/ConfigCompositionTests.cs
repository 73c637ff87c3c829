using System.Net;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests;

/// <summary>
/// Config composition on a running gateway (issue 18): a conf.d/ folder of service files, where adding a file
/// onboards a service without touching the main file, a broken file is refused with its own file:line:column
/// while the gateway keeps serving, and an environment overlay overrides the base and is watched too.
/// </summary>
public sealed class ConfigCompositionTests
{
    private const string Main = """
        include: [conf.d/]
        routes:
          - { name: home, match: { path: "/home" }, cluster: web }
        clusters:
          web: { destinations: ["{{WEB}}"] }
        """;

    private static string Service(string name, string url) => $$"""
        routes:
          - { name: {{name}}, match: { path: "/{{name}}/{**rest}" }, cluster: {{name}} }
        clusters:
          {{name}}: { destinations: ["{{url}}"] }
        """;

    [Fact]
    public async Task A_service_file_added_to_conf_d_is_served_after_the_automatic_reload_and_a_broken_one_is_refused()
    {
        await using var web = await TestUpstream.StartAsync("web");
        await using var orders = await TestUpstream.StartAsync("orders");
        await using var users = await TestUpstream.StartAsync("users");
        await using var gateway = await TestGateway.StartAsync(Main.Replace("{{WEB}}", web.Url, StringComparison.Ordinal),
            new Dictionary<string, string> { ["conf.d/orders.yaml"] = Service("orders", orders.Url) });

        Assert.Equal("orders", (await GetAsync(gateway, "/orders/1")).Server);
        Assert.Equal(HttpStatusCode.NotFound, (await gateway.Client.GetAsync("/users/1")).StatusCode);

        // Onboarding: a new file in the folder, nothing else touched.
        var generation = gateway.Generation;
        await gateway.WriteFileAsync("conf.d/users.yaml", Service("users", users.Url));
        await gateway.WaitForGenerationAsync(generation, TimeSpan.FromSeconds(30));
        await Eventually.TrueAsync(async () => (await gateway.Client.GetAsync("/users/1")).StatusCode == HttpStatusCode.OK, "the new service's route");
        Assert.Equal("users", (await GetAsync(gateway, "/users/1")).Server);
        Assert.Equal("orders", (await GetAsync(gateway, "/orders/1")).Server);

        // A file that redefines another service's route: refused with both places named; the old config keeps serving.
        generation = gateway.Generation;
        await gateway.WriteFileAsync("conf.d/zz-rogue.yaml", Service("orders", users.Url));
        var (status, body) = await gateway.ReloadAsync();
        Assert.Equal(422, status);
        var text = body.ToString();
        Assert.Contains("zz-rogue.yaml:2:5", text, StringComparison.Ordinal);
        Assert.Contains("is already defined in", text, StringComparison.Ordinal);
        Assert.Contains("orders.yaml:2:5", text, StringComparison.Ordinal);
        Assert.Equal(generation, gateway.Generation);
        Assert.Equal("orders", (await GetAsync(gateway, "/orders/1")).Server);

        // Removing the rogue file is a change too: the folder is watched, and the config is valid again.
        File.Delete(Path.Combine(gateway.Directory, "conf.d", "zz-rogue.yaml"));
        (status, _) = await gateway.ReloadAsync();
        Assert.Equal(200, status);

        // /admin/config lists every file read.
        var config = await gateway.Admin.GetStringAsync("/admin/config");
        Assert.Contains(Path.Combine(gateway.Directory, "conf.d", "users.yaml").Replace("\\", "\\\\", StringComparison.Ordinal), config, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_overlay_overrides_the_base_and_an_edit_to_it_reloads()
    {
        await using var web = await TestUpstream.StartAsync("web");
        await using var staging = await TestUpstream.StartAsync("staging");
        await using var prod = await TestUpstream.StartAsync("prod");
        await using var gateway = await TestGateway.StartAsync(Main.Replace("{{WEB}}", web.Url, StringComparison.Ordinal).Replace("include: [conf.d/]\n", "", StringComparison.Ordinal),
            new Dictionary<string, string> { ["env/prod.yaml"] = $$"""clusters: { web: { destinations: ["{{staging.Url}}"] } }""" },
            overlays: ["env/prod.yaml"]);

        Assert.Equal("staging", (await GetAsync(gateway, "/home")).Server);

        var generation = gateway.Generation;
        await gateway.WriteFileAsync("env/prod.yaml", $$"""clusters: { web: { destinations: ["{{prod.Url}}"] } }""");
        await gateway.WaitForGenerationAsync(generation, TimeSpan.FromSeconds(30));
        await Eventually.TrueAsync(async () => (await GetAsync(gateway, "/home")).Server == "prod", "the overlay's new destination");
    }

    [Fact]
    public async Task A_file_secret_is_applied_when_the_file_is_rotated_and_never_shown()
    {
        await using var gateway = await TestGateway.StartAsync("""
            routes:
              - { name: banner, match: { path: /banner }, respond: { status: 200, body: "${file:secrets/banner}" } }
            """,
            new Dictionary<string, string> { ["secrets/banner"] = "first-secret\n" });

        Assert.Equal("first-secret", await gateway.Client.GetStringAsync("/banner"));
        var generation = gateway.Generation;
        await gateway.WriteFileAsync("secrets/banner", "second-secret\n");
        await gateway.WaitForGenerationAsync(generation, TimeSpan.FromSeconds(30));
        await Eventually.TrueAsync(async () => await gateway.Client.GetStringAsync("/banner") == "second-secret", "the rotated secret");

        var config = await gateway.Admin.GetStringAsync("/admin/config");
        Assert.DoesNotContain("second-secret", config, StringComparison.Ordinal);
        Assert.Contains("redacted", config, StringComparison.Ordinal);
    }

    private static async Task<UpstreamAnswer> GetAsync(TestGateway gateway, string path)
    {
        using var response = await gateway.Client.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await UpstreamAnswer.ReadAsync(response);
    }
}
