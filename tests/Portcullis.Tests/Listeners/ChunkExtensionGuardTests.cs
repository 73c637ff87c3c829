using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Http;
using Portcullis.Listeners;

namespace Portcullis.Tests.Listeners;

/// <summary>The guard passes bytes through unchanged and refuses only an over-long chunk extension, however the bytes arrive.</summary>
public sealed class ChunkExtensionGuardTests
{
    private static readonly string Limit = new('e', ChunkExtensionGuard.MaxExtensionLength - 1); // with the ';': exactly the limit

    public static TheoryData<string, int> Accepted => new()
    {
        { "5\r\nhello\r\n0\r\n\r\n", 1 },
        { "5;a=b\r\nhello\r\n6;x\r\n world\r\n0;last\r\nTrailer: t\r\n\r\n", 1 },
        { "5;a=b\r\nhello\r\n6;x\r\n world\r\n0;last\r\nTrailer: t\r\n\r\n", 7 },
        { $"5;{Limit}\r\nhello\r\n0\r\n\r\n", 3 },
        { $"A;{Limit}\r\n0123456789\r\n0;{Limit}\r\n\r\n", 1000 },
        // Framing Kestrel refuses itself: the guard stops looking and passes it on.
        { "zz\r\nabc\r\n0\r\n\r\n", 1 },
        { $"5;a\nhello{new string('x', 10_000)}", 100 },
    };

    [Theory]
    [MemberData(nameof(Accepted))]
    public async Task Accepted_BodiesPassThroughUnchanged(string body, int split)
    {
        var (bytes, error) = await ReadThroughGuardAsync(body + "GET /next", split);

        Assert.Null(error);
        Assert.Equal(body + "GET /next", bytes);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(100_000)]
    public async Task OverLongExtension_IsRefused_BeforeItsBytesAreHandedOn(int split)
    {
        var body = $"5;{Limit}e\r\nhello\r\n0\r\n\r\n";
        var (bytes, error) = await ReadThroughGuardAsync(body, split);

        Assert.NotNull(error);
        Assert.Equal(StatusCodes.Status400BadRequest, error.StatusCode);
        Assert.True(bytes.Length <= ChunkExtensionGuard.MaxExtensionLength + 1, $"{bytes.Length} bytes handed on");
    }

    [Fact]
    public async Task OverLongExtension_InALaterChunk_IsRefused()
    {
        var body = $"5;a\r\nhello\r\n1;{Limit}\r\nx\r\n1;{Limit}ee\r\ny\r\n0\r\n\r\n";
        var (_, error) = await ReadThroughGuardAsync(body, 64);

        Assert.NotNull(error);
    }

    [Fact]
    public async Task Unarmed_PassesEverything()
    {
        var body = $"5;{Limit}{Limit}\r\nhello\r\n0\r\n\r\n";
        var (bytes, error) = await ReadThroughGuardAsync(body, 10, arm: false);

        Assert.Null(error);
        Assert.Equal(body, bytes);
    }

    // Writes the body in pieces of `split` bytes and reads it through an armed guard the way Kestrel does:
    // consuming all but a few bytes of each buffer (examining all) until the writer completes.
    private static async Task<(string Bytes, BadHttpRequestException? Error)> ReadThroughGuardAsync(string body, int split, bool arm = true)
    {
        var pipe = new Pipe();
        var guard = new ChunkExtensionGuard(new DuplexPipe(pipe.Reader, new Pipe().Writer));
        if (arm) guard.Arm();
        var data = Encoding.Latin1.GetBytes(body);
        var writing = Task.Run(async () =>
        {
            for (var i = 0; i < data.Length; i += split)
            {
                await pipe.Writer.WriteAsync(data.AsMemory(i, Math.Min(split, data.Length - i)));
            }

            await pipe.Writer.CompleteAsync();
        });

        var seen = new MemoryStream();
        long handedOn = 0;
        try
        {
            while (true)
            {
                var result = await guard.ReadAsync();
                var buffer = result.Buffer;
                foreach (var segment in buffer.Slice(handedOn)) seen.Write(segment.Span);
                var keep = result.IsCompleted ? 0 : Math.Min(3, buffer.Length);
                guard.AdvanceTo(buffer.GetPosition(buffer.Length - keep), buffer.End);
                handedOn = keep;
                if (result.IsCompleted) break;
            }

            return (Encoding.Latin1.GetString(seen.ToArray()), null);
        }
        catch (BadHttpRequestException ex)
        {
            return (Encoding.Latin1.GetString(seen.ToArray()), ex);
        }
        finally
        {
            await guard.CompleteAsync();
            await writing.WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { });
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;

        public PipeWriter Output => output;
    }
}
