using System.Collections.Frozen;
using System.Net.Security;
using System.Security.Authentication;
using Microsoft.AspNetCore.Connections;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Files;
using Portcullis.Pipeline;

namespace Portcullis.Tls;

/// <summary>
/// The TLS listeners' server certificates. Each listener's certificates sit in an immutable
/// <see cref="SniTable"/> that a handshake reads with one volatile load (no lock, no I/O). Certificate
/// files are watched (file events plus a stat poll); a changed file is loaded off the handshake path and
/// swapped in only when it loads and is valid, otherwise the working certificate keeps serving and the
/// error is logged once and reported. Existing connections keep the certificate they were made with.
/// </summary>
/// <remarks>Certificates are set up from the configuration the gateway started with; changing `tls` in
/// the file takes effect after a restart, like every listener setting. File contents rotate live.</remarks>
internal sealed partial class CertificateStore : IDisposable
{
    private static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan ExpiryCheckInterval = TimeSpan.FromHours(1);

    private readonly TimeProvider _time;
    private readonly ILogger<CertificateStore> _logger;
    private readonly HandshakeLog _handshakes;
    private readonly Func<string, string?> _environment;
    private readonly FrozenDictionary<string, ListenerCertificates> _listeners;
    private readonly FrozenSet<string> _files;
    private readonly Lock _refreshLock = new();
    private FileChangeWatcher? _watcher;
    private ITimer? _expiryTimer;
    private bool _disposed;

    public CertificateStore(SnapshotStore store, PortcullisOptions options, TimeProvider time, ILogger<CertificateStore> logger)
        : this(store.Current.Listeners, options.Environment ?? Environment.GetEnvironmentVariable, time, logger, watch: true)
    {
    }

    internal CertificateStore(IEnumerable<ListenerBinding> listeners, Func<string, string?> environment, TimeProvider time, ILogger<CertificateStore> logger, bool watch)
    {
        _time = time;
        _logger = logger;
        _handshakes = new HandshakeLog(time, logger);
        _environment = environment;
        var now = time.GetUtcNow();
        var result = new Dictionary<string, ListenerCertificates>(StringComparer.Ordinal);
        foreach (var listener in listeners)
        {
            if (listener.Tls is not { } tls) continue;
            var slots = new CertificateSlot[tls.Certificates.Count];
            for (var i = 0; i < slots.Length; i++)
            {
                var source = tls.Certificates[i];
                // Validation loaded these moments ago; failing now means the file changed in between.
                if (!CertificateLoader.TryLoad(source, environment, now, out var loaded, out var error))
                {
                    throw new InvalidOperationException($"listener '{listener.Name}': certificate '{source.Name}' cannot be loaded: {error!.Message}");
                }

                slots[i] = new CertificateSlot(listener.Name, source, new SlotState(loaded!, null, null), Stamps(source));
            }

            ClientCaSlot? clientCa = null;
            if (tls.ClientCertificate is { } policy)
            {
                if (!ClientCaLoader.TryLoad(policy.CaFile, now, out var bundle, out var error, out _))
                {
                    throw new InvalidOperationException($"listener '{listener.Name}': client CA bundle cannot be loaded: {error}");
                }

                clientCa = new ClientCaSlot(listener.Name, new ClientCertificateValidator(listener.Name, policy, bundle!, time), Stamp(policy.CaFile));
            }

            result[listener.Name] = new ListenerCertificates(listener.Name, tls, slots, clientCa);
        }

        _listeners = result.ToFrozenDictionary(StringComparer.Ordinal);
        _files = _listeners.Values.SelectMany(l => l.Slots).SelectMany(s => s.Source.Files)
            .Concat(_listeners.Values.Select(l => l.ClientCa?.File).OfType<string>())
            .ToFrozenSet(StringComparer.Ordinal);
        CheckExpiry();
        if (watch && _listeners.Count > 0) StartWatching();
    }

    public IReadOnlyCollection<ListenerCertificates> Listeners => _listeners.Values;

    public ListenerCertificates? For(string listener) => _listeners.GetValueOrDefault(listener);

    /// <summary>Serves HTTPS on a Kestrel endpoint with the listener's certificates, chosen per handshake by SNI.</summary>
    public void UseHttps(ListenOptions listen, string listener)
    {
        var certificates = _listeners[listener];
        // Around the handshake: a connection that never reaches the inner step had its handshake refused.
        listen.Use(next => connection => TrackHandshakeAsync(next, connection, listener));
        listen.UseHttps(new TlsHandshakeCallbackOptions { OnConnection = OnConnection, OnConnectionState = certificates });
        listen.Use(next => connection =>
        {
            if (connection.Items.TryGetValue(HandshakeState.Key, out var state) && state is HandshakeState handshake) handshake.Completed = true;
            return next(connection);
        });
    }

