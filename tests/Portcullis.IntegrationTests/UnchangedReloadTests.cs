using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// A reload finds out by content, not by file times, whether anything changed (issue 20: a reload with nothing
/// changed skips the rebuild): unchanged inputs answer "not changed" and keep serving; a map edited to the same
/// size with its modification time put back is still seen; a file added to an included folder is still seen.
/// </summary>
public sealed class UnchangedReloadTests
{
    private static async Task<string> ServerAsync(TestGateway gateway, string path, string? version = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (version is not null) request.Headers.Add("Api-Version", version);
        using var response = await gateway.Client.SendAsync(request);
        return (await UpstreamAnswer.ReadAsync(response)).Server;
    }

    [Fact]
    public async Task Unchanged_inputs_are_no_change_and_same_size_same_time_edits_and_new_folder_files_are_not_missed()
    {
        await using var v1 = await TestUpstream.StartAsync("v1");
        await using var v2 = await TestUpstream.StartAsync("v2");
        await using var gateway = await TestGateway.StartAsync($$"""
            include: [conf.d]
            maps:
              versions: { file: versions.map, default: orders-v1 }
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                cluster: "${map:versions(header:Api-Version)}"
            clusters:
              orders-v1: { destinations: [{{v1.Url}}] }
              orders-v2: { destinations: [{{v2.Url}}] }
            """,
            new Dictionary<string, string>
            {
                ["versions.map"] = "1 orders-v1\n2 orders-v2\n",
                ["conf.d/extra.yaml"] = "routes:\n  - { name: extra, match: { pathPrefix: /extra }, cluster: orders-v2 }\n",
            });
        var generation = gateway.Generation;
        Assert.Equal("v2", await ServerAsync(gateway, "/orders/1", "2"));

        // Nothing changed: not rebuilt, still serving.
        for (var i = 0; i < 2; i++)
        {
            var (status, body) = await gateway.ReloadAsync();
            Assert.Equal(200, status);
            Assert.False(body.GetProperty("changed").GetBoolean());
        }

        Assert.Equal(generation, gateway.Generation);
        Assert.Equal("v2", await ServerAsync(gateway, "/extra/x"));

        // Same size, modification time put back: only the content tells (a stamp-based check would skip it).
        // Written aside and moved in whole, so the file watch never sees a different stamp and only this reload acts.
        var map = Path.Combine(gateway.Directory, "versions.map");
        var aside = map + ".new";
        await File.WriteAllTextAsync(aside, "1 orders-v2\n2 orders-v1\n");
        File.SetLastWriteTimeUtc(aside, File.GetLastWriteTimeUtc(map));
        File.Move(aside, map, overwrite: true);
        var (changedStatus, changed) = await gateway.ReloadAsync();
        Assert.Equal(200, changedStatus);
        Assert.True(changed.GetProperty("changed").GetBoolean(), changed.ToString());
        Assert.Equal("v1", await ServerAsync(gateway, "/orders/1", "2"));

        // A new file in an included folder: a new route.
        await gateway.WriteFileAsync("conf.d/more.yaml", "routes:\n  - { name: more, match: { pathPrefix: /more }, cluster: orders-v1 }\n");
        var (addedStatus, added) = await gateway.ReloadAsync();
        Assert.Equal(200, addedStatus);
        await gateway.WaitForGenerationAsync(generation + 1, TimeSpan.FromSeconds(30)); // the file watch may have applied it first
        Assert.Equal("v1", await ServerAsync(gateway, "/more/x"));
        Assert.True(added.GetProperty("applied").GetBoolean(), added.ToString());
    }
}
