// A bare YARP proxy: the floor of Portcullis's own stack in bench/run.sh.
// One catch-all route to one cluster with one destination, configured from code; logging set up the way
// `portcullis run` sets it up (single-line console, Microsoft and Yarp at Warning) so that the
// comparison measures the gateway pipeline, not logging.
//   BAREYARP_PORT            loopback port to listen on, HTTP/1.1 (required)
//   BAREYARP_DESTINATION     upstream base URL, e.g. http://127.0.0.1:8081 (required)
//   BAREYARP_H2_PORT         optional: a second loopback port serving cleartext HTTP/2 (prior knowledge)
//   BAREYARP_TLS_PORT        optional: a loopback port serving HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with
//                            BAREYARP_TLS_CERT and BAREYARP_TLS_KEY (PEM files; both required then)
//   BAREYARP_JWT_PUBLIC_KEY  optional: PEM file of an RSA public key. Turns on the "bare YARP + ASP.NET
//                            JwtBearer" mode: a second route, /jwt/{**rest}, requires a bearer JWT (RS256)
//                            signed by that key, with BAREYARP_JWT_ISSUER and BAREYARP_JWT_AUDIENCE
//                            (both required then) and an unexpired exp. Other paths stay anonymous.
using System.Net;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.IdentityModel.Tokens;
using Yarp.ReverseProxy.Configuration;

// The same runtime setting `portcullis run` makes (src/Portcullis.Cli/Program.cs): socket completions
// inline on the epoll threads. Set before the first socket; an explicit value in the environment wins.
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}

var port = int.Parse(Environment.GetEnvironmentVariable("BAREYARP_PORT")
    ?? throw new InvalidOperationException("BAREYARP_PORT is not set"), System.Globalization.CultureInfo.InvariantCulture);
var destination = Environment.GetEnvironmentVariable("BAREYARP_DESTINATION")
    ?? throw new InvalidOperationException("BAREYARP_DESTINATION is not set");
var h2Port = Environment.GetEnvironmentVariable("BAREYARP_H2_PORT") is { Length: > 0 } h2
    ? int.Parse(h2, System.Globalization.CultureInfo.InvariantCulture)
    : (int?)null;
var tlsPort = Environment.GetEnvironmentVariable("BAREYARP_TLS_PORT") is { Length: > 0 } tls
    ? int.Parse(tls, System.Globalization.CultureInfo.InvariantCulture)
    : (int?)null;
var jwtKeyFile = Environment.GetEnvironmentVariable("BAREYARP_JWT_PUBLIC_KEY") is { Length: > 0 } k ? k : null;

// With a single authentication scheme ASP.NET Core makes it the default, and UseAuthentication would then
// run the JwtBearer handler on every request, anonymous routes included. Only the /jwt route asks for it.
AppContext.SetSwitch("Microsoft.AspNetCore.Authentication.SuppressAutoDefaultScheme", true);

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(options => options.SingleLine = true);
builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
builder.Logging.AddFilter("Yarp", LogLevel.Warning);
builder.WebHost.ConfigureKestrel(options =>
{
    options.AddServerHeader = false;
    options.Listen(IPAddress.Loopback, port);
    if (h2Port is { } p) options.Listen(IPAddress.Loopback, p, listen => listen.Protocols = HttpProtocols.Http2);
    if (tlsPort is { } t)
    {
        var certificate = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(
            Environment.GetEnvironmentVariable("BAREYARP_TLS_CERT") ?? throw new InvalidOperationException("BAREYARP_TLS_CERT is not set"),
            Environment.GetEnvironmentVariable("BAREYARP_TLS_KEY") ?? throw new InvalidOperationException("BAREYARP_TLS_KEY is not set"));
        options.Listen(IPAddress.Loopback, t, listen =>
        {
            listen.Protocols = HttpProtocols.Http1AndHttp2;
            listen.UseHttps(certificate);
        });
    }
});

List<RouteConfig> routes =
[
    new RouteConfig
    {
        RouteId = "all",
        ClusterId = "origin",
        Match = new RouteMatch { Path = "{**catch-all}" },
    },
];

if (jwtKeyFile is not null)
{
    var issuer = Environment.GetEnvironmentVariable("BAREYARP_JWT_ISSUER") ?? throw new InvalidOperationException("BAREYARP_JWT_ISSUER is not set");
    var audience = Environment.GetEnvironmentVariable("BAREYARP_JWT_AUDIENCE") ?? throw new InvalidOperationException("BAREYARP_JWT_AUDIENCE is not set");
    var rsa = RSA.Create();
    rsa.ImportFromPem(File.ReadAllText(jwtKeyFile));
    builder.Services.AddAuthentication().AddJwtBearer(options =>
    {
        options.MapInboundClaims = false;
        options.TokenValidationParameters = new TokenValidationParameters
        {
            ValidIssuer = issuer,
            ValidAudience = audience,
            ValidAlgorithms = [SecurityAlgorithms.RsaSha256],
            IssuerSigningKey = new RsaSecurityKey(rsa),
            RequireExpirationTime = true,
            RequireSignedTokens = true,
            ClockSkew = TimeSpan.FromSeconds(30),
        };
    });
    builder.Services.AddAuthorizationBuilder().AddPolicy("jwt", policy => policy
        .AddAuthenticationSchemes(JwtBearerDefaults.AuthenticationScheme)
        .RequireAuthenticatedUser());
    routes.Add(new RouteConfig
    {
        RouteId = "jwt",
        ClusterId = "origin",
        AuthorizationPolicy = "jwt",
        Match = new RouteMatch { Path = "/jwt/{**rest}" },
    });
}

builder.Services.AddReverseProxy().LoadFromMemory(
    routes,
    [
        new ClusterConfig
        {
            ClusterId = "origin",
            Destinations = new Dictionary<string, DestinationConfig>
            {
                ["d1"] = new DestinationConfig { Address = destination },
            },
        },
    ]);

var app = builder.Build();
if (jwtKeyFile is not null)
{
    app.UseAuthentication();
    app.UseAuthorization();
}

app.MapReverseProxy();
app.Run();
