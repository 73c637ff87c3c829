using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Cli;

/// <summary>One explained request: each stage's decision, read from the request's <see cref="GatewayFeature"/>.</summary>
internal sealed record Explanation(IReadOnlyList<(string Stage, string Text)> Lines, JsonObject Json)
{
    public static Explanation Of(GatewaySnapshot snapshot, ListenerBinding listener, string method, string url, HttpContext context, ExplainCommand.RecordedUpstream upstream)
    {
        var lines = new List<(string, string)>();
        var json = new JsonObject();
        void Add(string stage, string text, JsonNode? value)
        {
            lines.Add((stage, text));
            json[stage] = value;
        }

        var gateway = context.Features.Get<GatewayFeature>();
        Add("request", $"{method} {url}", $"{method} {url}");
        var scheme = listener.Tls is null ? "http" : "https";
        Add("listener", $"{listener.Name} ({scheme}://{listener.Address}{(listener.Admin ? ", admin" : "")})", listener.Name);

        var route = gateway?.RouteName is { } name ? snapshot.Config.Routes.FirstOrDefault(r => r.Name == name) : null;
        if (route is null)
        {
            Add("route", "none matched", null);
        }
        else
        {
            var match = JsonSerializer.SerializeToNode(route.Match, ConfigJson.Options)!;
            Add("route", $"{route.Name} (order {route.Order}; match {Compact(match)})", new JsonObject { ["name"] = route.Name, ["match"] = match });
            if (route.Cluster is { } template && template.Contains("${map:", StringComparison.Ordinal))
            {
                Add("maps", $"cluster {template} → {gateway!.ClusterName ?? "(not reached)"}", new JsonObject { ["cluster"] = template, ["result"] = gateway!.ClusterName });
            }

            if (route.Split is { } split)
            {
                var shares = string.Join(", ", split.Clusters.Select(t => $"{t.Cluster} {t.Weight}"));
                var how = split.Sticky is { } sticky ? $"sticky by {sticky}" : "at random per request";
                Add("split", $"{shares} ({how}) → {gateway!.ClusterName ?? "(not reached)"}",
                    new JsonObject { ["clusters"] = new JsonArray([.. split.Clusters.Select(t => (JsonNode)new JsonObject { ["cluster"] = t.Cluster, ["weight"] = t.Weight })]), ["sticky"] = split.Sticky, ["result"] = gateway!.ClusterName });
            }

            var auth = gateway!.Auth;
            var caller = gateway.Consumer is { } consumer ? $"; consumer {consumer}" : "";
            var rule = route.Auth is null ? "public route" : $"rule {Compact(JsonSerializer.SerializeToNode(route.Auth, ConfigJson.Options)!)}";
            Add("auth", $"{auth.Result.ToString().ToLowerInvariant()} via {auth.Method.ToString().ToLowerInvariant()}{(auth.Reason is { } reason ? $" ({reason.Code})" : "")}{caller} — {rule}",
                new JsonObject { ["result"] = auth.Result.ToString(), ["method"] = auth.Method.ToString(), ["reason"] = auth.Reason?.Code, ["consumer"] = gateway.Consumer });

            var compiled = snapshot.Routes.GetValueOrDefault(route.Name);
            var policies = compiled is null ? [] : compiled.RateLimits.Select(p => $"{p.Name} ({p.Algorithm} {p.Limit}/{DurationFormat.Format(p.Per)}, key {string.Join("+", p.Key.Parts)})").ToList();
            if (compiled?.Quota is { } quota) policies.Add($"quota {quota.Name} ({quota.Limit} per {quota.Period.ToString().ToLowerInvariant()}, key {string.Join("+", quota.Key.Parts)})");
            if (compiled?.Concurrency is not null) policies.Add("concurrency limit");
            var traffic = gateway.Traffic;
            var trafficText = !gateway.TrafficReached ? "not reached" : traffic.Result.ToString().ToLowerInvariant()
                + (traffic.Reason is { } code && !ReferenceEquals(code, ReasonCodes.Admitted) ? $" ({code.Code}{(traffic.Policy is { } p ? $", {p}" : "")})" : "");
            Add("limits", $"{(policies.Count == 0 ? "none on this route" : string.Join("; ", policies))} — {trafficText} (counted in memory: every explain starts from an empty counter)",
                new JsonObject { ["policies"] = new JsonArray([.. policies.Select(p => (JsonNode)p!)]), ["result"] = gateway.TrafficReached ? traffic.Result.ToString() : null, ["reason"] = traffic.Reason?.Code });
        }

        if (upstream.Request is { } sent)
        {
            Add("cluster", $"{gateway?.ClusterName} → {sent.RequestUri!.GetLeftPart(UriPartial.Authority)}", new JsonObject { ["name"] = gateway?.ClusterName, ["destination"] = sent.RequestUri.GetLeftPart(UriPartial.Authority) });
            var headers = sent.Headers.Concat(sent.Content?.Headers ?? Enumerable.Empty<KeyValuePair<string, IEnumerable<string>>>())
                .Select(h => (h.Key, Value: ConfigJson.IsSensitiveHeader(h.Key) ? ConfigJson.Redacted : string.Join(", ", h.Value)))
                .OrderBy(h => h.Key, StringComparer.OrdinalIgnoreCase).ToList();
            var text = new StringBuilder($"{sent.Method} {sent.RequestUri}");
            foreach (var (key, value) in headers) text.Append("\n           ").Append(key).Append(": ").Append(value);
            Add("upstream", text.ToString(), new JsonObject
            {
                ["method"] = sent.Method.Method,
                ["url"] = sent.RequestUri.ToString(),
                ["headers"] = new JsonObject(headers.Select(h => KeyValuePair.Create(h.Key, (JsonNode?)h.Value))),
            });
            Add("decision", "proxied (not sent: explain answers for the upstream)", "proxied");
        }
        else
        {
            var body = ReadBody(context);
            var reason = gateway?.Reason ?? gateway?.AuthReason ?? gateway?.TrafficDecision;
            Add("decision", $"answered by the gateway: {context.Response.StatusCode}{(reason is null ? "" : $" {reason}")}{(body.Length == 0 ? "" : "\n           " + body.ReplaceLineEndings("\n           "))}",
                new JsonObject { ["status"] = context.Response.StatusCode, ["reason"] = reason, ["body"] = body });
        }

        return new Explanation(lines, json);
    }

    public string ToText()
    {
        var text = new StringBuilder();
        foreach (var (stage, line) in Lines) text.Append(stage.PadRight(10)).Append(' ').Append(line).Append('\n');
        return text.ToString();
    }

    public string ToJson() => Json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";

    // Written keys only: empty lists and false flags are defaults, not part of the rule.
    private static string Compact(JsonNode node)
    {
        if (node is JsonObject obj)
        {
            foreach (var key in obj.Where(p => p.Value is null || p.Value is JsonArray { Count: 0 } || (p.Value is JsonValue v && v.TryGetValue<bool>(out var b) && !b)).Select(p => p.Key).ToList())
            {
                obj.Remove(key);
            }
        }

        return node.ToJsonString();
    }

    private static string ReadBody(HttpContext context)
    {
        var stream = context.Response.Body;
        if (!stream.CanRead) return "";
        using var reader = new StreamReader(stream, Encoding.UTF8, leaveOpen: true);
        var body = reader.ReadToEnd();
        return body.Length > 2000 ? body[..2000] + "…" : body;
    }
}
