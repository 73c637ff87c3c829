using Portcullis.Cli;
using YamlDotNet.RepresentationModel;

namespace Portcullis.IntegrationTests.Install;

/// <summary>
/// Install path 5: deploy/kubernetes/ holds what a cluster needs and the parts agree with each other and with
/// the gateway: probes on the admin listener's port, the config mount where `-c` reads it, selectors that
/// select the pod, and a ConfigMap config that the real validator accepts with the Secret's files in place.
/// (No kubeconform here: it needs the schemas from the network.)
/// </summary>
public sealed class KubernetesManifestTests : IDisposable
{
    private const string SecretMount = "/run/secrets/portcullis";
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-k8s-").FullName;
    private readonly Dictionary<string, YamlMappingNode> _byKind = Load();

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static Dictionary<string, YamlMappingNode> Load()
    {
        var folder = Path.Combine(InstallProcess.RepoRoot(), "deploy", "kubernetes");
        var byKind = new Dictionary<string, YamlMappingNode>(StringComparer.Ordinal);
        foreach (var file in Directory.GetFiles(folder, "*.yaml"))
        {
            var stream = new YamlStream();
            using (var reader = File.OpenText(file)) stream.Load(reader);
            var root = (YamlMappingNode)Assert.Single(stream.Documents).RootNode;
            byKind.Add(Str(root, "kind"), root);
        }

        return byKind;
    }

    private static YamlNode At(YamlNode node, params string[] path)
    {
        foreach (var key in path)
        {
            var map = Assert.IsType<YamlMappingNode>(node);
            Assert.True(map.Children.TryGetValue(new YamlScalarNode(key), out var child), $"missing '{key}' in {string.Join('.', path)}");
            node = child!;
        }

        return node;
    }

    private static string Str(YamlNode node, params string[] path) => ((YamlScalarNode)At(node, path)).Value!;

    private static YamlMappingNode Only(YamlNode sequence) => (YamlMappingNode)Assert.Single((YamlSequenceNode)sequence);

    private static IEnumerable<YamlMappingNode> Items(YamlNode sequence) => ((YamlSequenceNode)sequence).Cast<YamlMappingNode>();

    private static Dictionary<string, string> Labels(YamlNode node) =>
        ((YamlMappingNode)node).Children.ToDictionary(p => ((YamlScalarNode)p.Key).Value!, p => ((YamlScalarNode)p.Value).Value!);

    [Fact]
    public void Manifests_HaveTheExpectedKindsAndApiVersions()
    {
        var expected = new Dictionary<string, string>
        {
            ["Deployment"] = "apps/v1",
            ["Service"] = "v1",
            ["ConfigMap"] = "v1",
            ["Secret"] = "v1",
            ["PodDisruptionBudget"] = "policy/v1",
            ["Kustomization"] = "kustomize.config.k8s.io/v1beta1",
        };
        Assert.Equal(expected.Keys.Order(), _byKind.Keys.Order());
        foreach (var (kind, apiVersion) in expected) Assert.Equal(apiVersion, Str(_byKind[kind], "apiVersion"));

        // kubectl apply -k applies every manifest in the folder.
        var listed = ((YamlSequenceNode)At(_byKind["Kustomization"], "resources")).Select(n => ((YamlScalarNode)n).Value!).Order();
        var files = Directory.GetFiles(Path.Combine(InstallProcess.RepoRoot(), "deploy", "kubernetes"), "*.yaml").Select(Path.GetFileName)
            .Where(f => f != "kustomization.yaml").Order();
        Assert.Equal(files, listed);
    }

