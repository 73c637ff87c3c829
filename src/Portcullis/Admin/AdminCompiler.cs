using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using Portcullis.Configuration;
using Portcullis.Identity;
using Portcullis.Pipeline;

namespace Portcullis.Admin;

/// <summary>Validation and compilation of `admin.auth`, and the rule that an admin listener off loopback needs it.</summary>
internal static class AdminCompiler
{
    private const int MinAdminTokenLength = 16;

    /// <param name="listeners">The compiled listeners: where the admin listener is bound decides what admin.auth must guard.</param>
    internal static CompiledAdminAuth? Compile(CompileContext context, AdminAuthOptions? auth, List<ListenerBinding> listeners)
    {
        var adminIndex = IndexOfAdminListener(context.Config);
        var binding = listeners.FirstOrDefault(l => l.Admin);
        if (auth is null)
        {
            if (binding is { Address.IsLoopback: false })
            {
                context.Error($"listeners[{adminIndex}].address",
                    $"the admin listener on {binding.Address} is reachable from other hosts, and admin.auth is not configured: anyone who reaches it could reload, drain and read the config",
                    "bind it to loopback (127.0.0.1:PORT), or add admin: { auth: { tokens: [{ name: ops, scope: admin, env: PORTCULLIS_ADMIN_TOKEN }] } }");
            }

            return null;
        }

        const string path = "admin.auth";
        var ok = true;
        if (adminIndex < 0) context.Warning(path, "admin.auth is set but no listener has admin: true", "add admin: true to a listener on loopback, e.g. 127.0.0.1:9901");

        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        bool NameOk(string name, string at)
        {
            if (string.IsNullOrWhiteSpace(name))
            {
                context.Error(at, "has no name", "add name: ops (the audit log names the actor by it)");
                return false;
            }

            if (names.TryGetValue(name, out var first))
            {
                context.Error(at + ".name", $"duplicate admin credential name '{name}' (first at {first})", "give each token and certificate rule its own name");
                return false;
            }

            names[name] = at;
            return true;
        }

        var tokens = new List<AdminToken>();
        for (var i = 0; i < auth.Tokens.Count; i++)
        {
            var token = auth.Tokens[i];
            var at = $"{path}.tokens[{i}]";
            ok &= NameOk(token.Name, at);
            var hash = ResolveAdminToken(context, at, token);
            if (hash is null) ok = false;
            else tokens.Add(new AdminToken(token.Name, token.Scope, hash));
        }

        var certificates = CompileCertificateRules(context, auth, path, adminIndex, NameOk, ref ok);

        if (auth.Tokens.Count == 0 && auth.ClientCertificates.Count == 0)
        {
            context.Error(path, "admin.auth accepts no credential", "add tokens: [{ name: ops, scope: admin, env: PORTCULLIS_ADMIN_TOKEN }] or clientCertificates");
            ok = false;
        }

        var metricsPath = context.Config.Observability.Metrics.Enabled ? context.Config.Observability.Metrics.Path : null;
        for (var i = 0; i < auth.Open.Count; i++)
        {
            var open = auth.Open[i];
            if (open is "/healthz" or "/readyz" || open == metricsPath) continue;
            context.Error($"{path}.open[{i}]", $"'{open}' cannot be open", "only /healthz, /readyz and the metrics path" + (metricsPath is null ? "" : $" ({metricsPath})") + " may be answered without credentials");
            ok = false;
        }

        if (tokens.Count > 0 && binding is { Address.IsLoopback: false, Tls: null })
        {
            context.Warning($"listeners[{adminIndex}].address", "admin bearer tokens cross the network in clear text to this admin listener", "give the admin listener tls, or bind it to loopback");
        }

        return ok ? new CompiledAdminAuth { Tokens = [.. tokens], Certificates = [.. certificates], Open = auth.Open.ToFrozenSet(StringComparer.Ordinal) } : null;
    }

