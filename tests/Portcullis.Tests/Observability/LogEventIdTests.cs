using System.Reflection;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;

namespace Portcullis.Tests.Observability;

/// <summary>
/// Every source-generated log message of the gateway has its own EventId (issue 15, item 6): operators
/// filter and alert on them, so two messages sharing an id (as access-log and session-refresh messages
/// once did) make a filter catch the wrong event. The ranges per capability are in docs/operations.md.
/// </summary>
public sealed class LogEventIdTests
{
    [Fact]
    public void Every_LoggerMessage_in_the_gateway_has_an_explicit_EventId_no_other_message_uses()
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly;
        var messages = typeof(ConfigReloader).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(all))
            .Select(m => (Method: m, Attribute: m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(x => x.Attribute is not null)
            .Select(x => (Name: $"{x.Method.DeclaringType!.FullName}.{x.Method.Name}", x.Attribute!.EventId))
            .ToList();

        // The reflection itself must see the messages, or this test could not fail.
        Assert.True(messages.Count > 50, $"only {messages.Count} [LoggerMessage] methods found");
        Assert.Empty(messages.Where(m => m.EventId <= 0).Select(m => m.Name));

        var duplicates = messages.GroupBy(m => m.EventId)
            .Where(g => g.Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(m => m.Name))}")
            .ToList();
        Assert.True(duplicates.Count == 0, "EventIds used by more than one message:\n" + string.Join("\n", duplicates));
    }
}