    [Fact]
    public void Deployment_ProbesTheAdminListener_RunsLockedDown_AndSelectorsMatch()
    {
        var deployment = _byKind["Deployment"];
        var pod = At(deployment, "spec", "template");
        var podLabels = Labels(At(pod, "metadata", "labels"));
        foreach (var selector in new[] { At(deployment, "spec", "selector", "matchLabels"), At(_byKind["PodDisruptionBudget"], "spec", "selector", "matchLabels"), At(_byKind["Service"], "spec", "selector") })
        {
            Assert.All(Labels(selector), l => Assert.Equal(l.Value, podLabels.GetValueOrDefault(l.Key)));
        }

        var container = Only(At(pod, "spec", "containers"));
        var ports = Items(At(container, "ports")).ToDictionary(p => Str(p, "name"), p => int.Parse(Str(p, "containerPort"), System.Globalization.CultureInfo.InvariantCulture));
        var config = ConfigMapConfig();
        Assert.Contains($"\"*:{ports["admin"]}\", admin: true", config, StringComparison.Ordinal);
        Assert.Contains($"\"*:{ports["http"]}\"", config, StringComparison.Ordinal);
        Assert.Equal("/readyz", Str(container, "readinessProbe", "httpGet", "path"));
        Assert.Equal("/healthz", Str(container, "livenessProbe", "httpGet", "path"));
        foreach (var probe in new[] { "readinessProbe", "livenessProbe", "startupProbe" }) Assert.Equal("admin", Str(container, probe, "httpGet", "port"));
        Assert.Equal("http", Str(Only(At(_byKind["Service"], "spec", "ports")), "targetPort"));

        Assert.Equal("true", Str(pod, "spec", "securityContext", "runAsNonRoot"));
        Assert.NotEqual("0", Str(pod, "spec", "securityContext", "runAsUser"));
        Assert.Equal("true", Str(container, "securityContext", "readOnlyRootFilesystem"));
        Assert.Equal("false", Str(container, "securityContext", "allowPrivilegeEscalation"));
        Assert.Equal("ALL", ((YamlScalarNode)Assert.Single((YamlSequenceNode)At(container, "securityContext", "capabilities", "drop"))).Value);
        Assert.NotNull(At(container, "resources", "requests", "memory"));

        // limits.shutdownDelay (serving while the endpoints drop the pod, instead of a preStop sleep) and the
        // drain (limits.shutdownTimeout) fit in the grace period.
        var grace = TimeSpan.FromSeconds(int.Parse(Str(pod, "spec", "terminationGracePeriodSeconds"), System.Globalization.CultureInfo.InvariantCulture));
        var limits = System.Text.RegularExpressions.Regex.Match(ConfigMapConfig(), @"limits: \{ shutdownDelay: (\d+)s, shutdownTimeout: (\d+)s \}");
        Assert.True(limits.Success, "the ConfigMap sets limits.shutdownDelay and limits.shutdownTimeout");
        var delay = TimeSpan.FromSeconds(int.Parse(limits.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(delay >= TimeSpan.FromSeconds(5), $"shutdownDelay {delay}: endpoints take seconds to drop a terminating pod");
        Assert.True(grace >= delay + TimeSpan.FromSeconds(int.Parse(limits.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)) + TimeSpan.FromSeconds(5), $"grace {grace}");
        Assert.False(container.Children.ContainsKey(new YamlScalarNode("lifecycle")), "no preStop sleep: limits.shutdownDelay does its job");
    }

    [Fact]
    public void ConfigAndSecretMounts_AreWhereTheGatewayReadsThem()
    {
        var pod = At(_byKind["Deployment"], "spec", "template", "spec");
        var container = Only(At(pod, "containers"));
        var args = ((YamlSequenceNode)At(container, "args")).Select(n => ((YamlScalarNode)n).Value!).ToList();
        var configPath = args[args.IndexOf("-c") + 1];
        var mounts = Items(At(container, "volumeMounts")).ToDictionary(m => Str(m, "name"), m => Str(m, "mountPath"));
        var volumes = Items(At(pod, "volumes")).ToDictionary(v => Str(v, "name"));

        // The whole ConfigMap as a directory: a subPath mount would never see an update.
        Assert.Equal(Path.GetDirectoryName(configPath), mounts["config"]);
        Assert.Equal(Str(_byKind["ConfigMap"], "metadata", "name"), Str(volumes["config"], "configMap", "name"));
        Assert.Contains(Path.GetFileName(configPath), ((YamlMappingNode)At(_byKind["ConfigMap"], "data")).Children.Keys.Select(k => ((YamlScalarNode)k).Value));
        Assert.All(Items(At(container, "volumeMounts")), m => Assert.False(m.Children.ContainsKey(new YamlScalarNode("subPath")), "a subPath mount is not updated"));

        Assert.Equal(SecretMount, mounts["secrets"]);
        Assert.Equal(Str(_byKind["Secret"], "metadata", "name"), Str(volumes["secrets"], "secret", "secretName"));
        // Every secret file the config names is a key of the Secret.
        var secretKeys = ((YamlMappingNode)At(_byKind["Secret"], "stringData")).Children.Keys.Select(k => ((YamlScalarNode)k).Value!).ToHashSet();
        var named = System.Text.RegularExpressions.Regex.Matches(ConfigMapConfig(), SecretMount + "/([A-Za-z0-9._-]+)").Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(named);
        Assert.All(named, n => Assert.Contains(n, secretKeys));
    }

    [Fact]
    public void ConfigMapConfig_IsValid_WithTheSecretFilesInPlace()
    {
        // The Secret's files as the pod sees them, under a temporary folder standing in for the mount.
        var secrets = Path.Combine(_directory, "secrets");
        Directory.CreateDirectory(secrets);
        foreach (var (key, value) in ((YamlMappingNode)At(_byKind["Secret"], "stringData")).Children)
        {
            File.WriteAllText(Path.Combine(secrets, ((YamlScalarNode)key).Value!), ((YamlScalarNode)value).Value);
        }

        var config = Path.Combine(_directory, "portcullis.yaml");
        File.WriteAllText(config, ConfigMapConfig().Replace(SecretMount, secrets, StringComparison.Ordinal));

        var result = PortcullisCli.Build(config);

        Assert.True(result.Snapshot is not null, string.Join('\n', result.Diagnostics));
        Assert.Empty(result.Errors);
    }

    private string ConfigMapConfig() => Str(_byKind["ConfigMap"], "data", "portcullis.yaml");
}
