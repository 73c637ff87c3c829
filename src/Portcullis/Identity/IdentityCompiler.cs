using System.Security.Cryptography;
using System.Text;
using Portcullis.Configuration;

namespace Portcullis.Identity;

/// <summary>The credentials routes can ask for: token issuers, API keys and introspection endpoints.</summary>
internal sealed record CompiledCredentials(
    Dictionary<string, CompiledIssuer> Issuers,
    CompiledApiKeys? ApiKeys,
    Dictionary<string, CompiledIntrospector> Introspectors)
{
    /// <summary>The identity assertion's settings (with the fleet's shared keys when keysFile is set); null when off.</summary>
    public AssertionSettings? Assertion { get; init; }
}

/// <summary>Validation and compilation of the identity section (issuers, assertion, limits, API keys, introspection).</summary>
internal static class IdentityCompiler
{
    private static readonly string[] SafeAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"];
    private static readonly string[] SharedSecretAlgorithms = ["HS256", "HS384", "HS512"];

    internal static CompiledCredentials Compile(CompileContext context, IdentityOptions identity)
    {
        var issuers = new Dictionary<string, CompiledIssuer>(StringComparer.Ordinal);
        for (var i = 0; i < identity.Issuers.Count; i++)
        {
            var issuer = identity.Issuers[i];
            var path = $"identity.issuers[{i}]";
            if (string.IsNullOrWhiteSpace(issuer.Name))
            {
                context.Error(path, "issuer has no name", "add name: corp");
                continue;
            }

            if (issuers.ContainsKey(issuer.Name))
            {
                context.Error(path + ".name", $"duplicate issuer name '{issuer.Name}'", "give each issuer its own name");
                continue;
            }

            issuers[issuer.Name] = CompileIssuer(context, issuer, path);
        }

        ValidateAssertionAndLimits(context, identity);
        var apiKeys = identity.ApiKeys is { } apiKeyOptions ? CompileApiKeys(context, apiKeyOptions) : null;
        return new CompiledCredentials(issuers, apiKeys, CompileIntrospection(context, identity.Introspection))
        {
            Assertion = identity.Assertion is { } a
                ? new AssertionSettings(a.Header, a.Issuer, a.Lifetime, a.RotateEvery) { SharedKeys = a.KeysFile is { } file ? AssertionKeys.Load(context, file) : null }
                : null,
        };
    }

    private static CompiledIssuer CompileIssuer(CompileContext context, IssuerOptions issuer, string path)
    {
        var hasSecret = issuer.SharedSecretEnv is not null;
        var jwksFile = ValidateKeySource(context, issuer, path, hasSecret);
        if (issuer.Issuer is null && issuer.Authority is null)
        {
            context.Error(path, $"issuer '{issuer.Name}' needs `issuer:` (the expected iss claim): only discovery through `authority` can supply it", "e.g. issuer: https://login.example.com/");
        }

        if (issuer.Audiences.Count == 0)
        {
            context.Warning(path, $"issuer '{issuer.Name}' accepts tokens for any audience", "add audiences: [your-api]");
        }

        var algorithms = CompileAlgorithms(context, issuer.Algorithms, path, hasSecret);
        Microsoft.IdentityModel.Tokens.SecurityKey? sharedKey = null;
        if (issuer.SharedSecretEnv is { } secretEnv)
        {
            var secret = context.Environment(secretEnv);
            if (string.IsNullOrEmpty(secret)) context.Error(path + ".sharedSecretEnv", $"environment variable '{secretEnv}' is not set");
            else if (Encoding.UTF8.GetByteCount(secret) < 32) context.Error(path + ".sharedSecretEnv", "the shared secret is shorter than 32 bytes");
            else sharedKey = new Microsoft.IdentityModel.Tokens.SymmetricSecurityKey(Encoding.UTF8.GetBytes(secret));
        }

        var keys = issuer.Keys;
        if (keys.RefreshInterval <= TimeSpan.Zero) context.Error(path + ".keys.refreshInterval", "refreshInterval must be greater than zero");
        if (keys.Timeout <= TimeSpan.Zero) context.Error(path + ".keys.timeout", "timeout must be greater than zero");
        if (keys.StaleFor < TimeSpan.Zero) context.Error(path + ".keys.staleFor", "staleFor cannot be negative");
        // Above refreshInterval it is not an error: refreshInterval wins (a short refreshInterval in an old config stays valid).
        if (keys.MinRefreshInterval <= TimeSpan.Zero) context.Error(path + ".keys.minRefreshInterval", "minRefreshInterval must be greater than zero", "e.g. minRefreshInterval: 1m; it bounds how often a JWKS Cache-Control max-age may make the gateway fetch keys");
        return new CompiledIssuer
        {
            Name = issuer.Name,
            KeySource = new IssuerKeySource(issuer.Name, issuer.Authority, issuer.JwksUri, jwksFile,
                keys.RefreshInterval > TimeSpan.Zero ? keys.RefreshInterval : TimeSpan.FromMinutes(5), keys.UnknownKidRefreshInterval, keys.StaleFor, keys.Timeout, keys.MinRefreshInterval),
            ConfiguredIssuer = issuer.Issuer,
            Audiences = [.. issuer.Audiences],
            Algorithms = [.. algorithms],
            ClockSkew = issuer.ClockSkew,
            RequiredClaims = [.. issuer.RequiredClaims],
            RequireAccessTokenType = issuer.RequireAccessTokenType,
            Claims = issuer.Claims,
            SharedKey = sharedKey,
        };
    }

