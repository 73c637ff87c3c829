#!/usr/bin/env bash
# Runs the BenchmarkDotNet micro benchmarks in bench/Portcullis.Benchmarks (hot-path pieces: map lookups,
# validated-token cache hit, API-key lookup, local rate-limit decision) with [MemoryDiagnoser]: time and
# bytes allocated per operation. Short in-process job by default (about 1–2 minutes for all of them).
#
#   bench/micro.sh                       # every benchmark
#   bench/micro.sh --filter '*Jwt*'      # BenchmarkDotNet options are passed through
#
# Results: bench/out/micro/results/*.md (GitHub Markdown tables) and the console.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$root/bench/out/micro
mkdir -p "$out"
args=("$@")
((${#args[@]})) || args=(--filter '*')
dotnet build "$root/bench/Portcullis.Benchmarks" -c Release --artifacts-path "$root/bench/out/artifacts" --nologo -v quiet -clp:ErrorsOnly
cd "$out"
exec dotnet "$root/bench/out/artifacts/bin/Portcullis.Benchmarks/release/Portcullis.Benchmarks.dll" \
  --artifacts "$out" "${args[@]}"
