using System.CommandLine;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace ChaosKit;

/// <summary>`chaoskit jwks|mint|slow`: the IdP keys, tokens and slow upstream of bench/chaos.sh.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var jwksKeys = new Option<string[]>("--key") { Description = "PEM_FILE:KID of an RSA key to publish (repeatable; none gives an empty key set).", AllowMultipleArgumentsPerToken = true };
        var jwks = new Command("jwks", "Print a JWKS with the public halves of the given RSA keys.") { jwksKeys };
        jwks.SetAction(result => PrintJwks(result.GetValue(jwksKeys) ?? []));

        var mintKey = new Option<string>("--key") { Description = "PEM file of the RSA private key.", Required = true };
        var mintKid = new Option<string>("--kid") { Description = "kid header.", Required = true };
        var mintIss = new Option<string>("--iss") { Description = "iss claim.", Required = true };
        var mintAud = new Option<string>("--aud") { Description = "aud claim.", Required = true };
        var mintSub = new Option<string>("--sub") { Description = "sub claim.", DefaultValueFactory = _ => "chaos-user" };
        var mintLifetime = new Option<int>("--lifetime") { Description = "Seconds until exp.", DefaultValueFactory = _ => 7200 };
        var mint = new Command("mint", "Print an RS256 JWT signed with the key.") { mintKey, mintKid, mintIss, mintAud, mintSub, mintLifetime };
        mint.SetAction(result => Mint(result.GetValue(mintKey)!, result.GetValue(mintKid)!, result.GetValue(mintIss)!,
            result.GetValue(mintAud)!, result.GetValue(mintSub)!, result.GetValue(mintLifetime)));

        var slowPort = new Option<int>("--port") { Description = "Loopback port.", Required = true };
        var slowDelay = new Option<int>("--delay-ms") { Description = "Delay before every answer except /healthz.", DefaultValueFactory = _ => 3000 };
        var slow = new Command("slow", "Run an upstream on 127.0.0.1 that answers 200 after a delay.") { slowPort, slowDelay };
        slow.SetAction(result => RunSlow(result.GetValue(slowPort), result.GetValue(slowDelay)));

        return new RootCommand("bench/chaos.sh helpers") { jwks, mint, slow }.Parse(args).Invoke();
    }

    private static RsaSecurityKey LoadKey(string pemFile, string kid)
    {
        var rsa = RSA.Create();
        rsa.ImportFromPem(File.ReadAllText(pemFile));
        return new RsaSecurityKey(rsa) { KeyId = kid };
    }

    private static int PrintJwks(string[] keys)
    {
        var list = new List<Dictionary<string, string>>();
        foreach (var spec in keys)
        {
            var colon = spec.LastIndexOf(':');
            var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(LoadKey(spec[..colon], spec[(colon + 1)..]));
            // only the public members: a JWKS never carries d, p, q ...
            list.Add(new() { ["kty"] = "RSA", ["use"] = "sig", ["alg"] = "RS256", ["kid"] = jwk.Kid, ["n"] = jwk.N, ["e"] = jwk.E });
        }

        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["keys"] = list }));
        return 0;
    }

    private static int Mint(string pemFile, string kid, string iss, string aud, string sub, int lifetime)
    {
        var now = DateTime.UtcNow;
        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = iss,
            Audience = aud,
            Claims = new Dictionary<string, object> { ["sub"] = sub, ["scope"] = "chaos" },
            IssuedAt = now,
            NotBefore = now.AddSeconds(-5),
            Expires = now.AddSeconds(lifetime),
            SigningCredentials = new SigningCredentials(LoadKey(pemFile, kid), SecurityAlgorithms.RsaSha256),
        });
        Console.WriteLine(token);
        return 0;
    }

    private static int RunSlow(int port, int delayMs)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(o => o.Listen(IPAddress.Loopback, port));
        var app = builder.Build();
        app.Run(async context =>
        {
            if (context.Request.Path != "/healthz")
            {
                // the client going away (a gateway timeout) ends the wait early
                try { await Task.Delay(delayMs, context.RequestAborted); } catch (OperationCanceledException) { return; }
            }

            context.Response.ContentType = "text/plain";
            await context.Response.WriteAsync("slow ok\n");
        });
        app.Run();
        return 0;
    }
}
