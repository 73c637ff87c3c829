using Portcullis.Configuration;
using Xunit.Abstractions;

namespace Portcullis.Tests.Configuration;

public sealed class ValidatorTests(ITestOutputHelper output) : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-tests-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public void Explore()
    {
        var cases = new Dictionary<string, string>
        {
            ["malformed"] = "listeners:\n  - name: a\n    address: [1, 2\nroutes: []\n",
            ["malformed2"] = "listeners:\n  - name: a\n   address: x\n",
            ["malformed3"] = "listeners: \"abc\n",
            ["malformed4"] = "a: b: c\n",
            ["dupkey"] = "listeners:\n  - name: a\n    name: b\n",
            ["tab"] = "listeners:\n\t- name: a\n",
            ["unknownkey"] = "clusters:\n  api:\n    lodBalancing: random\n",
            ["toplevel"] = "listners: []\nfoobar: 1\n",
            ["env"] = "listeners:\n  - name: ${NAME}\n    address: \"x ${ADDR}\"\n",
        };
        foreach (var (name, yaml) in cases)
        {
            var path = Path.Combine(_dir.FullName, name + ".yaml");
            File.WriteAllText(path, yaml);
            var result = new SnapshotBuilder(_ => null).Build(path);
            output.WriteLine("== " + name);
            foreach (var d in result.Diagnostics) output.WriteLine(d.ToString());
        }
    }
}