    /// <summary>Exactly one of authority, jwksUri or jwksFile (or none with a shared secret); returns the JWKS file's full path.</summary>
    private static string? ValidateKeySource(CompileContext context, IssuerOptions issuer, string path, bool hasSecret)
    {
        var sources = (issuer.Authority is null ? 0 : 1) + (issuer.JwksUri is null ? 0 : 1) + (issuer.JwksFile is null ? 0 : 1);
        if (sources != 1 && !(sources == 0 && hasSecret))
        {
            context.Error(path, $"issuer '{issuer.Name}' needs exactly one of authority, jwksUri or jwksFile (it has {sources})", "e.g. authority: https://login.example.com/");
        }

        if (issuer.Authority is not null && !CompileContext.IsHttpUrl(issuer.Authority)) context.Error(path + ".authority", $"authority '{issuer.Authority}' is not an absolute http(s) URL");
        foreach (var (key, url) in new[] { ("authority", issuer.Authority), ("jwksUri", issuer.JwksUri) })
        {
            // Keys fetched over plain HTTP from another host can be swapped in transit: warn, as for introspection.
            if (url is not null && Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme == Uri.UriSchemeHttp && !uri.IsLoopback)
            {
                context.Warning($"{path}.{key}", $"issuer '{issuer.Name}' fetches its keys over plain http from {uri.Host}", "use https:// so keys cannot be replaced in transit");
            }
        }
        if (issuer.JwksUri is not null && !CompileContext.IsHttpUrl(issuer.JwksUri)) context.Error(path + ".jwksUri", $"jwksUri '{issuer.JwksUri}' is not an absolute http(s) URL");
        if (issuer.JwksFile is null) return null;
        var jwksFile = context.Loaded.Resolve(issuer.JwksFile);
        if (!File.Exists(jwksFile)) context.Error(path + ".jwksFile", $"cannot read JWKS file '{issuer.JwksFile}' ({jwksFile}): file not found", "paths are relative to the config file");
        else
        {
            context.Files.Add(jwksFile);
            // In the fingerprint, so editing the key file reloads (and re-reads) the issuer's keys.
            context.FileContents.Add(File.ReadAllText(jwksFile));
        }

        return jwksFile;
    }

    private static List<string> CompileAlgorithms(CompileContext context, IReadOnlyList<string> configured, string path, bool hasSecret)
    {
        var algorithms = new List<string>();
        for (var a = 0; a < configured.Count; a++)
        {
            var algorithm = configured[a];
            if (SafeAlgorithms.Contains(algorithm)) algorithms.Add(algorithm);
            else if (SharedSecretAlgorithms.Contains(algorithm))
            {
                if (hasSecret) algorithms.Add(algorithm);
                else context.Error($"{path}.algorithms[{a}]", $"{algorithm} needs sharedSecretEnv", "HMAC algorithms are accepted only with an explicitly configured shared secret");
            }
            else if (string.Equals(algorithm, "none", StringComparison.OrdinalIgnoreCase))
            {
                context.Error($"{path}.algorithms[{a}]", "the 'none' algorithm is never accepted");
            }
            else
            {
                var suggestion = YamlConfigBinder.Suggest(algorithm, SafeAlgorithms.Concat(SharedSecretAlgorithms));
                context.Error($"{path}.algorithms[{a}]", $"unknown algorithm '{algorithm}'", suggestion is null ? null : $"did you mean '{suggestion}'?");
            }
        }

        return algorithms;
    }

    private static void ValidateAssertionAndLimits(CompileContext context, IdentityOptions identity)
    {
        if (identity.Assertion is { } assertion)
        {
            if (assertion.Lifetime <= TimeSpan.Zero) context.Error("identity.assertion.lifetime", "the assertion lifetime must be greater than zero", "e.g. lifetime: 60s");
            if (assertion.RotateEvery <= assertion.Lifetime) context.Error("identity.assertion.rotateEvery", "rotateEvery must be longer than the assertion lifetime", "e.g. rotateEvery: 24h");
            if (!assertion.JwksPath.StartsWith('/')) context.Error("identity.assertion.jwksPath", $"jwksPath '{assertion.JwksPath}' must start with '/'");
            if (string.IsNullOrWhiteSpace(assertion.Header)) context.Error("identity.assertion.header", "the assertion header name is empty");
        }

        if (identity.MaxTokenSize.Bytes < 1024) context.Error("identity.maxTokenSize", "identity.maxTokenSize must be at least 1KiB", "default 16KiB");
        if (identity.TokenCacheSize < 0) context.Error("identity.tokenCacheSize", "identity.tokenCacheSize cannot be negative");
    }

