using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Upstream;

/// <summary>
/// An HTTPS backend on 127.0.0.1 (Kestrel) with a test-made certificate. It records the SNI names of its
/// handshakes and the SHA-256 fingerprints of the client certificates presented; with
/// <c>requireClientCertificate</c> it refuses handshakes without one. With <c>closeConnections</c> every
/// answer closes its connection, so each request is a new connection (a new handshake).
/// </summary>
internal sealed class TlsBackend : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TlsBackend(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    public string Url => $"https://127.0.0.1:{Port}";

    public ConcurrentQueue<string?> ServerNames { get; } = new();

    /// <summary>Client certificate fingerprints, one per handshake that presented one.</summary>
    public ConcurrentQueue<string> ClientCertificates { get; } = new();

    public int Requests;

    public static async Task<TlsBackend> StartAsync(X509Certificate2 certificate, bool requireClientCertificate = false, bool closeConnections = false)
    {
        var port = Ports.GetFree();
        TlsBackend? backend = null;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(options => options.Listen(IPAddress.Loopback, port, listen => listen.UseHttps(new HttpsConnectionAdapterOptions
        {
            ServerCertificateSelector = (_, name) =>
            {
                backend!.ServerNames.Enqueue(name);
                return certificate;
            },
            ClientCertificateMode = requireClientCertificate ? ClientCertificateMode.RequireCertificate : ClientCertificateMode.NoCertificate,
            ClientCertificateValidation = (client, _, _) =>
            {
                backend!.ClientCertificates.Enqueue(client.GetCertHashString(HashAlgorithmName.SHA256));
                return true;
            },
        })));
        var app = builder.Build();
        app.Run(async context =>
        {
            Interlocked.Increment(ref backend!.Requests);
            if (closeConnections) context.Response.Headers.Connection = "close";
            await context.Response.WriteAsync("backend " + context.Request.Path);
        });
        backend = new TlsBackend(app, port);
        await app.StartAsync();
        return backend;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>Certificates made by the tests (ECDSA P-256 with CertificateRequest) and their PEM forms.</summary>
internal static class TestPki
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    public static X509Certificate2 Ca(string name) => Portcullis.Tls.DevCertificates.CreateCa(name, Now.AddDays(-1), Now.AddDays(30));

    public static X509Certificate2 Server(X509Certificate2 ca, params string[] hosts) =>
        Portcullis.Tls.DevCertificates.CreateServer(ca, hosts, Now.AddDays(-1), Now.AddDays(30));

    public static X509Certificate2 Client(X509Certificate2 ca, string name, DateTimeOffset? notAfter = null) =>
        Portcullis.Tls.DevCertificates.CreateClient(ca, name, null, Now.AddDays(-1), notAfter ?? Now.AddDays(30));

    public static string Pem(X509Certificate2 certificate) => Portcullis.Tls.DevCertificates.CertificatePem(certificate);

    public static string Key(X509Certificate2 certificate) => Portcullis.Tls.DevCertificates.KeyPem(certificate);

    public static string Fingerprint(X509Certificate2 certificate) => certificate.GetCertHashString(HashAlgorithmName.SHA256);

    public static string SpkiPin(X509Certificate2 certificate) => Convert.ToBase64String(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));
}
