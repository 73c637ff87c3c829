using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Portcullis.Advice;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Admin;

/// <summary>
/// The advisor's findings on the admin listener (docs/advisor.md#using-it): GET /admin/advice (filters kind,
/// severity, subject, state), GET /admin/advice/{id}, and POST …/acknowledge | mute | unmute (admin scope,
/// persisted in advice.statePath, audited). Reads take the engine's published set: no lock, no store query.
/// </summary>
internal sealed partial class AdminAdviceApi(SnapshotStore store, IServiceProvider services, TimeProvider time, ILogger<AdminAdviceApi> logger)
{
    private static readonly string[] Parameters = ["kind", "severity", "subject", "state"];

    public static readonly string[] Actions = ["acknowledge", "mute", "unmute"];

    // The audit record's type per action.
    private static readonly Dictionary<string, string> AuditTypes = new(StringComparer.Ordinal)
    {
        ["acknowledge"] = "admin.advice-acknowledge",
        ["mute"] = "admin.advice-mute",
        ["unmute"] = "admin.advice-unmute",
    };

    private AdviceEngine? Engine => services.GetService<AdviceEngine>();

    private AdviceStateStore? State => services.GetService<AdviceStateStore>();

    public Task List(HttpContext context)
    {
        string? kind = null, subject = null;
        FindingSeverity? severity = null;
        FindingState? state = FindingState.Open; // null: all
        foreach (var (name, values) in context.Request.Query)
        {
            if (!Parameters.Contains(name, StringComparer.Ordinal)) return Bad(context, $"unknown parameter '{name}'; the filters are kind, severity, subject and state");
            if (values.Count != 1 || string.IsNullOrEmpty(values[0])) return Bad(context, $"parameter '{name}' needs exactly one value");
            var value = values[0]!;
            switch (name)
            {
                case "kind":
                    if (!FindingJson.Kinds.Contains(value)) return Bad(context, $"kind '{value}' is not a finding kind (e.g. traffic.scanner, upstream.errors; docs/advisor.md lists them)");
                    kind = value;
                    break;
                case "severity":
                    severity = value switch
                    {
                        "info" => FindingSeverity.Info,
                        "warning" => FindingSeverity.Warning,
                        "critical" => FindingSeverity.Critical,
                        _ => null,
                    };
                    if (severity is null) return Bad(context, $"severity '{value}' is not one of info, warning, critical");
                    break;
                case "subject":
                    subject = value;
                    break;
                case "state":
                    if (value == "all")
                    {
                        state = null;
                        break;
                    }

                    if (!TryState(value, out var parsed)) return Bad(context, $"state '{value}' is not one of open, acknowledged, muted, resolved, all");
                    state = parsed;
                    break;
            }
        }

        var set = Engine?.Current ?? FindingSet.Empty;
        var decisions = State?.Current;
        return AdminApi.Json(context, 200, w =>
        {
            FindingJson.WriteHeader(w, set, store.Current.Advice is not null && Engine is not null);
            w.WriteStartArray("findings");
            foreach (var entry in set.Entries)
            {
                var f = entry.Finding;
                if (kind is not null && f.Kind != kind) continue;
                if (severity is not null && f.Severity != severity) continue;
                if (subject is not null && f.Subject.Name != subject && f.Subject.Route != subject) continue;
                var decision = decisions?.GetValueOrDefault(f.Id);
                if (state is not null && FindingJson.StateOf(entry, decision) != state) continue;
                FindingJson.Write(w, entry, decision);
            }

            w.WriteEndArray();
        });
    }

    public Task Get(HttpContext context, string id)
    {
        if (Find(id) is not { } entry) return Unknown(context, id);
        return WriteOne(context, entry);
    }

    /// <summary>POST /admin/advice/{id}/acknowledge | mute | unmute: 200 with the finding in its new state.</summary>
    public Task Decide(HttpContext context, string id, string action)
    {
        if (Find(id) is not { } entry || State is not { } state) return Unknown(context, id);
        var caller = context.Features.Get<AdminCaller>()!;
        FindingDecisionRecord? decision = action switch
        {
            "acknowledge" => new(FindingDecision.Acknowledged, time.GetUtcNow().UtcDateTime, caller.Actor, entry.Finding.Kind),
            "mute" => new(FindingDecision.Muted, time.GetUtcNow().UtcDateTime, caller.Actor, entry.Finding.Kind),
            _ => null,
        };
        try
        {
            state.Set(id, decision);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Log.StateUnwritable(logger, state.Path ?? "(memory)", ex.Message);
            return ProblemWriter.WriteAsync(context, 503, "Advice state not written", "The acknowledged/muted findings file (advice.statePath) cannot be written; nothing was changed.", ReasonCodes.AdviceStateUnwritable);
        }

        var clientIp = context.Connection.RemoteIpAddress?.ToString();
        services.GetService<Observability.AuditLog>()?.Record(w =>
        {
            w.WriteString("type", AuditTypes[action]);
            w.WriteString("actor", caller.Audit.Actor);
            if (caller.Audit.Subject is { } subject) w.WriteString("subject", subject);
            w.WriteString("clientIp", clientIp);
            w.WriteString("finding", id);
            w.WriteString("kind", entry.Finding.Kind);
        });
        Log.Decided(logger, action, id, entry.Finding.Kind, caller.Actor);
        return WriteOne(context, entry);
    }

    private AdviceEntry? Find(string id) => Engine?.Current.ById.GetValueOrDefault(id);

    private Task WriteOne(HttpContext context, AdviceEntry entry) => AdminApi.Json(context, 200, w =>
    {
        // The finding's own fields at the top level (AdminApi.Json writes the enclosing object).
        using var buffer = new MemoryStream();
        using (var inner = new Utf8JsonWriter(buffer))
        {
            FindingJson.Write(inner, entry, State?.Get(entry.Finding.Id));
        }

        using var document = JsonDocument.Parse(buffer.ToArray());
        foreach (var property in document.RootElement.EnumerateObject()) property.WriteTo(w);
    });

    private static bool TryState(string value, out FindingState state)
    {
        state = value switch
        {
            "open" => FindingState.Open,
            "acknowledged" => FindingState.Acknowledged,
            "muted" => FindingState.Muted,
            "resolved" => FindingState.Resolved,
            _ => (FindingState)(-1),
        };
        return state >= 0;
    }

    private static Task Bad(HttpContext context, string detail) =>
        ProblemWriter.WriteAsync(context, 400, "Bad advice parameter", detail, ReasonCodes.AdviceBadParameter);

    private static Task Unknown(HttpContext context, string id) =>
        ProblemWriter.WriteAsync(context, 404, "Unknown finding", $"No current or recently resolved finding has the id '{id}'.", ReasonCodes.AdviceUnknownFinding);

    private static partial class Log
    {
        [LoggerMessage(9720, LogLevel.Information, "Admin: {Action} finding {Id} ({Kind}) (by {Actor})")]
        public static partial void Decided(ILogger logger, string action, string id, string kind, string actor);

        [LoggerMessage(9721, LogLevel.Error, "Admin: cannot write the advice state file {Path}: {Error}")]
        public static partial void StateUnwritable(ILogger logger, string path, string error);
    }
}