    /// <summary>Client-certificate rules: only on an admin listener that asks for certificates, each with claims.</summary>
    private static List<AdminCertificateRule> CompileCertificateRules(CompileContext context, AdminAuthOptions auth, string path, int adminIndex, Func<string, string, bool> nameOk, ref bool ok)
    {
        var certificates = new List<AdminCertificateRule>();
        if (auth.ClientCertificates.Count > 0)
        {
            var mode = adminIndex < 0 ? ClientCertificateMode.None : context.Config.Listeners[adminIndex].Tls?.ClientCertificate.Mode ?? ClientCertificateMode.None;
            if (mode == ClientCertificateMode.None)
            {
                context.Error(path + ".clientCertificates", "clientCertificates needs an admin listener that asks for client certificates",
                    "add tls: { certificates: [...], clientCertificate: { mode: required, ca: certs/admin-ca.pem } } to the admin listener");
                ok = false;
            }
        }

        for (var i = 0; i < auth.ClientCertificates.Count; i++)
        {
            var rule = auth.ClientCertificates[i];
            var at = $"{path}.clientCertificates[{i}]";
            ok &= nameOk(rule.Name, at);
            if (rule.Claims.Count == 0)
            {
                context.Error(at, $"client certificate rule '{rule.Name}' has no claims, so it would allow every certificate the CA issued",
                    "e.g. claims: [{ claim: cert.cn, is: ops }] (to allow any, say so: [{ claim: cert.subject, exists: true }])");
                ok = false;
                continue;
            }

            for (var j = 0; j < rule.Claims.Count; j++) ok &= CertificateClaimsOnly(context, rule.Claims[j], $"{at}.claims[{j}]");
            var compiled = new ClaimRule { All = [.. rule.Claims.Select((r, j) => RouteAuthCompiler.CompileRule(context, r, $"{at}.claims[{j}]"))] };
            certificates.Add(new AdminCertificateRule(rule.Name, rule.Scope, compiled));
        }

        return certificates;
    }

    private static int IndexOfAdminListener(PortcullisConfig config)
    {
        for (var i = 0; i < config.Listeners.Count; i++)
        {
            if (config.Listeners[i].Admin) return i;
        }

        return -1;
    }

    // A typo such as cert.CN would make a rule that never holds (or, with exists: false, always holds).
    private static bool CertificateClaimsOnly(CompileContext context, ClaimRuleOptions rule, string at)
    {
        var ok = true;
        if (rule.Claim is { } claim && !ClientCertificateIdentity.ClaimNames.Contains(claim))
        {
            context.Error(at + ".claim", $"'{claim}' is not a client-certificate claim", "use " + string.Join(", ", ClientCertificateIdentity.ClaimNames.Order(StringComparer.Ordinal)));
            ok = false;
        }

        for (var i = 0; i < (rule.Any?.Count ?? 0); i++) ok &= CertificateClaimsOnly(context, rule.Any![i], $"{at}.any[{i}]");
        for (var i = 0; i < (rule.All?.Count ?? 0); i++) ok &= CertificateClaimsOnly(context, rule.All![i], $"{at}.all[{i}]");
        return ok;
    }

    /// <summary>
    /// The SHA-256 of an admin token read from exactly one of `env` or `file`; null after reporting what is
    /// wrong. The token itself is dropped here. A token file is watched, and its hash goes into the
    /// fingerprint, so replacing the file reloads and the old token stops working.
    /// </summary>
    private static byte[]? ResolveAdminToken(CompileContext context, string at, AdminTokenOptions token)
    {
        string? secret;
        string source;
        if (token.Env is not null && token.File is not null)
        {
            context.Error(at + ".file", $"admin token '{token.Name}' has both env and file", "keep one");
            return null;
        }

        if (token.Env is not null)
        {
            secret = context.Environment(token.Env);
            source = $"environment variable '{token.Env}'";
            if (string.IsNullOrEmpty(secret))
            {
                context.Error(at + ".env", $"environment variable '{token.Env}' (admin token '{token.Name}') is not set or empty", "set it before starting the gateway, e.g. export " + token.Env + "=$(openssl rand -hex 32)");
                return null;
            }
        }
        else if (token.File is not null)
        {
            var full = context.Loaded.Resolve(token.File);
            source = $"file '{token.File}'";
            try
            {
                secret = File.ReadAllText(full).TrimEnd('\r', '\n');
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                context.Error(at + ".file", $"cannot read admin token file '{token.File}' ({full}): {ConfigLoader.Describe(ex)}", "paths are relative to the config file");
                return null;
            }

            context.Files.Add(full);
            context.FileContents.Add("secret:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret))));
            if (secret.Length == 0)
            {
                context.Error(at + ".file", $"admin token file '{token.File}' ({full}) is empty", "write the token into it, e.g. openssl rand -hex 32 > " + token.File);
                return null;
            }
        }
        else
        {
            context.Error(at, $"admin token '{token.Name}' has no source", "add env: PORTCULLIS_ADMIN_TOKEN (or file: secrets/admin-token)");
            return null;
        }

        var key = token.Env is not null ? ".env" : ".file";
        if (secret.Length < MinAdminTokenLength || secret.Length > AdminAuthenticator.MaxTokenLength)
        {
            context.Error(at + key, $"the admin token in {source} has {secret.Length} characters; it needs {MinAdminTokenLength} to {AdminAuthenticator.MaxTokenLength}", "generate one: openssl rand -hex 32");
            return null;
        }

        if (secret.Any(c => c is <= ' ' or > '~'))
        {
            context.Error(at + key, $"the admin token in {source} has spaces, control or non-ASCII characters", "use printable ASCII, e.g. openssl rand -hex 32");
            return null;
        }

        return AdminAuthenticator.Hash(secret);
    }
}
