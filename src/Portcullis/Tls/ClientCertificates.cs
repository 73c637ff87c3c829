using System.Collections.Frozen;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Portcullis.Configuration;
using Portcullis.Files;
using Portcullis.Identity;

namespace Portcullis.Tls;

/// <summary>A cleartext listener's redirect to HTTPS.</summary>
internal sealed record HttpsRedirect(int Port, int Status);

/// <summary>A loaded bundle of trusted client CAs: the trust anchors of one listener's client-certificate checks.</summary>
internal sealed class ClientCaBundle
{
    public required string File { get; init; }

    public required X509Certificate2Collection Certificates { get; init; }

    public required string ContentHash { get; init; }

    public required DateTimeOffset LoadedAt { get; init; }

    /// <summary>The earliest expiry among the bundle's certificates.</summary>
    public DateTimeOffset NotAfter => Certificates.Min(c => c.NotAfter.ToUniversalTime());

    public IEnumerable<string> Subjects => Certificates.Select(c => c.Subject);
}

/// <summary>Loads a PEM bundle of CA certificates with the framework's PEM reader and checks it can serve as trust anchors.</summary>
internal static class ClientCaLoader
{
    public static bool TryLoad(string file, DateTimeOffset now, out ClientCaBundle? bundle, out string? error, out string? hint)
    {
        bundle = null;
        var loaded = CertificateFiles.LoadBundle(file, "ca", "the file must hold -----BEGIN CERTIFICATE----- blocks of the CAs that issue client certificates", out var failure);
        if (loaded is null)
        {
            error = failure!.Message;
            hint = failure.Hint;
            return false;
        }

        var certificates = loaded.Certificates;
        if (!certificates.Any(c => c.NotBefore.ToUniversalTime() <= now && now < c.NotAfter.ToUniversalTime()))
        {
            error = $"no certificate in '{file}' is valid now (all expired or not yet valid)";
            hint = "renew the CA certificate";
            foreach (var c in certificates) c.Dispose();
            return false;
        }

        error = null;
        hint = null;
        bundle = new ClientCaBundle
        {
            File = file,
            Certificates = certificates,
            ContentHash = loaded.ContentHash,
            LoadedAt = now,
        };
        return true;
    }
}

/// <summary>What happened on one TLS connection's handshake, kept in the connection's items for the handshake log.</summary>
internal sealed class HandshakeState
{
    public const string Key = "Portcullis.Handshake";

    /// <summary>The ClientHello was read (our certificate selection ran).</summary>
    public bool HelloSeen { get; set; }

    public System.Security.Authentication.SslProtocols HelloProtocol { get; set; }

    public bool Completed { get; set; }

    /// <summary>The client ended or reset the connection before the handshake completed (see <see cref="HandshakeTransport"/>).</summary>
    public bool ClientClosed { get; set; }

    /// <summary>Why the client certificate was refused, when it was.</summary>
    public string? Refusal { get; set; }
}

/// <summary>
/// Checks client certificates during the handshake: an <see cref="X509Chain"/> with custom root trust (the
/// listener's CA bundle only, no system roots), the configured revocation mode, no certificate downloads
/// unless revocation is online, and the allowed extended key usages. A trusted certificate becomes the
/// connection's <see cref="CallerIdentity"/> (built once per connection).
/// </summary>
internal sealed class ClientCertificateValidator
{
    private const string AnyUsageOid = "2.5.29.37.0";

    private readonly ClientCertificatePolicy _policy;
    private readonly TimeProvider _time;
    private readonly string _listener;
    private volatile ClientCaBundle _bundle;

    public ClientCertificateValidator(string listener, ClientCertificatePolicy policy, ClientCaBundle bundle, TimeProvider time)
    {
        _listener = listener;
        _policy = policy;
        _bundle = bundle;
        _time = time;
    }

    public ClientCertificatePolicy Policy => _policy;

    public ClientCaBundle Bundle
    {
        get => _bundle;
        set => _bundle = value;
    }

