using Microsoft.AspNetCore.Http;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Pipeline;

/// <summary>problem+json is JSON, not HTML: an apostrophe stays an apostrophe (issue 18, item 19).</summary>
public sealed class ProblemWriterEscapingTests
{
    [Fact]
    public async Task Detail_KeepsApostrophes_AndStillEscapesQuotes()
    {
        var context = new DefaultHttpContext();
        context.Response.Body = new MemoryStream();

        await ProblemWriter.WriteAsync(context, 403, "Forbidden", "The caller's claims say \"no\"", "authz.claims");

        var body = System.Text.Encoding.UTF8.GetString(((MemoryStream)context.Response.Body).ToArray());
        Assert.Contains("\"detail\":\"The caller's claims say \\\"no\\\"\"", body, StringComparison.Ordinal);
        Assert.DoesNotContain("\\u0027", body, StringComparison.Ordinal);
        using var json = System.Text.Json.JsonDocument.Parse(body);
        Assert.Equal("The caller's claims say \"no\"", json.RootElement.GetProperty("detail").GetString());
    }
}
