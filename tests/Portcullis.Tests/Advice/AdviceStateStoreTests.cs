using Microsoft.Extensions.Logging;
using Portcullis.Advice;

namespace Portcullis.Tests.Advice;

/// <summary>Acknowledged/muted findings: the file (atomic, 0600), reading it back, and how decisions end.</summary>
public sealed class AdviceStateStoreTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-advice-state-");

    public void Dispose() => _directory.Delete(recursive: true);

    private string StatePath => Path.Combine(_directory.FullName, "sub", "advice-state.json");

    private static readonly DateTime At = new(2026, 12, 1, 10, 0, 0, DateTimeKind.Utc);

    [Fact]
    public void DecisionsAreWrittenAtomicallyWithMode0600AndReadBackByANewStore()
    {
        var store = new AdviceStateStore(StatePath, new ListLogger<AdviceStateStore>());
        store.Set("aaa", new FindingDecisionRecord(FindingDecision.Muted, At, "token:ops", FindingKinds.UnmatchedScanner));
        store.Set("bbb", new FindingDecisionRecord(FindingDecision.Acknowledged, At, "loopback", FindingKinds.UpstreamErrors));
        store.Set("bbb", null);
        store.Set("ccc", new FindingDecisionRecord(FindingDecision.Acknowledged, At, "loopback", null));

        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(StatePath));
        Assert.Equal(["advice-state.json"], Directory.GetFiles(Path.GetDirectoryName(StatePath)!).Select(Path.GetFileName));
        var reread = new AdviceStateStore(StatePath, new ListLogger<AdviceStateStore>());
        Assert.Equal(new FindingDecisionRecord(FindingDecision.Muted, At, "token:ops", FindingKinds.UnmatchedScanner), reread.Get("aaa"));
        Assert.Null(reread.Get("bbb"));
        Assert.Equal(FindingDecision.Acknowledged, reread.Get("ccc")!.Decision);
        Assert.Contains("\"muted\"", File.ReadAllText(StatePath), StringComparison.Ordinal);
    }

    [Fact]
    public void AnUnreadableFileIsLoggedAndTheStoreStartsEmpty()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(StatePath)!);
        File.WriteAllText(StatePath, "{ not json");
        var logger = new ListLogger<AdviceStateStore>();
        var store = new AdviceStateStore(StatePath, logger);
        Assert.Empty(store.Current);
        Assert.Contains(logger.Lines, l => l.Level == LogLevel.Warning && l.Text.Contains(StatePath, StringComparison.Ordinal));
    }

    [Fact]
    public void AnAcknowledgementEndsWhenTheEngineForgetsTheFindingAMuteDoesNot()
    {
        var store = new AdviceStateStore(StatePath, new ListLogger<AdviceStateStore>());
        store.Set("acked", new FindingDecisionRecord(FindingDecision.Acknowledged, At, "loopback", null));
        store.Set("muted", new FindingDecisionRecord(FindingDecision.Muted, At, "loopback", null));
        store.Published(new FindingSet(At, null, false, [], forgotten: ["acked", "muted"]), []);
        Assert.Null(store.Get("acked"));
        Assert.NotNull(store.Get("muted"));
        Assert.Null(new AdviceStateStore(StatePath, new ListLogger<AdviceStateStore>()).Get("acked"));
    }

    [Fact]
    public void WithoutAPathDecisionsAreKeptInMemoryOnly()
    {
        var store = new AdviceStateStore(null, new ListLogger<AdviceStateStore>());
        store.Set("x", new FindingDecisionRecord(FindingDecision.Muted, At, "loopback", null));
        Assert.NotNull(store.Get("x"));
        Assert.Empty(_directory.GetFiles("*", SearchOption.AllDirectories));
    }
}
