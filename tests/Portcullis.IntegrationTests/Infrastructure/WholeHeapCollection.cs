namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>
/// Tests that run blocking, compacting collections of this whole process (every gateway the other tests run) run
/// alone: a parallel test's latency bound would otherwise meet their pause (a Redis timeout test saw a 1 s call).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class WholeHeapCollection
{
    public const string Name = "whole-heap";
}
