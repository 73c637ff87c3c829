using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Portcullis.Advice;

namespace Portcullis.Tests.Advice;

/// <summary>A detector the test controls: returns <see cref="Next"/> (or throws <see cref="Throw"/>) and counts its calls.</summary>
internal sealed class ScriptedDetector(string name) : IAdviceDetector
{
    public string Name => name;

    public IReadOnlyList<Finding> Next { get; set; } = [];

    public Exception? Throw { get; set; }

    public int Calls { get; private set; }

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        Calls++;
        if (Throw is not null) throw Throw;
        return Next;
    }
}

/// <summary>Keeps log lines (level and text) for asserts.</summary>
internal sealed class ListLogger<T> : ILogger<T>
{
    public ConcurrentQueue<(LogLevel Level, string Text)> Lines { get; } = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Lines.Enqueue((logLevel, formatter(state, exception)));
}

internal static class Findings
{
    public static Finding Make(string kind, string subject, DateTime seen, ConfigPatch? patch = null, FindingSeverity severity = FindingSeverity.Warning)
    {
        var s = new FindingSubject(SubjectKind.Route, subject);
        return new Finding
        {
            Id = Finding.MakeId(kind, s),
            Kind = kind,
            Severity = severity,
            Subject = s,
            FirstSeen = seen,
            LastSeen = seen,
            Title = $"{kind} on {subject}",
            Explanation = "Seen in the test.",
            Evidence = new Evidence(seen.AddHours(-1), seen, [new EvidenceValue("requests", 42, "req", 1)]) { Basis = "1 h of data", DashboardLink = DashboardLinks.Route(subject, seen.AddHours(-1), seen) },
            Patch = patch,
        };
    }
}
