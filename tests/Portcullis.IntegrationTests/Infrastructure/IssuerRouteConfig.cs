namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>
/// The gateway config the issuer-key tests share: one OIDC issuer (<c>corp</c>, audience <c>orders-api</c>)
/// protecting <c>/orders</c> in front of one upstream, with the issuer's <c>keys</c> settings and any
/// further top-level sections (YAML at column 0) supplied by the test.
/// </summary>
internal static class IssuerRouteConfig
{
    public static string Orders(string authority, string upstreamUrl, string keys, string moreSections = "") => $$"""
        identity:
          issuers:
            - name: corp
              authority: {{authority}}
              audiences: [orders-api]
              keys: {{keys}}
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            auth: { issuers: [corp] }
            cluster: orders
        clusters:
          orders:
            destinations: [{{upstreamUrl}}]

        """ + moreSections;
}
