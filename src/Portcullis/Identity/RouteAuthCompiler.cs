using System.Collections.Frozen;
using Portcullis.Configuration;
using Portcullis.Routing;

namespace Portcullis.Identity;

/// <summary>Validation and compilation of a route's `auth`: which credentials it accepts and the claim rules they must pass.</summary>
internal static class RouteAuthCompiler
{
    /// <param name="defaultAudience">The assertion audience when the route names none: its static cluster, else its name.</param>
    internal static CompiledRouteAuth? Compile(CompileContext context, RouteAuthOptions? auth, string path, CompiledCredentials credentials, string defaultAudience)
    {
        if (auth is null) return null;
        if (auth.Session is not null) return Sessions.SessionsCompiler.CompileRouteAuth(context, auth, path, defaultAudience);
        if (auth.Anonymous)
        {
            if (auth.Issuers.Count > 0 || auth.Introspection.Count > 0 || auth.ApiKey || auth.ClientCertificate || auth.Scopes.Count > 0 || auth.Groups.Count > 0 || auth.Claims.Count > 0 || auth.Consumers.Count > 0)
            {
                context.Error(path + ".anonymous", "an anonymous route cannot also require credentials", "remove anonymous: true, or the other rules");
            }

            return new CompiledRouteAuth { Anonymous = true };
        }

        var routeIssuers = new List<CompiledIssuer>();
        for (var i = 0; i < auth.Issuers.Count; i++)
        {
            if (credentials.Issuers.TryGetValue(auth.Issuers[i], out var issuer)) routeIssuers.Add(issuer);
            else
            {
                var suggestion = YamlConfigBinder.Suggest(auth.Issuers[i], credentials.Issuers.Keys);
                context.Error($"{path}.issuers[{i}]", $"unknown issuer '{auth.Issuers[i]}'", suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under identity.issuers");
            }
        }

        var routeIntrospectors = new List<CompiledIntrospector>();
        for (var i = 0; i < auth.Introspection.Count; i++)
        {
            if (credentials.Introspectors.TryGetValue(auth.Introspection[i], out var introspector)) routeIntrospectors.Add(introspector);
            else
            {
                var known = context.Config.Identity.Introspection.Select(o => o.Name).Where(n => !string.IsNullOrWhiteSpace(n)).ToList();
                if (known.Contains(auth.Introspection[i], StringComparer.Ordinal)) continue; // invalid itself; reported there
                var suggestion = YamlConfigBinder.Suggest(auth.Introspection[i], known);
                context.Error($"{path}.introspection[{i}]", $"unknown introspector '{auth.Introspection[i]}'", suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under identity.introspection");
            }
        }

        if (auth.ApiKey && context.Config.Identity.ApiKeys is null) context.Error(path + ".apiKey", "apiKey: true needs identity.apiKeys", "add identity: { apiKeys: { file: keys.yaml } }");
        ValidateClientCertificateAuth(context, auth, path);
        if (auth.Issuers.Count == 0 && auth.Introspection.Count == 0 && !auth.ApiKey && !auth.ClientCertificate) context.Error(path, "auth accepts no credential", "add issuers: [NAME], introspection: [NAME], apiKey: true, or anonymous: true");

        return new CompiledRouteAuth
        {
            Issuers = [.. routeIssuers],
            Introspectors = [.. routeIntrospectors],
            ApiKey = auth.ApiKey,
            ClientCertificate = auth.ClientCertificate,
            ForwardCertificate = auth.ForwardCertificate,
            Scopes = [.. auth.Scopes],
            Groups = auth.Groups.ToFrozenSet(StringComparer.Ordinal),
            Consumers = auth.Consumers.ToFrozenSet(StringComparer.Ordinal),
            Rule = auth.Claims.Count == 0 ? null : new ClaimRule { All = [.. auth.Claims.Select((r, i) => CompileRule(context, r, $"{path}.claims[{i}]"))] },
            ForwardCredentials = auth.ForwardCredentials,
            AssertionAudience = auth.AssertionAudience ?? defaultAudience,
        };
    }

    internal static ClaimRule CompileRule(CompileContext context, ClaimRuleOptions rule, string path)
    {
        var tests = (rule.Is is null ? 0 : 1) + (rule.OneOf is null ? 0 : 1) + (rule.Contains is null ? 0 : 1) + (rule.Regex is null ? 0 : 1) + (rule.Exists is null ? 0 : 1) + (rule.EmailDomain is null ? 0 : 1);
        if (rule.Claim is null && rule.Any is null && rule.All is null) context.Error(path, "claim rule names no claim and has no any/all", "e.g. { claim: tier, is: premium }");
        if (rule.Claim is not null && tests == 0) context.Error(path, $"claim rule on '{rule.Claim}' tests nothing", "add is, oneOf, contains, regex or exists");
        if (rule.Claim is null && tests > 0) context.Error(path, "claim rule tests a value but names no claim", "add claim: NAME");
        System.Text.RegularExpressions.Regex? pattern = null;
        if (rule.Regex is not null)
        {
            pattern = MapFileParser.CompilePattern(rule.Regex, false, out var error, out var hint);
            if (pattern is null) context.Error(path + ".regex", error!, hint);
        }

        return new ClaimRule
        {
            Claim = rule.Claim,
            Is = rule.Is,
            OneOf = rule.OneOf?.ToFrozenSet(StringComparer.Ordinal),
            Contains = rule.Contains,
            Pattern = pattern,
            EmailDomains = CompileEmailDomains(context, rule.EmailDomain, path + ".emailDomain"),
            Exists = rule.Exists,
            Any = rule.Any?.Select((r, i) => CompileRule(context, r, $"{path}.any[{i}]")).ToArray(),
            All = rule.All?.Select((r, i) => CompileRule(context, r, $"{path}.all[{i}]")).ToArray(),
        };
    }

    private static FrozenSet<string>? CompileEmailDomains(CompileContext context, IReadOnlyList<string>? domains, string path)
    {
        if (domains is null) return null;
        if (domains.Count == 0) context.Error(path, "emailDomain lists no domain", "e.g. emailDomain: [example.com]");
        var result = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < domains.Count; i++)
        {
            var domain = domains[i].Trim().TrimStart('@').ToLowerInvariant();
            if (domain.Length == 0 || domain.Contains('@') || domain.Contains('/') || domain.Contains(' ') || Uri.CheckHostName(domain) != UriHostNameType.Dns)
            {
                context.Error($"{path}[{i}]", $"'{domains[i]}' is not an email domain", "write example.com");
                continue;
            }

            result.Add(domain);
        }

        return result.ToFrozenSet(StringComparer.Ordinal);
    }

    /// <summary>A route's `auth.clientCertificate` needs a listener that asks for client certificates.</summary>
    private static void ValidateClientCertificateAuth(CompileContext context, RouteAuthOptions auth, string path)
    {
        if (auth.ForwardCertificate is { } header)
        {
            if (!auth.ClientCertificate) context.Error(path + ".forwardCertificate", "forwardCertificate needs clientCertificate: true", "add clientCertificate: true, or remove forwardCertificate");
            if (header.Length == 0 || !header.All(c => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c)))
            {
                context.Error(path + ".forwardCertificate", $"'{header}' is not a header name", "e.g. forwardCertificate: X-Client-Cert");
            }
        }

        if (!auth.ClientCertificate) return;
        var any = context.Config.Listeners.Any(l => !l.Admin && l.Tls?.ClientCertificate.Mode is ClientCertificateMode.Optional or ClientCertificateMode.Required);
        if (!any)
        {
            context.Error(path + ".clientCertificate", "clientCertificate: true, but no listener asks for client certificates", "add tls.clientCertificate: { mode: required, ca: certs/clients-ca.pem } to a listener");
        }
    }
}
