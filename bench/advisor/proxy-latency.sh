#!/usr/bin/env bash
# Proxied latency while the advisor runs (issue 17: the engine "never touches the request path"). One gateway
# (`portcullis run`) whose analytics store holds the cycle benchmark's big dataset (30 days of rollups for 200
# routes × 1,000 consumers, 2 days of samples, 7 days of arrivals; generated once by AdviceCycleBenchmark and
# moved to end at the current hour, so the gateway's real clock sees it as recent) and whose config has the
# benchmark's 200 routes and 20 clusters, plus one public route to a local nginx origin. wrk drives that route
# (HTTP/1.1 keep-alive) with the advisor on (advice.interval: INTERVAL, default 10s, so several cycles —
# the cold first one included — fall in each measurement) and with advice.enabled: false, in the same run,
# alternating in ROUNDS rounds (order rotated), a fresh copy of the store each time. Reports wrk's p50/p99 and
# rps per mode (median over rounds) and the advisor runs the gateway made during each measurement (/metrics).
#
#   bench/advisor/proxy-latency.sh [FOLDER]      env: ROUNDS=2 DURATION=60 WARMUP=5 CONNS=32 THREADS=2 INTERVAL=10s REUSE=0
#
# Results: FOLDER/results.txt (default bench/out/advisor-proxy). Everything started here is stopped on exit.
set -euo pipefail
export LC_ALL=C
root="$(cd "$(dirname "$0")/../.." && pwd)"
folder="$(realpath -m "${1:-$root/bench/out/advisor-proxy}")"
data="$root/bench/out/advisor-cycle"
rounds=${ROUNDS:-2} duration=${DURATION:-60} warmup=${WARMUP:-5} conns=${CONNS:-32} threads=${THREADS:-2} interval=${INTERVAL:-10s}
mkdir -p "$folder" "$data"
results="$folder/results.txt"
: >"$results"
say() { echo "$*" | tee -a "$results"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "not ready: $1" >&2; return 1; }

# The store (generated once, ~90 s) and its copy shifted to now.
# REUSE=1: keep an existing shifted copy (e.g. while cycle.sh holds the generated store open).
if [[ ${REUSE:-0} == 1 && -f "$folder/store-now.duckdb" ]]; then
  say "reusing $folder/store-now.duckdb (shifted when it was written: its data ends at that hour)"
else
  dotnet build "$root/tests/Portcullis.Tests/Portcullis.Tests.csproj" -c Release -v q --nologo >/dev/null
  PORTCULLIS_BENCH_ADVICE_CYCLE="$data" PORTCULLIS_BENCH_ADVICE_CYCLE_GENERATE_ONLY=1 PORTCULLIS_BENCH_ADVICE_CYCLE_SHIFTED="$folder/store-now.duckdb" \
    dotnet test "$root/tests/Portcullis.Tests" -c Release --no-build --filter "FullyQualifiedName~AdviceCycleBenchmark" >/dev/null
  say "$(grep -h "rollups\|shifted" "$data/results.txt")"
fi
dotnet build "$root/src/Portcullis.Cli/Portcullis.Cli.csproj" -c Release -v q --nologo >/dev/null
cli="$root/src/Portcullis.Cli/bin/Release/net10.0/portcullis.dll"

# The origin: nginx, one worker, a small body.
origin_port=$(free_port)
mkdir -p "$folder/origin"
cat >"$folder/origin/nginx.conf" <<NGINX
worker_processes 1;
pid $folder/origin/nginx.pid;
daemon off;
error_log $folder/origin/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$origin_port;
    location / { default_type text/plain; return 200 "hello from the origin\n"; }
  }
}
NGINX
nginx -p "$folder/origin" -c "$folder/origin/nginx.conf" >"$folder/origin/stdout.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$origin_port/small"

