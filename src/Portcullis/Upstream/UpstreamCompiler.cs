using Portcullis.Configuration;

namespace Portcullis.Upstream;

/// <summary>Validation of clusters' upstream TLS and client credentials: files are loaded and checked like the gateway will.</summary>
internal static class UpstreamCompiler
{
    internal static UpstreamTlsSettings? CompileTls(CompileContext context, string cluster, ClusterOptions options, string clusterPath)
    {
        if (options.Tls is not { } tls) return null;
        var path = clusterPath + ".tls";
        var ok = true;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            ok = false;
        }

        var now = context.Now;
        if (!options.Destinations.Any(d => d.Address.StartsWith("https://", StringComparison.OrdinalIgnoreCase)))
        {
            context.Warning(path, $"cluster '{cluster}' has tls settings but no https:// destination; they apply to https:// destinations only", "write destinations as https://HOST:PORT");
        }

        string? ca = null;
        if (tls.Ca is { } caFile)
        {
            ca = context.Loaded.Resolve(caFile);
            if (UpstreamFiles.LoadTrust(ca, now, out var error) is null) Fail(path + ".ca", error!.Message, error.Hint);
        }

        string? serverName = null;
        if (tls.ServerName is { } name)
        {
            serverName = Tls.CertificateLoader.Normalize(name);
            var problem = "a wildcard cannot be sent";
            if (serverName.StartsWith("*.", StringComparison.Ordinal) || !Portcullis.Tls.TlsCompiler.IsSniName(serverName, out problem))
            {
                Fail(path + ".serverName", $"'{name}' is not a host name for SNI: {problem}", "write the name the destination's certificate is issued for, e.g. orders.internal.example.com");
            }
        }

        var pins = new List<string>();
        for (var i = 0; i < tls.Pin.Count; i++)
        {
            var pin = tls.Pin[i].Trim();
            var bytes = new byte[64];
            if (!Convert.TryFromBase64String(pin, bytes, out var length) || length != 32)
            {
                Fail($"{path}.pin[{i}]", $"'{tls.Pin[i]}' is not a base64 SHA-256 hash (32 bytes)",
                    "openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64");
                continue;
            }

            pins.Add(pin);
        }

        var source = tls.ClientCertificate is { } client ? CompileClientCertificate(context, cluster, client, path + ".clientCertificate", now, ref ok) : null;

        if (tls.InsecureSkipVerify)
        {
            context.Warning(path + ".insecureSkipVerify", $"INSECURE: cluster '{cluster}' accepts any destination certificate (no chain or name check); anyone on the network path can read and change this traffic", "for development only: use ca: PATH with the destinations' CA instead");
            if (tls.Ca is not null) context.Warning(path + ".ca", "ca is not used while insecureSkipVerify is true", "remove one of them");
        }

