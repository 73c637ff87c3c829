namespace Portcullis.Cli;
internal static class ConfigDiffPending
{
    public static (bool HasChanges, Func<string> Format) Compare(object a, object b) => (false, () => "");
}
