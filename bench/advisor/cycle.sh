#!/usr/bin/env bash
# The advisor's cycle time (issue 17, "Performance"): one engine run over 30 days of rollups for 200 routes × 1,000
# consumers (tiered as the store keeps them), 2 days of samples and 7 days of arrivals, generated once into $1
# (default bench/out/advisor-cycle). Median of 5 runs after a cold one. Results: $1/results.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
folder="$(realpath -m "${1:-$root/bench/out/advisor-cycle}")"
mkdir -p "$folder"
dotnet build "$root/tests/Portcullis.Tests/Portcullis.Tests.csproj" -c Release -v q --nologo
PORTCULLIS_BENCH_ADVICE_CYCLE="$folder" dotnet test "$root/tests/Portcullis.Tests" -c Release --no-build \
  --filter "FullyQualifiedName~AdviceCycleBenchmark" --logger "console;verbosity=detailed"
cat "$folder/results.txt"
