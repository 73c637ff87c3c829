using System.Text;
using Portcullis.Observability;

namespace Portcullis.Tests.Observability;

/// <summary>Size-based rotation at line boundaries, keeping maxFiles rotated files.</summary>
public sealed class RotatingFileSinkTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-rotate-");

    public void Dispose() => _directory.Delete(recursive: true);

    [Fact]
    public async Task Rotates_by_size_at_line_boundaries_and_keeps_max_files()
    {
        var path = Path.Combine(_directory.FullName, "access.log");
        await using (var sink = new RotatingFileSink(path, maxSize: 1024, maxFiles: 2))
        {
            for (var batch = 0; batch < 20; batch++)
            {
                var lines = new StringBuilder();
                for (var i = 0; i < 5; i++) lines.Append($"{{\"batch\":{batch},\"line\":{i},\"pad\":\"{new string('x', 40)}\"}}\n");
                await sink.WriteAsync(Encoding.UTF8.GetBytes(lines.ToString()), CancellationToken.None);
            }
        }

        var files = _directory.GetFiles().Select(f => f.Name).Order().ToArray();
        Assert.Equal(["access.log", "access.log.1", "access.log.2"], files);
        foreach (var file in _directory.GetFiles())
        {
            Assert.True(file.Length <= 1024, $"{file.Name} is {file.Length} bytes");
            var text = await File.ReadAllTextAsync(file.FullName);
            Assert.EndsWith("\n", text, StringComparison.Ordinal);
            Assert.All(text.Split('\n', StringSplitOptions.RemoveEmptyEntries), line => Assert.StartsWith("{\"batch\":", line, StringComparison.Ordinal));
        }

        // The newest line is in the current file; the oldest surviving ones in .2.
        Assert.Contains("\"batch\":19,\"line\":4", await File.ReadAllTextAsync(path), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_batch_larger_than_max_size_is_split_even_into_a_fresh_file()
    {
        var path = Path.Combine(_directory.FullName, "access.log");
        var lines = new StringBuilder();
        for (var i = 0; i < 30; i++) lines.Append($"{{\"line\":{i},\"pad\":\"{new string('x', 80)}\"}}\n");
        await using (var sink = new RotatingFileSink(path, maxSize: 1024, maxFiles: 5))
        {
            await sink.WriteAsync(Encoding.UTF8.GetBytes(lines.ToString()), CancellationToken.None);
        }

        foreach (var file in _directory.GetFiles())
        {
            Assert.True(file.Length <= 1024, $"{file.Name} is {file.Length} bytes");
            Assert.EndsWith("\n", await File.ReadAllTextAsync(file.FullName), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_single_line_longer_than_max_size_goes_whole_into_a_fresh_file()
    {
        var path = Path.Combine(_directory.FullName, "access.log");
        var line = "{\"pad\":\"" + new string('x', 2000) + "\"}\n";
        await using (var sink = new RotatingFileSink(path, maxSize: 1024, maxFiles: 2))
        {
            await sink.WriteAsync(Encoding.UTF8.GetBytes("{\"first\":1}\n"), CancellationToken.None);
            await sink.WriteAsync(Encoding.UTF8.GetBytes(line), CancellationToken.None);
        }

        Assert.Equal(line, await File.ReadAllTextAsync(path));
        Assert.Equal("{\"first\":1}\n", await File.ReadAllTextAsync(path + ".1"));
    }
}
