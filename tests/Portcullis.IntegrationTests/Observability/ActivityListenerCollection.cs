namespace Portcullis.IntegrationTests.Observability;

/// <summary>
/// ActivitySource listeners are process-wide: while <see cref="TracingSpansTests"/> samples the "Portcullis"
/// source, every gateway in the test process creates spans, and an upstream's traceparent then names the
/// upstream span instead of the request's span id. Tests that compare those ids share this collection, so
/// they never run while the listener is registered.
/// </summary>
[CollectionDefinition(Name)]
public sealed class ActivityListenerCollection
{
    public const string Name = "Process-wide activity listeners";
}
