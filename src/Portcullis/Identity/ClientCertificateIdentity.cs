using System.Collections.Frozen;
using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;

namespace Portcullis.Identity;

/// <summary>
/// The client certificate (mTLS) as a caller identity. The listener's handshake validation builds it once per
/// connection, only for a certificate it trusted, and keeps it in the connection's items; routes with
/// `auth.clientCertificate` read it from there. Claims: cert.subject, cert.cn, cert.dns (every DNS SAN),
/// cert.uri (every URI SAN, e.g. spiffe://corp/billing), cert.email, cert.fingerprint (SHA-256, lower-case
/// hex), cert.issuer, cert.serial.
/// </summary>
internal static class ClientCertificateIdentity
{
    public const string ItemKey = "Portcullis.ClientCertificateIdentity";

    public const string Subject = "cert.subject";
    public const string CommonName = "cert.cn";
    public const string Dns = "cert.dns";
    public const string Uri = "cert.uri";
    public const string Email = "cert.email";
    public const string Fingerprint = "cert.fingerprint";
    public const string Issuer = "cert.issuer";
    public const string Serial = "cert.serial";

    /// <summary>Every claim a client certificate gives.</summary>
    public static readonly FrozenSet<string> ClaimNames = FrozenSet.Create(StringComparer.Ordinal, Subject, CommonName, Dns, Uri, Email, Fingerprint, Issuer, Serial);

    /// <summary>The validated client certificate's identity on this request's connection, if any.</summary>
    public static CallerIdentity? Get(HttpContext context) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items is { } items && items.TryGetValue(ItemKey, out var value) ? value as CallerIdentity : null;

    public static CallerIdentity Create(X509Certificate2 certificate, string listener, IReadOnlyList<string> consumerClaims)
    {
        var claims = Claims(certificate);
        string? consumer = null;
        foreach (var name in consumerClaims)
        {
            if (claims.TryGetValue(name, out var values) && values.Length > 0)
            {
                consumer = values[0];
                break;
            }
        }

        return new CallerIdentity
        {
            Kind = CredentialKind.ClientCertificate,
            Source = "cert:" + listener,
            Subject = certificate.Subject,
            Consumer = consumer,
            Claims = claims,
            Expires = certificate.NotAfter.ToUniversalTime(),
        };
    }

    /// <summary>The certificate as URL-encoded PEM, the form Envoy (XFCC Cert=) and nginx ($ssl_client_escaped_cert) forward.</summary>
    public static string EscapedPem(X509Certificate2 certificate) => System.Uri.EscapeDataString(certificate.ExportCertificatePem() + "\n");

    internal static FrozenDictionary<string, string[]> Claims(X509Certificate2 certificate)
    {
        var (dns, uris, emails) = AlternativeNames(certificate);
        var claims = new Dictionary<string, string[]>(StringComparer.Ordinal)
        {
            [Subject] = [certificate.Subject],
            [Issuer] = [certificate.Issuer],
            [Fingerprint] = [Convert.ToHexStringLower(certificate.GetCertHash(HashAlgorithmName.SHA256))],
            [Serial] = [certificate.SerialNumber],
        };
        var cn = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        if (!string.IsNullOrEmpty(cn) && certificate.SubjectName.EnumerateRelativeDistinguishedNames().Any(n => n.GetSingleElementType().Value == "2.5.4.3")) claims[CommonName] = [cn];
        if (dns.Length > 0) claims[Dns] = dns;
        if (uris.Length > 0) claims[Uri] = uris;
        if (emails.Length > 0) claims[Email] = emails;
        return claims.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>DNS, URI and e-mail subject alternative names, read with the framework's X.509 and ASN.1 readers.</summary>
    internal static (string[] Dns, string[] Uris, string[] Emails) AlternativeNames(X509Certificate2 certificate)
    {
        var dns = new List<string>();
        var uris = new List<string>();
        var emails = new List<string>();
        var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
        var emailTag = new Asn1Tag(TagClass.ContextSpecific, 1);
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.17") continue;
            try
            {
                var san = extension as X509SubjectAlternativeNameExtension ?? new X509SubjectAlternativeNameExtension(extension.RawData, extension.Critical);
                dns.AddRange(san.EnumerateDnsNames());

                // GeneralNames ::= SEQUENCE OF GeneralName; uniformResourceIdentifier [6] and rfc822Name [1] are IA5String.
                var names = new AsnReader(extension.RawData, AsnEncodingRules.DER).ReadSequence();
                while (names.HasData)
                {
                    var tag = names.PeekTag();
                    if (tag.HasSameClassAndValue(uriTag)) uris.Add(names.ReadCharacterString(UniversalTagNumber.IA5String, uriTag));
                    else if (tag.HasSameClassAndValue(emailTag)) emails.Add(names.ReadCharacterString(UniversalTagNumber.IA5String, emailTag));
                    else names.ReadEncodedValue();
                }
            }
            catch (Exception ex) when (ex is CryptographicException or AsnContentException)
            {
                // A malformed SAN extension gives no names; rules on them then fail (deny by default).
            }
        }

        return ([.. dns], [.. uris], [.. emails]);
    }
}
