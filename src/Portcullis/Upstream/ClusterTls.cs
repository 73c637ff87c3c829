using System.Collections.Frozen;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;

namespace Portcullis.Upstream;

/// <summary>What a cluster's client certificate is now and how its last reload went.</summary>
internal sealed record ClientCertificateState(LoadedClientCertificate? Current, string? LastError, DateTimeOffset? LastErrorAt);

/// <summary>What a cluster's CA bundle is now and how its last reload went.</summary>
internal sealed record TrustState(TrustBundle? Current, string? LastError, DateTimeOffset? LastErrorAt);

/// <summary>
/// One cluster's upstream TLS at run time: opens each new upstream connection itself (SocketsHttpHandler's
/// ConnectCallback returning an authenticated SslStream), because only that way the SNI name can differ
/// from the Host header. Each handshake reads the current client certificate and CA bundle through one
/// reference each; rotation swaps those references (off the request path), so new connections present
/// the new certificate while pooled connections keep theirs.
/// </summary>
internal sealed partial class ClusterTls
{
    private const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";
    private static readonly TimeSpan LogEvery = TimeSpan.FromSeconds(10);

    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly FrozenSet<string> _pins;
    private readonly List<SslApplicationProtocol> _http11 = [SslApplicationProtocol.Http11];
    private readonly List<SslApplicationProtocol> _http2 = [SslApplicationProtocol.Http2];
    private readonly List<SslApplicationProtocol> _both = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11];
    private volatile ClientCertificateState _client;
    private volatile TrustState _trust;
    private volatile HandshakeFailure? _lastFailure;
    private long _handshakes;
    private long _failures;
    private long _lastLoggedTicks;

    public ClusterTls(UpstreamTlsSettings settings, ClientCertificateState client, TrustState trust, TimeProvider time, ILogger logger)
    {
        Settings = settings;
        _client = client;
        _trust = trust;
        _time = time;
        _logger = logger;
        _pins = settings.Pins.ToFrozenSet(StringComparer.Ordinal);
    }

    private sealed record HandshakeFailure(string Host, string Reason, DateTimeOffset At);

    public UpstreamTlsSettings Settings { get; }

    public ClientCertificateState Client
    {
        get => _client;
        set => _client = value;
    }

    public TrustState Trust
    {
        get => _trust;
        set => _trust = value;
    }

    /// <summary>File versions of the last load attempt (changed under the store's lock only).</summary>
    public Files.FileStamp[] Stamps { get; set; } = [];

    public DateTimeOffset? LastExpiryWarning { get; set; }

    public long Handshakes => Interlocked.Read(ref _handshakes);

    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>SocketsHttpHandler.ConnectCallback: TCP connect, then (for https) the TLS handshake with this cluster's settings.</summary>
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(context.DnsEndPoint, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var network = new NetworkStream(socket, ownsSocket: true);
        var request = context.InitialRequestMessage;
        if (!string.Equals(request.RequestUri?.Scheme, Uri.UriSchemeHttps, StringComparison.OrdinalIgnoreCase)) return network;

        var host = Settings.ServerName ?? HostOf(request);
        var rejected = false;
        var ssl = new SslStream(network, leaveInnerStreamOpen: false, (_, certificate, chain, errors) =>
        {
            var problem = Check(certificate, chain, errors);
            if (problem is null) return true;
            rejected = true;
            Fail(host, problem);
            return false;
        });
        try
        {
            Interlocked.Increment(ref _handshakes);
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = host,
                // One read of the holder per connection: a rotation in between is seen by the next connection.
                ClientCertificateContext = _client.Current?.Context,
                ApplicationProtocols = Alpn(request),
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            }, cancellationToken).ConfigureAwait(false);
            return ssl;
        }
        catch (Exception ex)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            if (!rejected && ex is not OperationCanceledException) Fail(host, ex.InnerException?.Message ?? ex.Message);
            throw;
        }
    }

    private List<SslApplicationProtocol> Alpn(HttpRequestMessage request)
    {
        if (request.Version.Major >= 2) return request.VersionPolicy == HttpVersionPolicy.RequestVersionOrLower ? _both : _http2;
        return request.VersionPolicy == HttpVersionPolicy.RequestVersionOrHigher ? _both : _http11;
    }

    // The name HttpClient itself would use: the Host header's host, else the URI's.
    private static string HostOf(HttpRequestMessage request)
    {
        var host = request.Headers.Host;
        if (!string.IsNullOrEmpty(host))
        {
            if (host.StartsWith('['))
            {
                var end = host.IndexOf(']', StringComparison.Ordinal);
                return end > 0 ? host[1..end] : host;
            }

            var colon = host.IndexOf(':', StringComparison.Ordinal);
            return colon >= 0 ? host[..colon] : host;
        }

        return request.RequestUri!.IdnHost.Trim('[', ']');
    }

    private string? Check(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null) return "the destination sent no certificate";
        var leaf = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        if (!Settings.InsecureSkipVerify)
        {
            if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
            {
                return $"the destination's certificate ({leaf.Subject}) is not for the expected name";
            }

            if (_trust.Current is { } trust)
            {
                using var custom = new X509Chain();
                custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                custom.ChainPolicy.CustomTrustStore.AddRange(trust.Roots);
                custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                custom.ChainPolicy.VerificationTime = _time.GetUtcNow().UtcDateTime;
                custom.ChainPolicy.VerificationTimeIgnored = false;
                custom.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid(ServerAuthOid));
                if (chain is not null)
                {
                    // The intermediates the destination sent.
                    custom.ChainPolicy.ExtraStore.AddRange(chain.ChainPolicy.ExtraStore);
                    foreach (var element in chain.ChainElements)
                    {
                        if (!ReferenceEquals(element.Certificate, leaf)) custom.ChainPolicy.ExtraStore.Add(element.Certificate);
                    }
                }

                if (!custom.Build(leaf))
                {
                    var status = string.Join(", ", custom.ChainStatus.Select(s => s.Status.ToString()).Distinct(StringComparer.Ordinal));
                    return $"the destination's certificate ({leaf.Subject}, issuer {leaf.Issuer}) does not chain to the cluster's CA bundle ({status})";
                }
            }
            else if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
            {
                var status = chain is null ? "" : " (" + string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()).Distinct(StringComparer.Ordinal)) + ")";
                return $"the destination's certificate ({leaf.Subject}, issuer {leaf.Issuer}) is not trusted by the system store{status}";
            }
        }

        if (_pins.Count > 0)
        {
            var spki = UpstreamFiles.SpkiHash(leaf);
            if (!_pins.Contains(spki)) return $"the destination's public key (SPKI sha256 {spki}) matches no configured pin";
        }

        return null;
    }

    private void Fail(string host, string reason)
    {
        Interlocked.Increment(ref _failures);
        var now = _time.GetUtcNow();
        _lastFailure = new HandshakeFailure(host, reason, now);
        // At most one log line per cluster every 10 s: a broken upstream must not flood the log.
        var last = Interlocked.Read(ref _lastLoggedTicks);
        if (now.UtcTicks - last >= LogEvery.Ticks && Interlocked.CompareExchange(ref _lastLoggedTicks, now.UtcTicks, last) == last)
        {
            Log.HandshakeFailed(_logger, Settings.Cluster, host, reason);
        }
    }

    public (string Host, string Reason, DateTimeOffset At)? LastFailure => _lastFailure is { } f ? (f.Host, f.Reason, f.At) : null;

    private static partial class Log
    {
        [LoggerMessage(7101, LogLevel.Warning, "Upstream TLS to cluster {Cluster} ({Host}) failed: {Reason}")]
        public static partial void HandshakeFailed(ILogger logger, string cluster, string host, string reason);
    }
}