    /// <summary>Sets the handshake options for this listener's client-certificate mode; the callback sees this connection.</summary>
    public void Apply(SslServerAuthenticationOptions options, ConnectionContext connection)
    {
        if (_policy.Mode == ClientCertificateMode.None) return;
        options.ClientCertificateRequired = true;
        // SslStream builds a chain before calling back: keep it offline and anchored nowhere (our own chain decides).
        options.CertificateChainPolicy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
            DisableCertificateDownloads = true,
        };
        options.RemoteCertificateValidationCallback = (_, certificate, chain, _) => Validate(connection, certificate, chain);
    }

    private bool Validate(ConnectionContext connection, X509Certificate? presented, X509Chain? sslChain)
    {
        var state = connection.Items.TryGetValue(HandshakeState.Key, out var value) ? value as HandshakeState : null;
        if (presented is null)
        {
            if (_policy.Mode == ClientCertificateMode.Optional) return true;
            if (state is not null) state.Refusal = "no client certificate (required)";
            return false;
        }

        var certificate = presented as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
        if (Check(certificate, sslChain?.ChainPolicy.ExtraStore, out var problem))
        {
            connection.Items[ClientCertificateIdentity.ItemKey] = ClientCertificateIdentity.Create(certificate, _listener, _policy.Consumer);
            return true;
        }

        if (state is not null) state.Refusal = $"client certificate '{certificate.Subject}' refused: {problem}";
        return false;
    }

    /// <summary>Whether the certificate chains to the CA bundle, passes the revocation check and has an allowed usage.</summary>
    internal bool Check(X509Certificate2 certificate, X509Certificate2Collection? intermediates, out string? problem)
    {
        var bundle = _bundle;
        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.CustomTrustStore.AddRange(bundle.Certificates);
        policy.RevocationMode = _policy.Revocation switch
        {
            RevocationCheck.Offline => X509RevocationMode.Offline,
            RevocationCheck.Online => X509RevocationMode.Online,
            _ => X509RevocationMode.NoCheck,
        };
        policy.RevocationFlag = X509RevocationFlag.ExcludeRoot;
        policy.DisableCertificateDownloads = _policy.Revocation != RevocationCheck.Online;
        policy.UrlRetrievalTimeout = TimeSpan.FromSeconds(5);
        policy.VerificationTime = _time.GetUtcNow().UtcDateTime;
        if (intermediates is not null)
        {
            foreach (var extra in intermediates)
            {
                if (!extra.RawDataMemory.Span.SequenceEqual(certificate.RawDataMemory.Span)) policy.ExtraStore.Add(extra);
            }
        }

        try
        {
            if (!chain.Build(certificate))
            {
                var flags = chain.ChainStatus.Select(s => s.Status).Where(s => s != X509ChainStatusFlags.NoError).Distinct();
                problem = string.Join(", ", flags.Select(Describe));
                if (problem.Length == 0) problem = "the chain does not end at a trusted CA";
                return false;
            }
        }
        finally
        {
            foreach (var element in chain.ChainElements)
            {
                if (!ReferenceEquals(element.Certificate, certificate)) element.Certificate.Dispose();
            }
        }

        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.37") continue;
            var usage = extension as X509EnhancedKeyUsageExtension ?? new X509EnhancedKeyUsageExtension(extension, extension.Critical);
            var usages = usage.EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value).ToList();
            if (!usages.Contains(AnyUsageOid) && !usages.Any(u => u is not null && _policy.AllowedUsages.Contains(u)))
            {
                problem = "its extended key usage allows none of " + string.Join(", ", _policy.AllowedUsages.Select(UsageName));
                return false;
            }
        }

        problem = null;
        return true;
    }

    private static string Describe(X509ChainStatusFlags flag) => flag switch
    {
        X509ChainStatusFlags.UntrustedRoot or X509ChainStatusFlags.PartialChain => "not issued by a trusted CA",
        X509ChainStatusFlags.NotTimeValid => "expired or not yet valid",
        X509ChainStatusFlags.Revoked => "revoked",
        X509ChainStatusFlags.RevocationStatusUnknown or X509ChainStatusFlags.OfflineRevocation => "revocation status unknown",
        X509ChainStatusFlags.NotSignatureValid => "bad signature",
        X509ChainStatusFlags.NotValidForUsage => "not valid for client authentication",
        _ => flag.ToString(),
    };

    /// <summary>EKU names accepted in `allowedUsages`, and their OIDs.</summary>
    internal static readonly FrozenDictionary<string, string> UsageNames = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["clientAuth"] = "1.3.6.1.5.5.7.3.2",
        ["serverAuth"] = "1.3.6.1.5.5.7.3.1",
        ["emailProtection"] = "1.3.6.1.5.5.7.3.4",
        ["codeSigning"] = "1.3.6.1.5.5.7.3.3",
    }.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);

    private static string UsageName(string oid) => UsageNames.FirstOrDefault(p => p.Value == oid).Key ?? oid;
}