    /// <summary>The API key file (YAML, or JSON for large stores), reported at its own lines; watched and in the fingerprint.</summary>
    private static CompiledApiKeys? CompileApiKeys(CompileContext context, ApiKeyOptions apiKeyOptions)
    {
        var full = context.Loaded.Resolve(apiKeyOptions.File);
        context.Files.Add(full);
        if (!File.Exists(full))
        {
            context.Error("identity.apiKeys.file", $"cannot read API key file '{apiKeyOptions.File}' ({full}): file not found", "create it with `portcullis keys create --file " + apiKeyOptions.File + " --consumer NAME`");
            return null;
        }

        var content = File.ReadAllBytes(full);
        // Its hash, not its text, in the fingerprint: hashes of keys are not secrets, but 30 MB need not be copied.
        context.FileContents.Add("apikeys:" + Convert.ToHexStringLower(SHA256.HashData(content)));
        var keyDiagnostics = new List<ConfigDiagnostic>();
        var (_, keys) = ApiKeyFileReader.Read(full, content, apiKeyOptions, keyDiagnostics);
        foreach (var d in keyDiagnostics) context.Add(d);
        return keys;
    }

    private static Dictionary<string, CompiledIntrospector> CompileIntrospection(CompileContext context, IReadOnlyList<IntrospectionOptions> all)
    {
        var result = new Dictionary<string, CompiledIntrospector>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < all.Count; i++)
        {
            var options = all[i];
            var path = $"identity.introspection[{i}]";
            if (string.IsNullOrWhiteSpace(options.Name))
            {
                context.Error(path, "introspector has no name", "add name: corp-introspection");
                continue;
            }

            if (!seen.Add(options.Name))
            {
                context.Error(path + ".name", $"duplicate introspector name '{options.Name}'", "give each introspector its own name");
                continue;
            }

            var ok = true;
            Uri? endpoint = null;
            if (string.IsNullOrWhiteSpace(options.Endpoint))
            {
                context.Error(path, $"introspector '{options.Name}' has no endpoint", "add endpoint: https://login.example.com/oauth2/introspect");
                ok = false;
            }
            else if (!CompileContext.IsHttpUrl(options.Endpoint) || !Uri.TryCreate(options.Endpoint, UriKind.Absolute, out endpoint))
            {
                context.Error(path + ".endpoint", $"introspection endpoint '{options.Endpoint}' is not an absolute http(s) URL", "e.g. endpoint: https://login.example.com/oauth2/introspect");
                ok = false;
            }
            else if (endpoint.Scheme == Uri.UriSchemeHttp && !endpoint.IsLoopback)
            {
                context.Warning(path + ".endpoint", $"introspector '{options.Name}' sends its client secret and tokens over plain http", "use an https:// endpoint");
            }

            if (string.IsNullOrWhiteSpace(options.ClientId))
            {
                context.Error(path, $"introspector '{options.Name}' has no clientId", "add clientId: the gateway's client id at the provider");
                ok = false;
            }

            var secret = context.ResolveClientSecret(path, $"introspector '{options.Name}'", options.ClientSecretEnv, options.ClientSecretFile);
            if (secret is null) ok = false;

            if (options.CacheTtl < TimeSpan.Zero) context.Error(path + ".cacheTtl", "cacheTtl cannot be negative", "0 disables caching of active answers");
            if (options.NegativeTtl < TimeSpan.Zero) context.Error(path + ".negativeTtl", "negativeTtl cannot be negative", "0 disables caching of inactive answers");
            if (options.Timeout <= TimeSpan.Zero) context.Error(path + ".timeout", "timeout must be greater than zero", "e.g. timeout: 5s");
            if (!ok) continue;

            var claims = options.Claims;
            var scope = string.Join("\n", options.Name, endpoint!.AbsoluteUri, options.ClientId, claims.Subject, string.Join(',', claims.Consumer),
                claims.ConsumerGroup ?? "", claims.Groups, string.Join(',', claims.Scopes));
            result[options.Name] = new CompiledIntrospector
            {
                Name = options.Name,
                Endpoint = endpoint,
                ClientId = options.ClientId,
                BasicCredentials = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(Uri.EscapeDataString(options.ClientId) + ":" + Uri.EscapeDataString(secret!))),
                CacheTtl = options.CacheTtl,
                NegativeTtl = options.NegativeTtl,
                Timeout = options.Timeout,
                Claims = claims,
                CacheScope = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(scope)))[..16],
            };
        }

        return result;
    }
}
