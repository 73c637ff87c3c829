using System.Collections.Frozen;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;
using Portcullis.Pipeline;

namespace Portcullis.Admin;

/// <summary>One embedded dashboard file, read once at startup.</summary>
internal sealed record UiAsset(byte[] Content, string ContentType, string ETag);

/// <summary>
/// The dashboard's static files (src/Portcullis/Analytics/ui, embedded in the assembly as ui/…), served at
/// /ui/ with strict security headers and revalidated through their ETag. The page paths (/ui/, /ui/route,
/// /ui/consumer, /ui/samples, /ui/advice) all answer index.html, whose script picks the page from the path.
/// </summary>
internal sealed class UiAssets
{
    public const string Prefix = "/ui/";

    private const string ResourcePrefix = "ui/";

    private static readonly FrozenSet<string> Pages = FrozenSet.Create(StringComparer.Ordinal, "/ui/", "/ui/route", "/ui/consumer", "/ui/samples", "/ui/advice");

    private static readonly FrozenDictionary<string, string> ContentTypes = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        [".html"] = "text/html; charset=utf-8",
        [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8",
        [".txt"] = "text/plain; charset=utf-8",
        [".svg"] = "image/svg+xml",
    }.ToFrozenDictionary(StringComparer.Ordinal);

    private readonly FrozenDictionary<string, UiAsset> _files;

    public UiAssets()
    {
        var assembly = typeof(UiAssets).Assembly;
        var files = new Dictionary<string, UiAsset>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames())
        {
            if (!name.StartsWith(ResourcePrefix, StringComparison.Ordinal)) continue;
            // Only known types are served: a file of another kind would go out with a guessed type.
            if (!ContentTypes.TryGetValue(Path.GetExtension(name), out var type)) continue;
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            var content = copy.ToArray();
            var etag = "\"" + Convert.ToBase64String(SHA256.HashData(content).AsSpan(0, 12)).Replace('+', '-').Replace('/', '_') + "\"";
            files[Prefix + name[ResourcePrefix.Length..].Replace('\\', '/')] = new UiAsset(content, type, etag);
        }

        _files = files.ToFrozenDictionary(StringComparer.Ordinal);
        if (!_files.ContainsKey(Prefix + "index.html")) throw new InvalidOperationException("The dashboard's files are not embedded in the assembly (ui/index.html is missing).");
    }

    /// <summary>The file for a request path, as spelled (case included); null when there is none.</summary>
    public UiAsset? Find(string path) =>
        _files.GetValueOrDefault(Pages.Contains(path) ? Prefix + "index.html" : path);

    /// <summary>Answers GET/HEAD /ui/…: the file, 304 when the browser's copy is current, else 404 problem.</summary>
    public Task ServeAsync(HttpContext context)
    {
        var response = context.Response;
        AdminUi.SecurityHeaders(response);
        if (Find(context.Request.Path.Value ?? "") is not { } asset)
        {
            return ProblemWriter.WriteAsync(context, 404, "Not found", "The dashboard has no page or file at this path.", ReasonCodes.AdminNotFound);
        }

        // Behind authentication: browsers may keep a copy but must ask (a cheap 304) before using it.
        response.Headers.CacheControl = "private, no-cache";
        response.Headers.ETag = asset.ETag;
        var ifNoneMatch = context.Request.Headers.IfNoneMatch;
        if (ifNoneMatch.Count > 0 && EntityTagHeaderValue.TryParseList(ifNoneMatch, out var tags) && tags.Any(t => t.Tag == asset.ETag || t.Tag == "*"))
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return Task.CompletedTask;
        }

        response.ContentType = asset.ContentType;
        response.ContentLength = asset.Content.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.Body.WriteAsync(asset.Content).AsTask();
    }
}
