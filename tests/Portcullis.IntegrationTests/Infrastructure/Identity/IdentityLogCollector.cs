using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Portcullis.IntegrationTests.Infrastructure.Identity;

/// <summary>Keeps the provider's OpenIddict/ASP.NET Core log lines (Information and up) for failure messages.</summary>
internal sealed class IdentityLogCollector : ILoggerProvider
{
    private const int MaxLines = 2000;
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyCollection<string> Lines => _lines;

    public ILogger CreateLogger(string categoryName) => new Collector(this, categoryName);

    public void Dispose()
    {
    }

    public string Tail(int count = 30) => string.Join("\n", _lines.TakeLast(count));

    private void Add(string line)
    {
        _lines.Enqueue(line);
        while (_lines.Count > MaxLines && _lines.TryDequeue(out _))
        {
        }
    }

    private sealed class Collector(IdentityLogCollector owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) =>
            logLevel >= LogLevel.Warning || (logLevel >= LogLevel.Information && category.StartsWith("OpenIddict", StringComparison.Ordinal));

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) owner.Add($"{logLevel}: {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
        }
    }
}
