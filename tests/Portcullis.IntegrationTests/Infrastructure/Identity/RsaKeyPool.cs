using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Portcullis.IntegrationTests.Infrastructure.Identity;

/// <summary>
/// Fresh RSA 2048 keys, generated ahead of need on a background thread. Generating one takes from 0.1 s to
/// over 1.5 s on a 2-core machine (prime search), which would otherwise dominate a provider's start-up and
/// every key rotation. Each key is handed out once: keys are still unique per provider and per rotation.
/// </summary>
internal static class RsaKeyPool
{
    private const int Target = 3;
    private static readonly ConcurrentQueue<RSA> Ready = new();
    private static int _refilling;

    public static RSA Take()
    {
        var key = Ready.TryDequeue(out var ready) ? ready : Generate();
        Refill();
        return key;
    }

    private static void Refill()
    {
        if (Ready.Count >= Target || Interlocked.CompareExchange(ref _refilling, 1, 0) != 0) return;
        _ = Task.Run(() =>
        {
            try
            {
                while (Ready.Count < Target) Ready.Enqueue(Generate());
            }
            finally
            {
                Volatile.Write(ref _refilling, 0);
            }
        });
    }

    private static RSA Generate()
    {
        var rsa = RSA.Create(2048);
        // OpenSSL-backed RSA generates lazily: force it here, off the caller's path.
        rsa.ExportParameters(includePrivateParameters: false);
        return rsa;
    }
}
