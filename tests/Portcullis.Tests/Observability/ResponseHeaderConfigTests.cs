using Portcullis.Configuration;

namespace Portcullis.Tests.Observability;

/// <summary>routes[].responseHeaders and clusters.NAME.responseHeaders: compilation and refusals with file:line:column.</summary>
public sealed class ResponseHeaderConfigTests() : ConfigBuildTestBase("portcullis-response-headers-")
{
    private const string Head = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        clusters:
          api:
            destinations: [http://127.0.0.1:9000]
            responseHeaders:
              forbid: [Server]
              action: strip
        routes:
          - name: api
            match: { pathPrefix: / }
            cluster: api

        """;

    [Fact]
    public void A_complete_policy_compiles_on_route_and_cluster()
    {
        var result = Build(Head + """
                responseHeaders:
                  require: [Cache-Control]
                  forbid: [X-Powered-By]
                  rules:
                    - { header: Cache-Control, regex: no-store }
                    - { header: Content-Type, oneOf: [application/json] }
                  action: block
            """);
        Assert.True(result.Succeeded, Dump(result));
        var route = result.Snapshot!.Routes["api"].ResponseHeaders!;
        Assert.Equal(ResponseHeaderAction.Block, route.Action);
        Assert.Equal(["Cache-Control"], route.Require);
        Assert.Equal(["X-Powered-By"], route.Forbid);
        Assert.Equal(2, route.Rules.Length);
        Assert.NotNull(route.Rules[0].Regex);
        Assert.Equal(["application/json"], route.Rules[1].OneOf!);
        var cluster = result.Snapshot.Clusters["api"].ResponseHeaders!;
        Assert.Equal(ResponseHeaderAction.Strip, cluster.Action);
        Assert.Equal(["Server"], cluster.Forbid);
    }

    [Fact]
    public void The_action_defaults_to_log_and_no_section_means_no_policy()
    {
        var result = Build(Head + "    responseHeaders: { forbid: [Server] }\n");
        Assert.True(result.Succeeded, Dump(result));
        Assert.Equal(ResponseHeaderAction.Log, result.Snapshot!.Routes["api"].ResponseHeaders!.Action);
        Assert.Null(Build(Head).Snapshot!.Routes["api"].ResponseHeaders);
    }

    [Fact]
    public void A_bad_regex_is_refused_at_its_position()
    {
        var result = Build(Head + """
                responseHeaders:
                  rules:
                    - header: Cache-Control
                      regex: "no-(store"
            """);
        var error = SingleError(result);
        Assert.Contains("not valid", error.Message, StringComparison.Ordinal);
        AssertAt(error, 15, 18);
    }

    [Fact]
    public void An_empty_header_name_is_refused_at_its_position()
    {
        var result = Build(Head + """
                responseHeaders:
                  forbid: [Server, ""]
            """);
        var error = SingleError(result);
        Assert.Contains("empty", error.Message, StringComparison.Ordinal);
        AssertAt(error, 13, 24);
    }

    [Fact]
    public void An_empty_rule_header_is_refused_at_its_position()
    {
        var result = Build(Head + """
                responseHeaders:
                  rules: [{ header: "", regex: x }]
            """);
        var error = SingleError(result);
        Assert.Contains("empty", error.Message, StringComparison.Ordinal);
        AssertAt(error, 13, 25);
    }

    [Fact]
    public void An_unknown_action_is_refused_at_its_position()
    {
        var result = Build(Head + """
                responseHeaders:
                  action: drop
            """);
        Assert.False(result.Succeeded);
        var error = result.Errors.First();
        AssertAt(error, 13, 15);
    }

    [Fact]
    public void A_header_both_required_and_forbidden_is_refused()
    {
        var result = Build(Head + """
                responseHeaders:
                  require: [Cache-Control]
                  forbid: [Server, cache-control]
            """);
        var error = SingleError(result);
        Assert.Contains("both required and forbidden", error.Message, StringComparison.Ordinal);
        AssertAt(error, 14, 24);
    }

    [Fact]
    public void A_rule_needs_exactly_one_of_regex_or_one_of()
    {
        var result = Build(Head + """
                responseHeaders:
                  rules: [{ header: Content-Type }]
            """);
        var error = SingleError(result);
        Assert.Contains("exactly one of regex or oneOf", error.Message, StringComparison.Ordinal);
        AssertAt(error, 13, 15);
    }

    [Fact]
    public void Cluster_policies_are_validated_too()
    {
        var result = Build(Head.Replace("forbid: [Server]", "forbid: [\" \"]", StringComparison.Ordinal));
        var error = SingleError(result);
        AssertAt(error, 6, 16);
    }
}
