namespace Portcullis.Files;

/// <summary>File-read failures in words for diagnostics (the config file and every file it names).</summary>
internal static class FileErrors
{
    internal static string Describe(Exception ex) => ex switch
    {
        FileNotFoundException => "file not found",
        DirectoryNotFoundException => "directory not found",
        UnauthorizedAccessException => "permission denied",
        _ => ex.Message,
    };
}