config() { # $1 mode (on|off) $2 port $3 admin port $4 store
  {
    echo "listeners:"
    echo "  - { name: public, address: \"127.0.0.1:$2\" }"
    echo "  - { name: admin, address: \"127.0.0.1:$3\", admin: true }"
    echo "identity:"
    echo "  apiKeys: { file: keys.yaml }"
    echo "analytics:"
    echo "  path: \"$4\""
    if [[ $1 == on ]]; then echo "advice: { interval: $interval }"; else echo "advice: { enabled: false }"; fi
    echo "rateLimits:"
    echo "  per-consumer: { key: [consumer], limit: 20, per: 1s, burst: 40 }"
    echo "routes:"
    echo "  - { name: bench, match: { pathPrefix: /small }, cluster: origin }"
    for r in $(seq 0 199); do
      echo "  - { name: route-$r, match: { pathPrefix: /route-$r }, auth: { apiKey: true }, cluster: cluster-$((r % 20))$([[ $((r % 2)) == 0 ]] && echo ", rateLimits: [per-consumer]") }"
    done
    echo "clusters:"
    echo "  origin: { destinations: [\"http://127.0.0.1:$origin_port\"] }"
    for c in $(seq 0 19); do
      echo "  cluster-$c: { destinations: [\"http://10.0.$c.1:8080\", \"http://10.0.$c.2:8080\"]$([[ $((c % 2)) == 0 ]] && echo ", healthCheck: { active: { path: /healthz, interval: 5s } }") }"
    done
  } >"$folder/$1/portcullis.yaml"
  echo "consumers: {}" >"$folder/$1/keys.yaml"
}

metric() { # $1 admin port $2 metric name: the value summed over label sets (0 when absent)
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" { s += $2 } END { printf "%.3f", s + 0 }'
}

declare -A p50 p99 rps runs
for round in $(seq 1 "$rounds"); do
  order=(on off); ((round % 2 == 0)) && order=(off on)
  for mode in "${order[@]}"; do
    mkdir -p "$folder/$mode"
    rm -f "$folder/$mode"/store.duckdb*
    cp "$folder/store-now.duckdb" "$folder/$mode/store.duckdb"
    port=$(free_port) admin=$(free_port)
    config "$mode" "$port" "$admin" "$folder/$mode/store.duckdb"
    (cd "$folder/$mode" && exec dotnet "$cli" run -c portcullis.yaml) >"$folder/$mode/gateway.log" 2>&1 &
    gateway=$!
    pids+=("$gateway")
    wait_http "http://127.0.0.1:$port/small"
    wrk -t"$threads" -c"$conns" -d"${warmup}s" "http://127.0.0.1:$port/small" >/dev/null
    before=$(metric "$admin" portcullis_advice_run_duration_seconds_count)
    load=$(cut -d' ' -f1 /proc/loadavg)
    wrk -t"$threads" -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$port/small" >"$folder/$mode/wrk-$round.txt"
    after=$(metric "$admin" portcullis_advice_run_duration_seconds_count)
    sum=$(metric "$admin" portcullis_advice_run_duration_seconds_sum)
    kill "$gateway"; wait "$gateway" 2>/dev/null || true
    w="$folder/$mode/wrk-$round.txt"
    l50=$(awk '$1 == "50%" { print $2 }' "$w") l99=$(awk '$1 == "99%" { print $2 }' "$w") r=$(awk '/^Requests\/sec/ { print $2 }' "$w")
    errs=$(awk '/Non-2xx|Socket errors/' "$w" | tr '\n' ' ')
    p50[$mode]+="$l50 " p99[$mode]+="$l99 " rps[$mode]+="$r "
    say "round $round advice $mode: p50 $l50, p99 $l99, $r req/s; advisor runs during the measurement: $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%d", a - b }') (all runs so far took ${sum} s in total); load average $load${errs:+; $errs}"
  done
done

ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.2f\n", v }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
say "summary (median of $rounds rounds; wrk -t$threads -c$conns -d${duration}s, advice.interval $interval, $(nproc) cores):"
for mode in on off; do
  say "  advice $mode: p50 $(echo "${p50[$mode]}" | tr ' ' '\n' | grep -v '^$' | ms | median) ms, p99 $(echo "${p99[$mode]}" | tr ' ' '\n' | grep -v '^$' | ms | median) ms, $(echo "${rps[$mode]}" | median) req/s"
done
