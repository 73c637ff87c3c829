#!/usr/bin/env bash
# Self-contained release archives (docs/install.md#release-archive):
#   dist/portcullis-VERSION-RID.tar.gz for each RID, and dist/SHA256SUMS.
# The version is <Version> in Directory.Build.props (the one place it is set).
# Options (environment): RIDS="linux-x64 linux-arm64" (default both), OUT=dist, READY_TO_RUN=true.
# Builds in a temporary artifacts folder, so a release never mixes with (or disturbs) the dev build's bin/obj.
set -euo pipefail
cd "$(dirname "$0")"

version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props | head -n1)
[ -n "$version" ] || { echo "error: no <Version> in Directory.Build.props" >&2; exit 1; }
rids=${RIDS:-linux-x64 linux-arm64}
out=${OUT:-dist}
r2r=${READY_TO_RUN:-true}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

built=() failed=()
for rid in $rids; do
  echo "== portcullis $version $rid"
  stage="$work/stage-$rid"
  # PackAsTool off: a tool package is framework-dependent by definition; this build is not.
  if dotnet publish src/Portcullis.Cli/Portcullis.Cli.csproj -c Release -r "$rid" --self-contained \
      -p:PublishSingleFile=true -p:PublishReadyToRun="$r2r" -p:PackAsTool=false -p:DebugType=none \
      --artifacts-path "$work/artifacts" -o "$stage" --nologo -v quiet -clp:ErrorsOnly -nodeReuse:false; then
    archive="portcullis-$version-$rid.tar.gz"
    tar -czf "$out/$archive" -C "$stage" .
    built+=("$archive")
  else
    # Typically: the runtime pack for $rid (Microsoft.NETCore.App.Runtime.$rid, ...) is neither in the
    # NuGet cache nor reachable from a configured package source.
    echo "error: publishing $rid failed (is its runtime pack available from your NuGet sources?); no archive for $rid" >&2
    failed+=("$rid")
  fi
done

if ((${#built[@]})); then
  (cd "$out" && sha256sum "${built[@]}" > SHA256SUMS)
  echo "wrote ${built[*]} and SHA256SUMS to $out"
fi
if ((${#failed[@]})); then
  echo "error: not built: ${failed[*]}" >&2
  exit 1
fi