    private async Task TrackHandshakeAsync(ConnectionDelegate next, ConnectionContext connection, string listener)
    {
        var state = new HandshakeState();
        connection.Items[HandshakeState.Key] = state;
        var transport = connection.Transport;
        connection.Transport = new HandshakeTransport(transport, state);
        try
        {
            await next(connection);
        }
        catch (NotSupportedException) when (!state.HelloSeen && !state.Completed)
        {
            // SslStream hands a TLS 1.0/1.1 (or unparseable) ClientHello to no certificate selection and then
            // throws for want of a certificate; Kestrel would log that as an unhandled error with a stack trace.
            state.Refusal = "client hello names nothing newer than TLS 1.1 (or is malformed); TLS 1.2+ is required";
            state.HelloSeen = true;
        }
        finally
        {
            connection.Transport = transport;
            if (!state.Completed)
            {
                var peer = connection.RemoteEndPoint?.ToString();
                if (!state.HelloSeen) _handshakes.ClosedBeforeHello(listener, peer);
                // A refusal is the gateway's decision; a client that went away mid-handshake decided nothing about TLS versions.
                else if (state.Refusal is null && state.ClientClosed) _handshakes.ClosedDuringHandshake(listener, peer, state.HelloProtocol.ToString());
                else _handshakes.Refused(listener, peer, state.Refusal ?? Describe(state.HelloProtocol, _listeners[listener].Table.Protocols));
            }
        }
    }

    /// <summary>Why a handshake failed when no client-certificate check refused it: the version offered, else a generic reason.</summary>
    private static string Describe(SslProtocols offered, SslProtocols accepted)
    {
        const SslProtocols modern = SslProtocols.Tls12 | SslProtocols.Tls13;
        if (offered != SslProtocols.None && (offered & modern) == 0) return $"client offered only {offered} (TLS 1.1 or older); TLS 1.2+ is required";
        if ((offered & modern) == SslProtocols.Tls12 && !accepted.HasFlag(SslProtocols.Tls12)) return "client offered TLS 1.2; the listener accepts TLS 1.3 only";
        // No guess about old versions when the hello names TLS 1.2: a modern client's hello shows up as
        // "Tls, Tls12" (the record layer's TLS 1.0 plus the hello's 1.2), so that guess blamed every one.
        return $"handshake failed (client hello names {offered}): no common cipher or ALPN protocol, a malformed or aborted handshake, or a timeout";
    }

    private static ValueTask<SslServerAuthenticationOptions> OnConnection(TlsHandshakeCallbackContext context)
    {
        if (context.Connection.Items.TryGetValue(HandshakeState.Key, out var value) && value is HandshakeState state)
        {
            state.HelloSeen = true;
            state.HelloProtocol = context.ClientHelloInfo.SslProtocols;
        }

        return ValueTask.FromResult(((ListenerCertificates)context.State!).OptionsFor(context.ClientHelloInfo.ServerName, context.Connection));
    }

    /// <summary>Checks every watched file now and loads the changed ones (also run by the file watcher, after events or its poll).</summary>
    public void Refresh()
    {
        lock (_refreshLock)
        {
            if (_disposed) return;
            var now = _time.GetUtcNow();
            foreach (var listener in _listeners.Values)
            {
                var changed = false;
                foreach (var slot in listener.Slots)
                {
                    // Stamped before reading: a file replaced while it is read differs again at the next look.
                    var stamps = Stamps(slot.Source);
                    if (stamps.SequenceEqual(slot.Stamps)) continue;
                    slot.Stamps = stamps;
                    changed |= Reload(slot, now);
                }

                if (changed) listener.Rebuild();
                if (listener.ClientCa is { } clientCa) ReloadClientCa(clientCa, now);
            }
        }

        CheckExpiry();
    }

    private bool Reload(CertificateSlot slot, DateTimeOffset now)
    {
        var state = slot.State;
        if (!CertificateLoader.TryLoad(slot.Source, _environment, now, out var loaded, out var error))
        {
            var message = $"{error!.Message} ({slot.Source.ConfigPath}.{error.Key})";
            Log.RotationRejected(_logger, slot.Source.Name, slot.Listener, message, state.Current.Subject, CertificateLoader.Format(state.Current.NotAfter));
            slot.State = state with { LastError = message, LastErrorAt = now };
            return false;
        }

        if (loaded!.ContentHash == state.Current.ContentHash)
        {
            // Touched, or put back as it was: nothing to swap; a previous error no longer applies.
            loaded.Certificate.Dispose();
            if (state.LastError is not null) slot.State = state with { LastError = null, LastErrorAt = null };
            return false;
        }

        // The replaced certificate is not disposed: connections made with it may still use it.
        slot.State = new SlotState(loaded, null, null);
        slot.LastExpiryWarning = null;
        Log.Rotated(_logger, slot.Source.Name, slot.Listener, loaded.Subject, CertificateLoader.Format(loaded.NotAfter), loaded.Fingerprint);
        return true;
    }

