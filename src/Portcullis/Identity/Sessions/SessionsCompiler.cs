using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using Portcullis.Configuration;

namespace Portcullis.Identity.Sessions;

/// <summary>Validation and compilation of identity.sessions (browser sign-in) and session routes.</summary>
internal static class SessionsCompiler
{
    private const string DefaultCallbackPrefix = "/.portcullis/callback/";

    internal static CompiledSessions? Compile(CompileContext context, SessionsOptions options)
    {
        const string root = "identity.sessions";
        var providers = new Dictionary<string, CompiledSessionProvider>(StringComparer.Ordinal);
        var callbackPaths = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var fingerprint = new StringBuilder();
        if (options.Providers.Count == 0) context.Error(root + ".providers", "identity.sessions has no providers", "add providers: [{ name: corp, authority: https://login.example.com/, clientId: gateway, clientSecretEnv: OIDC_SECRET }]");

        for (var i = 0; i < options.Providers.Count; i++)
        {
            var provider = options.Providers[i];
            var path = $"{root}.providers[{i}]";
            if (string.IsNullOrWhiteSpace(provider.Name))
            {
                context.Error(path, "session provider has no name", "add name: corp");
                continue;
            }

            if (providers.ContainsKey(provider.Name) || options.Providers.Take(i).Any(p => p.Name == provider.Name))
            {
                context.Error(path + ".name", $"duplicate session provider name '{provider.Name}'", "give each provider its own name");
                continue;
            }

            if (CompileProvider(context, options, provider, path, callbackPaths, fingerprint) is { } compiled) providers[provider.Name] = compiled;
        }

        var cookie = options.Cookie;
        ValidateCookie(context, cookie);
        if (cookie.IdleTimeout <= TimeSpan.Zero) context.Error(root + ".cookie.idleTimeout", "idleTimeout must be greater than zero", "e.g. idleTimeout: 1h");
        if (cookie.AbsoluteTimeout <= TimeSpan.Zero) context.Error(root + ".cookie.absoluteTimeout", "absoluteTimeout must be greater than zero", "e.g. absoluteTimeout: 12h");
        else if (cookie.AbsoluteTimeout < cookie.IdleTimeout) context.Warning(root + ".cookie.absoluteTimeout", "absoluteTimeout is shorter than idleTimeout, so sessions end at absoluteTimeout", "keep absoluteTimeout above idleTimeout");
        if (options.MaxSessions < 1) context.Error(root + ".maxSessions", "maxSessions must be at least 1", "e.g. maxSessions: 100000");
        if (options.SignInsPerMinute < 0) context.Error(root + ".signInsPerMinute", "signInsPerMinute cannot be negative", "e.g. signInsPerMinute: 30 (0 turns the limit off)");
        if (options.RefreshBefore < TimeSpan.Zero) context.Error(root + ".refreshBefore", "refreshBefore cannot be negative", "e.g. refreshBefore: 1m");
        if (!options.LogoutPath.StartsWith('/') || options.LogoutPath.StartsWith("//", StringComparison.Ordinal)) context.Error(root + ".logoutPath", $"logoutPath '{options.LogoutPath}' must be a path starting with a single '/'");

        var redis = context.Config.Stores.Redis;
        if (options.Store == SessionStoreKind.Redis && string.IsNullOrWhiteSpace(redis?.Connection))
        {
            context.Error(root + ".store", "store: redis needs a Redis connection, but stores.redis.connection is not set (or empty)", "add stores: { redis: { connection: \"127.0.0.1:6379\" } } or use store: local");
        }

        var keyRing = KeyRingCompiler.Compile(context, options);
        fingerprint.Append(cookie).Append('\n').Append(options.Store).Append('\n').Append(options.Store == SessionStoreKind.Redis ? redis?.Connection + "|" + redis?.KeyPrefix + "|" + redis?.Timeout + "|" + redis?.RetryAfter : "")
            .Append('\n').Append(keyRing?.GetCertHashString(HashAlgorithmName.SHA256))
            .Append('\n').Append(options.MaxSessions).Append('\n').Append(options.LogoutPath).Append('\n').Append(options.RefreshBefore)
            .Append('\n').Append(options.SignInsPerMinute);
        return new CompiledSessions
        {
            Providers = providers.ToFrozenDictionary(StringComparer.Ordinal),
            CookieName = cookie.Name,
            CookieDomain = cookie.Domain,
            IdleTimeout = cookie.IdleTimeout,
            AbsoluteTimeout = cookie.AbsoluteTimeout,
            Store = options.Store,
            MaxSessions = Math.Max(1, options.MaxSessions),
            LogoutPath = options.LogoutPath,
            RefreshBefore = options.RefreshBefore,
            SignInsPerMinute = Math.Max(0, options.SignInsPerMinute),
            RedisConnection = options.Store == SessionStoreKind.Redis ? redis?.Connection : null,
            Redis = options.Store == SessionStoreKind.Redis ? redis : null,
            KeyRingCertificate = keyRing,
            RedisKeyPrefix = redis?.KeyPrefix ?? "portcullis:",
            Fingerprint = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(fingerprint.ToString()))),
        };
    }

    /// <summary>One sign-in provider; null after reporting what is wrong. Appends what identifies it to the fingerprint.</summary>
    private static CompiledSessionProvider? CompileProvider(CompileContext context, SessionsOptions options, SessionProviderOptions provider, string path, HashSet<string> callbackPaths, StringBuilder fingerprint)
    {
        var ok = true;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            ok = false;
        }

        if (!IsUrlSafeName(provider.Name)) Fail(path + ".name", $"session provider name '{provider.Name}' may use only letters, digits, '-' and '_'", "it becomes part of the callback path and cookie name");
        Uri? authority = null;
        if (string.IsNullOrWhiteSpace(provider.Authority)) Fail(path, $"session provider '{provider.Name}' has no authority", "add authority: https://login.example.com/");
        else if (!CompileContext.IsHttpUrl(provider.Authority) || !Uri.TryCreate(provider.Authority, UriKind.Absolute, out authority)) Fail(path + ".authority", $"authority '{provider.Authority}' is not an absolute http(s) URL");
        else if (authority.Scheme == Uri.UriSchemeHttp && !authority.IsLoopback)
        {
            context.Warning(path + ".authority", $"session provider '{provider.Name}' is reached over plain http at {authority.Host}", "use https:// so codes, tokens and keys cannot be read or replaced in transit");
        }

        if (string.IsNullOrWhiteSpace(provider.ClientId)) Fail(path, $"session provider '{provider.Name}' has no clientId", "add clientId: the gateway's client id at the provider");

        string? secret = null;
        if (provider.PublicClient)
        {
            // A public client has no secret to keep: one configured anyway means the provider expects a confidential client.
            if (provider.ClientSecretEnv is not null) Fail(path + ".clientSecretEnv", $"session provider '{provider.Name}' is a public client (publicClient: true) but has a client secret", "remove publicClient: true for a confidential client, or remove the secret");
            else if (provider.ClientSecretFile is not null) Fail(path + ".clientSecretFile", $"session provider '{provider.Name}' is a public client (publicClient: true) but has a client secret", "remove publicClient: true for a confidential client, or remove the secret");
        }
        else
        {
            secret = context.ResolveClientSecret(path, $"session provider '{provider.Name}'", provider.ClientSecretEnv, provider.ClientSecretFile);
            if (secret is null) ok = false;
        }

        var authorizationParameters = CompileAuthorizationParameters(context, provider.AuthorizationParameters, path + ".authorizationParameters");
        if (authorizationParameters is null) ok = false;

        if (!provider.Scopes.Contains("openid", StringComparer.Ordinal)) Fail(path + ".scopes", "scopes must include openid", "e.g. scopes: [openid, profile, email]");
        var callback = provider.CallbackPath ?? DefaultCallbackPrefix + provider.Name;
        if (!callback.StartsWith('/') || callback.StartsWith("//", StringComparison.Ordinal) || callback.Contains('?') || callback.Contains('#'))
        {
            Fail(path + ".callbackPath", $"callbackPath '{callback}' must be a path starting with a single '/'", "e.g. callbackPath: /.portcullis/callback/" + provider.Name);
        }
        else if (!callbackPaths.Add(callback))
        {
            Fail(path + ".callbackPath", $"callbackPath '{callback}' is used by another provider", "give each provider its own callback path");
        }

        if (!ok) return null;
        fingerprint.Append(provider.Name).Append('\n').Append(authority).Append('\n').Append(provider.ClientId).Append('\n')
            .Append(secret is null ? "public" : Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)))).Append('\n')
            .Append(string.Join(' ', provider.Scopes)).Append('\n').Append(callback).Append('\n')
            .AppendJoin(' ', authorizationParameters!.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Key + "=" + p.Value)).Append('\n');
        return new CompiledSessionProvider
        {
            Name = provider.Name,
            Authority = authority!,
            ClientId = provider.ClientId,
            ClientSecret = secret,
            AuthorizationParameters = authorizationParameters!,
            Scopes = [.. provider.Scopes.Distinct(StringComparer.Ordinal)],
            CallbackPath = callback,
            SignedOutPath = "/.portcullis/signed-out/" + provider.Name,
            Claims = provider.Claims,
            CookieName = options.Cookie.Name + "-" + provider.Name,
        };
    }

    private static void ValidateCookie(CompileContext context, SessionCookieOptions cookie)
    {
        const string root = "identity.sessions";
        if (string.IsNullOrWhiteSpace(cookie.Name) || cookie.Name.Any(c => c <= ' ' || c >= 127 || "()<>@,;:\\\"/[]?={}".Contains(c)))
        {
            context.Error(root + ".cookie.name", $"'{cookie.Name}' is not a valid cookie name", "e.g. name: __Host-portcullis");
        }

        if (cookie.Name.StartsWith("__Host-", StringComparison.Ordinal) && cookie.Domain is not null)
        {
            context.Error(root + ".cookie.domain", "a __Host- cookie cannot have a domain", "remove domain, or use a name without the __Host- prefix (e.g. __Secure-portcullis)");
        }

        if (cookie.Name.StartsWith("__Host-", StringComparison.Ordinal) || cookie.Name.StartsWith("__Secure-", StringComparison.Ordinal))
        {
            foreach (var listener in context.Config.Listeners)
            {
                if (!listener.Admin && listener.Tls is null)
                {
                    context.Warning(root + ".cookie.name", $"the {cookie.Name} cookie is Secure, so browsers never send it over the cleartext listener '{listener.Name}'", "serve browser routes over HTTPS, or choose another cookie name for plain-HTTP testing");
                    break;
                }
            }
        }
    }

    /// <summary>A route's `auth.session`: the browser session of one provider, and nothing else.</summary>
    internal static CompiledRouteAuth CompileRouteAuth(CompileContext context, RouteAuthOptions auth, string path, string defaultAudience)
    {
        var name = auth.Session!;
        var known = context.Config.Identity.Sessions?.Providers.Select(p => p.Name).Where(n => !string.IsNullOrWhiteSpace(n)).ToList() ?? [];
        if (!known.Contains(name, StringComparer.Ordinal))
        {
            var suggestion = YamlConfigBinder.Suggest(name, known);
            context.Error(path + ".session", $"unknown session provider '{name}'", suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under identity.sessions.providers");
        }

        if (auth.Anonymous) context.Error(path + ".anonymous", "a session route cannot be anonymous", "remove anonymous: true, or session");
        if (auth.Issuers.Count > 0 || auth.Introspection.Count > 0 || auth.ApiKey)
        {
            context.Error(path + ".session", "a session route accepts only the browser session", "put bearer-token and API-key access on a separate route (e.g. another path or host)");
        }

        if (auth.Scopes.Count > 0) context.Warning(path + ".scopes", "a browser session carries no access-token scopes; this route's scopes are checked against the ID token's scope claims", "use groups or claim rules for browser routes");

        return new CompiledRouteAuth
        {
            Session = name,
            Scopes = [.. auth.Scopes],
            Groups = auth.Groups.ToFrozenSet(StringComparer.Ordinal),
            Consumers = auth.Consumers.ToFrozenSet(StringComparer.Ordinal),
            Rule = auth.Claims.Count == 0 ? null : new ClaimRule { All = [.. auth.Claims.Select((r, i) => RouteAuthCompiler.CompileRule(context, r, $"{path}.claims[{i}]"))] },
            AssertionAudience = auth.AssertionAudience ?? defaultAudience,
        };
    }

    // The flow's own parameters: set by the OpenIdConnect handler, PKCE or PAR; overriding one would break or weaken the flow.
    private static readonly FrozenSet<string> ReservedAuthorizationParameters = new[]
    {
        "client_id", "client_secret", "redirect_uri", "response_type", "response_mode", "scope", "state", "nonce",
        "code_challenge", "code_challenge_method", "request", "request_uri", "client_assertion", "client_assertion_type",
    }.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    private static FrozenDictionary<string, string>? CompileAuthorizationParameters(CompileContext context, IReadOnlyDictionary<string, string> parameters, string path)
    {
        var ok = true;
        foreach (var (name, value) in parameters)
        {
            if (name.Length == 0 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
            {
                context.Error(path + "." + name, $"'{name}' is not an authorization parameter name", "use letters, digits, '_', '-' and '.', e.g. prompt or acr_values");
                ok = false;
            }
            else if (ReservedAuthorizationParameters.Contains(name))
            {
                context.Error(path + "." + name, $"authorization parameter '{name}' is set by the sign-in flow itself", name.Equals("scope", StringComparison.OrdinalIgnoreCase) ? "list scopes under scopes" : "remove it");
                ok = false;
            }
            else if (string.IsNullOrEmpty(value) || value.Any(char.IsControl))
            {
                context.Error(path + "." + name, $"authorization parameter '{name}' needs a value without control characters", "e.g. prompt: consent");
                ok = false;
            }
        }

        return ok ? parameters.ToFrozenDictionary(StringComparer.Ordinal) : null;
    }

    private static bool IsUrlSafeName(string name) => name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');
}
