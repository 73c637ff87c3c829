namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>
/// Tests that run alone: those that run blocking, compacting collections of this whole process (every gateway the
/// other tests run), and those that bound a latency to the timeout plus a margin (the Redis store's outage tests).
/// Run in parallel, the first pause the second (a Redis timeout test saw a 1 s call), and the browser and cluster
/// tests starve the second's thread pool (a 100 ms timeout measured at 1,020 ms with 16 calls where 50 fit).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class WholeHeapCollection
{
    public const string Name = "whole-heap";
}
