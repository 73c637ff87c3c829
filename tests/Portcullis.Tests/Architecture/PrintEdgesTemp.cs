namespace Portcullis.Tests.Architecture;
public sealed class PrintEdgesTemp
{
    [Fact]
    public void Print()
    {
        var g = new FolderDependencyGraph(typeof(Portcullis.Pipeline.GatewayFeature).Assembly.Location);
        var lines = new List<string>();
        foreach (var ((f, t), ev) in g.Edges) lines.Add($"{f} -> {t} ({ev.Count}): {string.Join("; ", ev.Take(6))}");
        File.WriteAllLines("/tmp/edges.txt", lines);
    }
}
