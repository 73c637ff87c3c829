using System.Diagnostics;

namespace Portcullis.Testing;

/// <summary>
/// Waits for a condition that something else makes true (a file watcher, a reload, a probe, a background
/// writer): the one polling helper of both test projects (linked into each as Infrastructure/Eventually.cs).
/// The timeout is generous on purpose — a passing test waits only as long as it must, and the machine that
/// runs the suite may be busy with other builds — so only a condition that never comes true costs it.
/// </summary>
internal static class Eventually
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    /// <inheritdoc cref="TrueAsync(Func{Task{bool}}, string, TimeSpan?, Func{Task{string}}?)"/>
    public static Task TrueAsync(Func<bool> condition, string what, TimeSpan? timeout = null, Func<Task<string>>? context = null) =>
        TrueAsync(() => Task.FromResult(condition()), what, timeout, context);

    /// <summary>Polls <paramref name="condition"/> until it is true; throws a <see cref="TimeoutException"/> naming <paramref name="what"/> when it stays false.</summary>
    /// <param name="context">What to add to the failure (the gateway's logs, admin state).</param>
    /// <remarks>A condition that throws (a connection refused while something restarts, an assertion on a
    /// half-written answer) counts as false; the last error is part of the failure.</remarks>
    public static async Task TrueAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null, Func<Task<string>>? context = null)
    {
        var limit = timeout ?? DefaultTimeout;
        var clock = Stopwatch.StartNew();
        var pause = TimeSpan.FromMilliseconds(10);
        Exception? lastError = null;
        while (true)
        {
            try
            {
                if (await condition()) return;
                lastError = null;
            }
            catch (Exception ex) when (ex is InvalidOperationException or HttpRequestException or IOException or Xunit.Sdk.XunitException)
            {
                lastError = ex;
            }

            if (clock.Elapsed > limit) break;
            await Task.Delay(pause);
            pause = TimeSpan.FromMilliseconds(Math.Min(pause.TotalMilliseconds * 2, 100));
        }

        var error = lastError is null ? "" : $"; last error: {lastError.GetType().Name}: {lastError.Message}";
        var detail = context is null ? "" : "\n" + await context();
        throw new TimeoutException($"timed out after {limit.TotalSeconds:0.#} s waiting for {what}{error}{detail}");
    }
}