    private void ReloadClientCa(ClientCaSlot slot, DateTimeOffset now)
    {
        var stamp = Stamp(slot.File);
        if (stamp == slot.Stamp) return;
        slot.Stamp = stamp;
        var validator = slot.Validator;
        if (!ClientCaLoader.TryLoad(slot.File, now, out var bundle, out var error, out _))
        {
            var message = $"{error} ({validator.Policy.ConfigPath}.ca)";
            Log.ClientCaRejected(_logger, slot.Listener, message, validator.Bundle.Certificates.Count);
            slot.LastError = message;
            slot.LastErrorAt = now;
            return;
        }

        slot.LastError = null;
        slot.LastErrorAt = null;
        if (bundle!.ContentHash == validator.Bundle.ContentHash)
        {
            foreach (var certificate in bundle.Certificates) certificate.Dispose();
            return;
        }

        // The previous bundle is not disposed: a handshake may be checking against it right now.
        validator.Bundle = bundle;
        Log.ClientCaReloaded(_logger, slot.Listener, bundle.Certificates.Count, string.Join("; ", bundle.Subjects));
    }

    /// <summary>Warns (once a day per certificate) about certificates that expire within 14 days or have expired.</summary>
    public void CheckExpiry()
    {
        lock (_refreshLock)
        {
            var now = _time.GetUtcNow();
            foreach (var slot in _listeners.Values.SelectMany(l => l.Slots))
            {
                var current = slot.State.Current;
                var left = current.NotAfter - now;
                if (left >= TlsCompiler.ExpiryWarning) continue;
                if (slot.LastExpiryWarning is { } last && now - last < TimeSpan.FromDays(1)) continue;
                slot.LastExpiryWarning = now;
                if (left <= TimeSpan.Zero) Log.Expired(_logger, slot.Source.Name, slot.Listener, current.Subject, CertificateLoader.Format(current.NotAfter), slot.Source.MainFile);
                else Log.Expiring(_logger, slot.Source.Name, slot.Listener, current.Subject, DaysToExpiry(current, now), CertificateLoader.Format(current.NotAfter), slot.Source.MainFile);
            }
        }
    }

    internal static int DaysToExpiry(LoadedCertificate certificate, DateTimeOffset now) => (int)Math.Floor((certificate.NotAfter - now).TotalDays);

    /// <summary>GET /admin/certificates: every listener certificate with its expiry and reload state.</summary>
    public void WriteStatus(Utf8JsonWriter w) => CertificateStatusWriter.Write(w, _listeners.Values, _time.GetUtcNow());

    private void StartWatching()
    {
        // From the versions loaded above, so a file replaced since is noticed by the watcher's first poll.
        var known = new Dictionary<string, FileStamp>(StringComparer.Ordinal);
        foreach (var slot in _listeners.Values.SelectMany(l => l.Slots))
        {
            foreach (var (file, stamp) in slot.Source.Files.Zip(slot.Stamps)) known.TryAdd(Path.GetFullPath(file), stamp);
        }

        foreach (var clientCa in _listeners.Values.Select(l => l.ClientCa).OfType<ClientCaSlot>()) known.TryAdd(Path.GetFullPath(clientCa.File), clientCa.Stamp);
        _watcher = new FileChangeWatcher(_files, Debounce, _time, Refresh, _logger, known);
        _expiryTimer = _time.CreateTimer(_ => CheckExpiry(), null, ExpiryCheckInterval, ExpiryCheckInterval);
    }

    /// <summary>What identifies a file's version: the final target of any symlinks, its write time and size.</summary>
    private static FileStamp[] Stamps(CertificateSource source) => [.. source.Files.Select(Stamp)];

    internal static FileStamp Stamp(string file) => FileStamp.Of(file);

    public void Dispose()
    {
        lock (_refreshLock)
        {
            if (_disposed) return;
            _disposed = true;
            _watcher?.Dispose();
            _expiryTimer?.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(6001, LogLevel.Information, "Certificate {Name} of listener {Listener} reloaded: {Subject}, valid until {NotAfter}, SHA-256 {Fingerprint}")]
        public static partial void Rotated(ILogger logger, string name, string listener, string subject, string notAfter, string fingerprint);

        [LoggerMessage(6002, LogLevel.Error, "Certificate {Name} of listener {Listener} was not replaced: {Error}; the previous certificate ({Subject}, valid until {NotAfter}) keeps serving")]
        public static partial void RotationRejected(ILogger logger, string name, string listener, string error, string subject, string notAfter);

        [LoggerMessage(6003, LogLevel.Warning, "Certificate {Name} of listener {Listener} ({Subject}) expires in {Days} day(s), on {NotAfter}; renew {File}")]
        public static partial void Expiring(ILogger logger, string name, string listener, string subject, int days, string notAfter, string file);

        [LoggerMessage(6004, LogLevel.Error, "Certificate {Name} of listener {Listener} ({Subject}) expired on {NotAfter}; clients refuse it until {File} is renewed")]
        public static partial void Expired(ILogger logger, string name, string listener, string subject, string notAfter, string file);

        [LoggerMessage(6005, LogLevel.Information, "Client CA bundle of listener {Listener} reloaded: {Count} certificate(s): {Subjects}")]
        public static partial void ClientCaReloaded(ILogger logger, string listener, int count, string subjects);

        [LoggerMessage(6006, LogLevel.Error, "Client CA bundle of listener {Listener} was not replaced: {Error}; the previous bundle ({Count} certificate(s)) keeps serving")]
        public static partial void ClientCaRejected(ILogger logger, string listener, string error, int count);
    }
}