        return ok ? new UpstreamTlsSettings(cluster, ca, serverName, pins, source, tls.InsecureSkipVerify) : null;
    }

    /// <summary>The certificate the gateway presents to the cluster's destinations, loaded once to check it; ok turns false on a problem.</summary>
    private static ClientCertificateSource? CompileClientCertificate(CompileContext context, string cluster, UpstreamClientCertificateOptions client, string clientPath, DateTimeOffset now, ref bool ok)
    {
        var failed = false;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            failed = true;
        }

        ClientCertificateSource? source = null;
        var pem = client.Cert is not null;
        var pfx = client.Pfx is not null;
        if (pem && pfx) Fail(clientPath + ".pfx", "a client certificate has either `cert` (PEM) or `pfx`, not both", "remove one");
        else if (!pem && !pfx) Fail(clientPath, "clientCertificate has neither `cert` nor `pfx`", "add cert: certs/gateway.pem and key: certs/gateway.key, or pfx: certs/gateway.pfx");
        else if (pfx && client.Key is not null) Fail(clientPath + ".key", "`key` goes with `cert`; a PFX file holds its own key", "remove key");
        else if (pem && client.PasswordEnv is not null) Fail(clientPath + ".passwordEnv", "`passwordEnv` is for a PFX file; PEM keys must be unencrypted", "remove passwordEnv");
        else
        {
            source = new ClientCertificateSource(
                clientPath,
                client.Cert is null ? null : context.Loaded.Resolve(client.Cert),
                client.Key is null ? null : context.Loaded.Resolve(client.Key),
                client.Pfx is null ? null : context.Loaded.Resolve(client.Pfx),
                client.PasswordEnv);
            var loaded = UpstreamFiles.LoadClient(source, context.Environment, now, out var error);
            if (loaded is null)
            {
                Fail(clientPath + "." + error!.Key, error.Message, error.Hint);
            }
            else
            {
                using (loaded.Certificate)
                {
                    var left = loaded.NotAfter - now;
                    if (left < Portcullis.Tls.TlsCompiler.ExpiryWarning)
                    {
                        context.Warning(clientPath + "." + (pfx ? "pfx" : "cert"), $"the client certificate of cluster '{cluster}' ({loaded.Certificate.Subject}) expires in {(int)Math.Floor(left.TotalDays)} day(s), on {UpstreamFiles.Format(loaded.NotAfter)}", "renew it; the gateway loads the new file without a restart");
                    }
                }
            }
        }

        if (failed) ok = false;
        return source;
    }

    internal static ClientCredentialsSettings? CompileCredentials(CompileContext context, string cluster, ClusterOptions options, string clusterPath)
    {
        if (options.Credentials?.ClientCredentials is not { } cc) return null;
        var path = clusterPath + ".credentials.clientCredentials";
        var ok = true;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            ok = false;
        }

        Uri? tokenUrl = null;
        if (string.IsNullOrWhiteSpace(cc.TokenUrl)) Fail(path, $"cluster '{cluster}': clientCredentials has no tokenUrl", "add tokenUrl: https://login.example.com/oauth2/token");
        else if (!CompileContext.IsHttpUrl(cc.TokenUrl) || !Uri.TryCreate(cc.TokenUrl, UriKind.Absolute, out tokenUrl)) Fail(path + ".tokenUrl", $"tokenUrl '{cc.TokenUrl}' is not an absolute http(s) URL", "e.g. tokenUrl: https://login.example.com/oauth2/token");
        else if (tokenUrl.Scheme == Uri.UriSchemeHttp && !tokenUrl.IsLoopback) context.Warning(path + ".tokenUrl", $"cluster '{cluster}' sends its client credentials over plain http", "use an https:// token endpoint");

        if (string.IsNullOrWhiteSpace(cc.ClientId)) Fail(path, $"cluster '{cluster}': clientCredentials has no clientId", "add clientId: the gateway's client id at the provider");

        if (cc.ClientSecret is not null)
        {
            Fail(path + ".clientSecret", "a client secret is never written in the configuration file", "put it in a file (clientSecretFile: secrets/client-secret) or an environment variable (clientSecretEnv: CLIENT_SECRET)");
        }

        var (authentication, secretFile, keyFile) = CompileClientAuthentication(context, cluster, cc, path, ref ok);

        if (cc.RefreshAt is < 0.1 or > 0.95 || double.IsNaN(cc.RefreshAt))
        {
            Fail(path + ".refreshAt", $"refreshAt {cc.RefreshAt} is outside 0.1 .. 0.95", "the fraction of a token's lifetime after which it is refreshed; e.g. refreshAt: 0.8");
        }

        if (string.IsNullOrWhiteSpace(cc.Header) || !cc.Header.All(c => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c)))
        {
            Fail(path + ".header", $"'{cc.Header}' is not an HTTP header name", "e.g. header: Authorization");
        }
        else if (cc.Header.Equals("Host", StringComparison.OrdinalIgnoreCase) || cc.Header.Equals("Cookie", StringComparison.OrdinalIgnoreCase) || cc.Header.StartsWith("X-Forwarded-", StringComparison.OrdinalIgnoreCase))
        {
            Fail(path + ".header", $"the token cannot be sent in '{cc.Header}'", "use Authorization or a header of your own");
        }

        if (cc.Timeout <= TimeSpan.Zero) Fail(path + ".timeout", "timeout must be greater than zero", "e.g. timeout: 10s");

        foreach (var destination in options.Destinations)
        {
            if (Uri.TryCreate(destination.Address, UriKind.Absolute, out var uri) && uri.Scheme == Uri.UriSchemeHttp && !uri.IsLoopback)
            {
                context.Warning(path, $"cluster '{cluster}' sends its upstream token over plain http to {destination.Address}", "use https:// destinations (with tls: if they need a private CA)");
                break;
            }
        }

        if (!ok || tokenUrl is null) return null;
        return new ClientCredentialsSettings(cluster, tokenUrl, cc.ClientId, authentication, secretFile, cc.ClientSecretEnv, keyFile, cc.PrivateKeyJwt?.Kid,
            cc.PrivateKeyJwt?.Algorithm ?? ClientAssertionAlgorithm.Rs256, cc.PrivateKeyJwt?.Audience, string.IsNullOrWhiteSpace(cc.Scope) ? null : cc.Scope, string.IsNullOrWhiteSpace(cc.Audience) ? null : cc.Audience,
            cc.RefreshAt, cc.Header, cc.Timeout);
    }

    /// <summary>How the gateway authenticates at the token endpoint: exactly one of a secret file, a secret variable or a private key JWT.</summary>
    private static ClientAuthenticationChoice CompileClientAuthentication(CompileContext context, string cluster, ClientCredentialsOptions cc, string path, ref bool ok)
    {
        var failed = false;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            failed = true;
        }

        var methods = (cc.ClientSecretFile is not null ? 1 : 0) + (cc.ClientSecretEnv is not null ? 1 : 0) + (cc.PrivateKeyJwt is not null ? 1 : 0);
        var authentication = ClientAuthentication.SecretFile;
        string? secretFile = null;
        string? keyFile = null;
        if (methods > 1)
        {
            Fail(path, $"cluster '{cluster}': give exactly one of clientSecretFile, clientSecretEnv and privateKeyJwt", "keep one");
        }
        else if (methods == 0)
        {
            if (cc.ClientSecret is null) Fail(path, $"cluster '{cluster}': clientCredentials has no client authentication", "add clientSecretFile: PATH, clientSecretEnv: VARIABLE or privateKeyJwt: { keyFile: PATH }");
        }
        else if (cc.ClientSecretEnv is { } variable)
        {
            authentication = ClientAuthentication.SecretEnv;
            if (string.IsNullOrEmpty(context.Environment(variable))) Fail(path + ".clientSecretEnv", $"environment variable '{variable}' is not set", "set it to the client secret before starting the gateway");
        }
        else if (cc.ClientSecretFile is { } file)
        {
            secretFile = context.Loaded.Resolve(file);
            if (UpstreamFiles.ReadSecret(secretFile, null, context.Environment, out var error) is null) Fail(path + ".clientSecretFile", error!, "paths are relative to the config file");
        }
        else if (cc.PrivateKeyJwt is { } jwt)
        {
            authentication = ClientAuthentication.PrivateKeyJwt;
            if (string.IsNullOrWhiteSpace(jwt.KeyFile))
            {
                Fail(path + ".privateKeyJwt", "privateKeyJwt has no keyFile", "add keyFile: secrets/gateway-assertion.key (a PEM private key)");
            }
            else
            {
                if (jwt.Audience is { } assertionAudience && !Uri.IsWellFormedUriString(assertionAudience, UriKind.Absolute))
                {
                    Fail(path + ".privateKeyJwt.audience", $"audience '{assertionAudience}' is not an absolute URI", "the provider's issuer identifier, e.g. https://login.example.com/");
                }

                keyFile = context.Loaded.Resolve(jwt.KeyFile);
                var credentials = UpstreamFiles.LoadSigningKey(keyFile, jwt.Kid, jwt.Algorithm, out var error);
                if (credentials is null) Fail(path + ".privateKeyJwt.keyFile", error!, jwt.Algorithm == ClientAssertionAlgorithm.Rs256 ? "an unencrypted PEM RSA key of 2048 bits or more (or set algorithm: es256 for a P-256 key)" : "an unencrypted PEM P-256 EC key (or set algorithm: rs256 for an RSA key)");
                else if (credentials.Key is Microsoft.IdentityModel.Tokens.AsymmetricSecurityKey asymmetric)
                {
                    switch (asymmetric)
                    {
                        case Microsoft.IdentityModel.Tokens.RsaSecurityKey { Rsa: { } rsa }: rsa.Dispose(); break;
                        case Microsoft.IdentityModel.Tokens.ECDsaSecurityKey { ECDsa: { } ecdsa }: ecdsa.Dispose(); break;
                    }
                }
            }
        }

        if (failed) ok = false;
        return new ClientAuthenticationChoice(authentication, secretFile, keyFile);
    }

    private sealed record ClientAuthenticationChoice(ClientAuthentication Authentication, string? SecretFile, string? KeyFile);

    /// <summary>Adds the keys that point YARP's HTTP client and the credentials transform at the cluster's upstream runtimes.</summary>
    internal static Dictionary<string, string> WithMetadata(Dictionary<string, string> metadata, UpstreamTlsSettings? tls, ClientCredentialsSettings? credentials)
    {
        if (tls is not null) metadata[UpstreamMetadata.Tls] = tls.Fingerprint;
        if (credentials is not null) metadata[UpstreamMetadata.Credentials] = credentials.Fingerprint;
        return metadata;
    }
}
