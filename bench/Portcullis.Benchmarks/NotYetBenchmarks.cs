namespace Portcullis.Benchmarks;

// PLACEHOLDER — no benchmark here yet, on purpose.
//
// Issue #4 also asks for micro benchmarks of:
//   - the local rate-limit decision (token bucket / sliding window check per request): comes with issue #5
//     (rate limiting, being built in src/Portcullis/Traffic);
//   - access-log formatting (one request's log line): comes with issue #7 (observability).
// Neither exists in src/ yet, so there is nothing honest to measure. Add the benchmark classes in this
// project when those land, with [MemoryDiagnoser], and record their allocations in BENCHMARKS.md.
