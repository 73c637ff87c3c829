#!/usr/bin/env bash
# The analytics query figure (issue 16): generates 30 days × 200 routes × 1,000 consumers of per-minute rollups
# (21.6 M rows, see AnalyticsQueryBenchmark for the exact shape) into $1 (default bench/out/analytics-query)
# once, then times the query API's queries on it (median of 5 after a warm-up). Results: $1/results.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
folder="$(realpath -m "${1:-$root/bench/out/analytics-query}")"
mkdir -p "$folder"
dotnet build "$root/tests/Portcullis.Tests/Portcullis.Tests.csproj" -c Release -v q --nologo
PORTCULLIS_BENCH_ANALYTICS="$folder" dotnet test "$root/tests/Portcullis.Tests" -c Release --no-build \
  --filter "FullyQualifiedName~AnalyticsQueryBenchmark" --logger "console;verbosity=detailed"
cat "$folder/results.txt"
