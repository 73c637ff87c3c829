#!/usr/bin/env bash
# Config scale (issue 20): for each N, a generated config of N routes (pathPrefix /svcI/api, GET and POST),
# N/10 clusters all pointing at one local echo upstream (`portcullis echo`), and prints one Markdown row:
#   validate wall time and peak RSS (`portcullis validate`),
#   run → first answer on the last route, the gateway's RSS then and once start-up is over (the advisor's first run),
#   a reload with nothing changed and a reload with one route changed (POST /admin/reload, wall time),
#   requests per second on the first and on the last route (wrk, 1 thread, 16 connections, short), so
#   matching cost flat in N shows as equal rates across rows.
#
# Then a second table for large data files: a map file of up to 1,000,000 lines and API key files of up to
# 100,000 consumers (YAML and JSON), each behind one route, with the rate through the lookup.
#
#   bench/bigconfig.sh [N ...]          default: 10 1000 10000 50000
# BIGCONFIG_MAP_ENTRIES (default "10 1000000") and BIGCONFIG_CONSUMERS (default "10 100000") size the data
# table; set both empty to skip it.
# Environment: BIGCONFIG_WRK_SECONDS (default 5; 0 skips the rate columns), BIGCONFIG_SETTLE_SECONDS (default 30:
# how long after the first answer the settled RSS is read).
# Everything started here is stopped on exit. Not a test: numbers depend on the machine (record them in
# BENCHMARKS.md with the load average printed at the end).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
die() { echo "bigconfig: $*" >&2; exit 1; }
source bench/ports.sh
sizes=("$@"); ((${#sizes[@]})) || sizes=(10 1000 10000 50000)
wrk_seconds=${BIGCONFIG_WRK_SECONDS:-5}
settle_seconds=${BIGCONFIG_SETTLE_SECONDS:-30}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "building the CLI..." >&2
dotnet build src/Portcullis.Cli -c Release -o "$work/bin" --nologo -v quiet -clp:ErrorsOnly >&2
cli="$work/bin/portcullis"

free_port echo_port
"$cli" echo --port "$echo_port" >"$work/echo.log" 2>&1 & pids+=($!)

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

validate_config() { # LABEL → v_wall (s), v_rss (KB) of `portcullis validate` on $work/portcullis.yaml
  /usr/bin/time -f "%e %M" -o "$work/time" "$cli" validate -c "$work/portcullis.yaml" >/dev/null 2>"$work/validate.err" \
    || die "validate failed for $1: $(cat "$work/validate.err")"
  read -r v_wall v_rss <"$work/time"
}

start_gateway() { # LABEL URL [CURL ARGS...] → gw (pid), first_ms (run → first 2xx on URL), rss_mb then
  local label=$1 url=$2 start
  shift 2
  start=$(date +%s%N)
  "$cli" run -c "$work/portcullis.yaml" >"$work/gateway-$label.log" 2>&1 & gw=$!; pids+=($gw)
  until curl -fs -o /dev/null "$@" "$url"; do
    kill -0 "$gw" 2>/dev/null || die "gateway exited for $label: $(tail -5 "$work/gateway-$label.log")"
    sleep 0.05
  done
  first_ms=$(ms_since "$start")
  rss_mb=$(( $(awk '/VmRSS/ { print $2 }' "/proc/$gw/status") / 1024 ))
}

generate() { # N PORT ADMIN → portcullis.yaml
  python3 - "$1" "$2" "$3" "$echo_port" >"$work/portcullis.yaml" <<'PY'
import sys
n, port, admin, echo = (int(a) for a in sys.argv[1:5])
clusters = max(1, n // 10)
print(f"listeners:\n  - {{ name: public, address: 127.0.0.1:{port} }}\n  - {{ name: admin, address: 127.0.0.1:{admin}, admin: true }}")
print("routes:")
for i in range(n):
    print(f"  - {{ name: r{i}, match: {{ pathPrefix: /svc{i}/api, methods: [GET, POST] }}, cluster: c{i % clusters} }}")
print("clusters:")
for c in range(clusters):
    print(f"  c{c}: {{ destinations: [http://127.0.0.1:{echo}] }}")
PY
}

rate() { # URL → requests per second (wrk)
  ((wrk_seconds > 0)) || { echo "-"; return; }
  wrk -t1 -c16 -d"${wrk_seconds}s" "$1" 2>/dev/null | awk '/Requests\/sec/ { printf "%d", $2 }'
}

echo "| routes | validate | validate RSS | run → first answer | RSS at first answer | RSS ${settle_seconds} s later | no-op reload | one-route reload | its phases (ms) | rps first route | rps last route |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
for n in "${sizes[@]}"; do
  free_port port; free_port admin
  generate "$n" "$port" "$admin"
  validate_config "N=$n"
  last="http://127.0.0.1:$port/svc$((n - 1))/api/x"
  start_gateway "$n" "$last"
  # Resident memory once start-up is over: the advisor's first run and the trim after it (HeapTrim) included.
  sleep "$settle_seconds"
  rss_settled=$(( $(awk '/VmRSS/ { print $2 }' "/proc/$gw/status") / 1024 ))

  start=$(date +%s%N)
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$admin/admin/reload")
  noop_ms=$(ms_since "$start"); [[ $code == 200 ]] || die "no-op reload answered $code"

  sed -i "s|pathPrefix: /svc0/api,|pathPrefix: /svc0/v2,|" "$work/portcullis.yaml"
  start=$(date +%s%N)
  code=$(curl -s -o "$work/reload.json" -w '%{http_code}' -X POST "http://127.0.0.1:$admin/admin/reload")
  one_ms=$(ms_since "$start"); [[ $code == 200 ]] || die "one-route reload answered $code"
  # Where the reload's time went, as its answer says (phasesMs), in ms.
  phases=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])).get("phasesMs",{}); print(", ".join(f"{k} {v:.0f}" for k,v in p.items()) or "-")' "$work/reload.json")
  curl -fs -o /dev/null "http://127.0.0.1:$port/svc0/v2/x" || die "the changed route does not answer after its reload"

  rps_first=$(rate "http://127.0.0.1:$port/svc0/v2/x")
  rps_last=$(rate "$last")
  kill "$gw"; wait "$gw" 2>/dev/null || true
  printf '| %s | %.2f s | %d MB | %.2f s | %d MB | %d MB | %.2f s | %.2f s | %s | %s | %s |\n' "$n" "$v_wall" $((v_rss / 1024)) \
    "$(echo "$first_ms / 1000" | bc -l)" "$rss_mb" "$rss_settled" "$(echo "$noop_ms / 1000" | bc -l)" "$(echo "$one_ms / 1000" | bc -l)" "$phases" "$rps_first" "$rps_last"
done

# Large data files (issue 20): a map file of M lines looked up per request, and an API key file of K consumers
# (YAML and JSON). One route each; validate, start → first answer, RSS, and the rate through the lookup, so a
# flat lookup cost shows as equal rates across sizes.
#   BIGCONFIG_MAP_ENTRIES (default "10 1000000"), BIGCONFIG_CONSUMERS (default "10 100000"); "" skips.
map_sizes=${BIGCONFIG_MAP_ENTRIES-10 1000000}
consumer_sizes=${BIGCONFIG_CONSUMERS-10 100000}

generate_data() { # KIND SIZE PORT ADMIN → portcullis.yaml and its data file; prints the path and header to probe
  python3 - "$@" "$echo_port" "$work" <<'PY'
import hashlib, json, sys
kind, size, port, admin, echo, work = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
head = f"listeners:\n  - {{ name: public, address: 127.0.0.1:{port} }}\n  - {{ name: admin, address: 127.0.0.1:{admin}, admin: true }}\n"
clusters = "clusters:\n" + "".join(f"  c{c}: {{ destinations: [http://127.0.0.1:{echo}] }}\n" for c in range(10))
if kind == "map":
    with open(f"{work}/tenants.map", "w") as f:
        for i in range(size): f.write(f"tenant{i} c{i % 10}\n")
    config = head + "maps:\n  tenants: { file: tenants.map, default: c0 }\nroutes:\n" \
        + "  - { name: tenant, match: { pathPrefix: /t }, cluster: \"${map:tenants(header:X-Tenant)}\" }\n" + clusters
    probe = ("/t/x", f"X-Tenant: tenant{size - 1}")
else:
    name = "keys.json" if kind == "keys-json" else "keys.yaml"
    consumers = {}
    for i in range(size):
        key = f"pck_{i:012x}_bigconfig-secret-{i}"
        consumers[f"app{i}"] = {"group": f"g{i % 5}", "scopes": ["orders.read"],
            "keys": [{"id": f"{i:012x}", "sha256": hashlib.sha256(key.encode()).hexdigest(), "created": "2026-03-02T09:00:00Z"}]}
    with open(f"{work}/{name}", "w") as f:
        if name.endswith(".json"):
            json.dump({"consumers": consumers}, f, indent=2)
        else:
            f.write("consumers:\n")
            for cid, c in consumers.items():
                k = c["keys"][0]
                f.write(f"  {cid}:\n    group: {c['group']}\n    scopes:\n    - orders.read\n    keys:\n    - id: {k['id']}\n      sha256: {k['sha256']}\n      created: {k['created']}\n")
    config = head + f"identity:\n  apiKeys: {{ file: {name} }}\nroutes:\n" \
        + "  - { name: keyed, match: { pathPrefix: /k }, auth: { apiKey: true }, cluster: c1 }\n" + clusters
    probe = ("/k/x", f"X-Api-Key: pck_{size - 1:012x}_bigconfig-secret-{size - 1}")
open(f"{work}/portcullis.yaml", "w").write(config)
print(probe[0])
print(probe[1])
PY
}

echo
echo "| data | entries | validate | validate RSS | run → first answer | RSS at first answer | rps through the lookup |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
data_rows=()
for m in $map_sizes; do data_rows+=("map $m"); done
for k in $consumer_sizes; do data_rows+=("keys-yaml $k" "keys-json $k"); done
for row in "${data_rows[@]}"; do
  read -r kind size <<<"$row"
  free_port port; free_port admin
  mapfile -t probe < <(generate_data "$kind" "$size" "$port" "$admin")
  validate_config "$kind $size"
  url="http://127.0.0.1:$port${probe[0]}"
  start_gateway "$kind-$size" "$url" -H "${probe[1]}"
  rps="-"
  if ((wrk_seconds > 0)); then
    rps=$(wrk -t1 -c16 -d"${wrk_seconds}s" -H "${probe[1]}" "$url" 2>/dev/null | awk '/Requests\/sec/ { printf "%d", $2 }')
  fi
  kill "$gw"; wait "$gw" 2>/dev/null || true
  printf '| %s | %s | %.2f s | %d MB | %.2f s | %d MB | %s |\n' "$kind" "$size" "$v_wall" $((v_rss / 1024)) \
    "$(echo "$first_ms / 1000" | bc -l)" "$rss_mb" "$rps"
done

echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
