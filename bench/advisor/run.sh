#!/usr/bin/env bash
# The advisor's evaluation (issue 17): per seed a real gateway on 7 days of pre-seeded history, live background
# traffic and eight labelled incidents, scored per finding kind; then a clean run. Results: $1/results.md (default
# bench/out/advisor), progress in $1/log.txt. Settings (environment): PORTCULLIS_BENCH_ADVISOR_SEEDS (1,2,3),
# _MINUTES (7, live minutes per seed), _CLEAN_MINUTES (15; 0 skips the clean run), _INTERVAL (60, advice.interval in s).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
folder="$(realpath -m "${1:-$root/bench/out/advisor}")"
mkdir -p "$folder"
dotnet build "$root/tests/Portcullis.IntegrationTests/Portcullis.IntegrationTests.csproj" -c Release -v q --nologo
PORTCULLIS_BENCH_ADVISOR="$folder" dotnet test "$root/tests/Portcullis.IntegrationTests" -c Release --no-build \
  --filter "FullyQualifiedName~Advice.Evaluation.AdvisorEvaluation" --logger "console;verbosity=normal"
cat "$folder/results.md"
