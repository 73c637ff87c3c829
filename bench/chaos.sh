#!/usr/bin/env bash
# Portcullis chaos harness (issue 14): real faults against the real gateway under real load, on 127.0.0.1.
#
#   bench/chaos.sh [--quick] [--scenario NAME]... [--soak SECONDS] [--no-publish]
#
# Scenarios (docs/reliability.md explains each expectation):
#   reload        reload every 2 s under load (file rewrite, SIGHUP, POST /admin/reload in turn)
#   backend-kill  kill -9 a backend under load and restart it; idempotent GETs must never see a 502
#   slow-backend  upstream slower than timeouts.request: 504 problem+json, latency bounded by the timeout
#   idp           JWKS provider down, key rotated, key withdrawn (window and admin refresh), empty JWKS
#   redis         3 gateways share a limit on one redis-server under CPU contention; Redis SIGSTOP and kill -9
#   tls-rotate    listener certificate rotated every 2 s under TLS load with a handshake per request
#   sigterm       SIGTERM with requests in flight: every one completes
#   soak          steady load, RSS sampled; RSS flat within a bound and one access-log line per request
#   idle          2,000 idle keep-alive connections: the gateway still answers, RSS bounded
#
# Every process started here is stopped by its PID on exit (trap). stdout: one Markdown table, one row per
# scenario; stderr: progress. Exit code 1 when any verdict is FAIL, 2 on usage errors.
# Logs and configs of the last run: bench/out/chaos/ (copied there on exit).
set -uo pipefail
export LC_ALL=C
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=$root/bench
out=$bench/out
ALL_SCENARIOS=(reload backend-kill slow-backend idp redis tls-rotate sigterm soak idle)

usage() {
  cat <<EOF
usage: bench/chaos.sh [--quick] [--scenario NAME]... [--soak SECONDS] [--no-publish]
  --quick          short phases, soak 30 s: every scenario in 4–5 minutes
  --scenario NAME  run only this scenario (repeatable or comma-separated); known: ${ALL_SCENARIOS[*]}
  --soak SECONDS   soak duration (default 480, --quick 30)
  --no-publish     use bench/out/portcullis and bench/out/chaoskit as they are
EOF
}

quick=0 no_publish=0 soak_s="" scenario_args=()
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --scenario) scenario_args+=("${2:?--scenario needs a name}"); shift ;;
    --scenario=*) scenario_args+=("${1#*=}") ;;
    --soak) soak_s=${2:?--soak needs seconds}; shift ;;
    --no-publish) no_publish=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench/chaos.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then : "${soak_s:=30}"; else : "${soak_s:=480}"; fi
[[ $soak_s =~ ^[0-9]+$ ]] && ((soak_s >= 10)) || { echo "--soak takes whole seconds, at least 10" >&2; exit 2; }
scenarios=()
if ((${#scenario_args[@]} == 0)); then scenarios=("${ALL_SCENARIOS[@]}"); else
  for arg in "${scenario_args[@]}"; do
    IFS=, read -ra names <<<"$arg"
    for name in "${names[@]}"; do
      [[ " ${ALL_SCENARIOS[*]} " == *" $name "* ]] || { echo "unknown scenario '$name' (known: ${ALL_SCENARIOS[*]})" >&2; exit 2; }
      scenarios+=("$name")
    done
  done
fi
# Phase lengths (seconds): load phases are short in quick mode, long enough to cross several reloads,
# kills and rotations either way.
if ((quick)); then
  LOAD_S=14 IDP_LOAD_S=3 REDIS_PHASE_S=8
else
  LOAD_S=60 IDP_LOAD_S=8 REDIS_PHASE_S=9
fi

log() { printf '[chaos %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in curl wrk jq openssl nginx dotnet python3 redis-server redis-cli; do
  command -v "$tool" >/dev/null || die "$tool is required (apt-get install wrk jq openssl nginx redis-server python3; .NET 10 SDK)"
done

# ---------------------------------------------------------------- processes (every one by PID)
work=$(mktemp -d /tmp/portcullis-chaos.XXXXXX)
chmod 755 "$work"
declare -a started_pids=()
cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  for pid in "${started_pids[@]}"; do
    kill -CONT "$pid" 2>/dev/null # a SIGSTOPped redis-server would not see the TERM
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${started_pids[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid did not stop on TERM; killing it"; kill -KILL "$pid" 2>/dev/null; }
  done
  wait 2>/dev/null
  rm -rf "$out/chaos" && mkdir -p "$out/chaos" && cp -r "$work"/. "$out/chaos/" 2>/dev/null
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_bg() { # LOGFILE cmd...: start in the background, BG_PID := its PID (remembered for cleanup)
  local logfile=$1
  shift
  "$@" >"$logfile" 2>&1 &
  BG_PID=$!
  started_pids+=("$BG_PID")
}
stop_pid() { # PID [SIGNAL]: signal (default TERM), wait up to 15 s, then KILL; reaps it. STOP_RC := exit code
  local pid=$1 sig=${2:-TERM} i
  kill -CONT "$pid" 2>/dev/null
  kill "-$sig" "$pid" 2>/dev/null
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  STOP_RC=$?
  local kept=() q
  for q in "${started_pids[@]}"; do [[ $q == "$pid" ]] || kept+=("$q"); done
  started_pids=("${kept[@]}") # never signal a PID that may since belong to someone else
}

used_ports=" "
free_port() { # VAR := a loopback port nobody listens on
  local p _
  for _ in $(seq 500); do
    p=$((20000 + RANDOM % 12000))
    [[ $used_ports == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "
      printf -v "$1" '%s' "$p"
      return
    fi
  done
  die "no free loopback port found"
}
wait_http() { # URL PID [STATUS]: until URL answers STATUS (default 200), at most 60 s; fails if PID exits
  local url=$1 pid=$2 want=${3:-200} got i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || { log "pid $pid exited while waiting for $url"; return 1; }
    got=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "$url")
    [[ $got == "$want" ]] && return 0
    sleep 0.1
  done
  log "$url did not answer $want within 60 s (last: $got)"
  return 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- build
publish() { # PROJECT DEST EXE STAMP INPUTS...
  local project=$1 dest=$2 exe=$3 stamp=$out/.stamp-$4
  shift 4
  if ((no_publish)); then [[ -x $dest/$exe ]] || die "--no-publish: $dest/$exe does not exist"; return; fi
  if [[ -f $stamp && -x $dest/$exe ]] && [[ -z $(find "$@" \( -name bin -o -name obj \) -prune -o -type f -newer "$stamp" -print -quit 2>/dev/null) ]]; then
    log "publish $project: up to date"
    return
  fi
  log "publish $project (Release) -> ${dest#"$root"/}"
  touch "$stamp.new"
  dotnet publish "$root/$project" -c Release -r linux-x64 --self-contained false --artifacts-path "$out/artifacts" \
    -o "$dest" --nologo -v quiet -clp:ErrorsOnly >"$out/publish-$exe.log" 2>&1 || { tail -n 20 "$out/publish-$exe.log" >&2; die "publish $project failed"; }
  mv "$stamp.new" "$stamp"
}
mkdir -p "$out"
publish src/Portcullis.Cli "$out/portcullis" portcullis portcullis "$root/src" "$root/Directory.Build.props" "$root/Directory.Packages.props"
publish bench/chaos/ChaosKit "$out/chaoskit" chaoskit chaoskit "$bench/chaos/ChaosKit" "$root/Directory.Build.props" "$root/Directory.Packages.props"
PC=$out/portcullis/portcullis
KIT=$out/chaoskit/chaoskit

# ---------------------------------------------------------------- parts every scenario uses
origin_port=""
start_origin() { # one nginx (1 worker) answering 200 "ok" on every path; ORIGIN_PID, origin_port
  free_port origin_port
  mkdir -p "$work/origin"
  cat >"$work/origin/nginx.conf" <<EOF
daemon off;
master_process off;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $work/origin/client_body;
    proxy_temp_path $work/origin/proxy;
    fastcgi_temp_path $work/origin/fastcgi;
    uwsgi_temp_path $work/origin/uwsgi;
    scgi_temp_path $work/origin/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$origin_port;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
  start_bg "$work/origin/stdout.log" nginx -p "$work/origin" -e "$work/origin/error.log" -c "$work/origin/nginx.conf"
  ORIGIN_PID=$BG_PID
  wait_http "http://127.0.0.1:$origin_port/" "$ORIGIN_PID" || die "origin nginx did not start"
}

gateway_head() { # PORT ADMIN_PORT: listeners (public + loopback admin) and common settings
  cat <<EOF
listeners:
  - name: public
    address: 127.0.0.1:$1
  - name: admin
    address: 127.0.0.1:$2
    admin: true
EOF
}
start_gateway() { # NAME CONFIG ADMIN_PORT: GW_PID; ready when /readyz answers 200
  local name=$1 config=$2 admin=$3
  "$PC" validate -c "$config" >"$work/$name.validate.log" 2>&1 || { cat "$work/$name.validate.log" >&2; die "$name: config invalid"; }
  start_bg "$work/$name.log" env DOTNET_gcServer=1 "$PC" run -c "$config"
  GW_PID=$BG_PID
  wait_http "http://127.0.0.1:$admin/readyz" "$GW_PID" || { tail -n 30 "$work/$name.log" >&2; die "$name did not start"; }
}

# load NAME URL CONNS SECONDS [wrk args...]: wrk -t1 with the status-counting script; the result line goes to
# $work/$SC.loads (one JSON per load run) and to LOAD_JSON.
load() {
  local name=$1 url=$2 conns=$3 secs=$4
  shift 4
  wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s -s "$bench/chaos/report.lua" "$@" "$url" >"$work/$SC.$name.wrk" 2>&1
  LOAD_JSON=$(sed -n 's/^CHAOSJSON //p' "$work/$SC.$name.wrk")
  [[ -n $LOAD_JSON ]] || { cat "$work/$SC.$name.wrk" >&2; LOAD_JSON='{"requests":0,"statuses":{},"err_connect":1,"err_read":0,"err_write":0,"err_timeout":0,"p99_us":0}'; }
  jq -c --arg n "$name" '. + {name: $n}' <<<"$LOAD_JSON" >>"$work/$SC.loads"
}
load_bg() { # like load, in the background: LOAD_PID (wait for it, then read $work/$SC.NAME.wrk with load_collect)
  local name=$1 url=$2 conns=$3 secs=$4
  shift 4
  wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s -s "$bench/chaos/report.lua" "$@" "$url" >"$work/$SC.$name.wrk" 2>&1 &
  LOAD_PID=$!
}
load_collect() { # NAME: after a load_bg finished
  LOAD_JSON=$(sed -n 's/^CHAOSJSON //p' "$work/$SC.$1.wrk")
  [[ -n $LOAD_JSON ]] || { cat "$work/$SC.$1.wrk" >&2; LOAD_JSON='{"requests":0,"statuses":{},"err_connect":1,"err_read":0,"err_write":0,"err_timeout":0,"p99_us":0}'; }
  jq -c --arg n "$1" '. + {name: $n}' <<<"$LOAD_JSON" >>"$work/$SC.loads"
}
status_of() { jq -r --arg s "$1" '.statuses[$s] // 0' <<<"$LOAD_JSON"; } # STATUS -> count in the last load

# The scenario's totals over all its loads: T_REQ, T_BAD (non-2xx other than ALLOWED statuses), T_NON2XX
# (text), T_SOCK, T_TIMEOUT, T_P99 (ms, the worst load's p99).
totals() { # ALLOWED_STATUSES (space-separated, e.g. "429")
  local f=$work/$SC.loads
  [[ -s $f ]] || { T_REQ=0 T_BAD=0 T_NON2XX="-" T_SOCK=0 T_TIMEOUT=0 T_P99=0; return; }
  read -r T_REQ T_BAD T_SOCK T_TIMEOUT T_P99 < <(jq -rs --arg allowed " $1 " '
    (map(.statuses | to_entries) | add // [] | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)})) as $st
    | [ (map(.requests) | add),
        ($st | map(.key as $k | select(($k | startswith("2") | not) and ($allowed | contains(" " + $k + " ") | not)) | .value) | add // 0),
        (map(.err_connect + .err_read + .err_write) | add),
        (map(.err_timeout) | add),
        (map(.p99_us) | max / 1000 * 100 | round / 100) ] | @tsv' "$f")
  T_NON2XX=$(jq -rs '(map(.statuses | to_entries) | add // [] | group_by(.key)
    | map(select(.[0].key | startswith("2") | not) | "\(.[0].key)×\(map(.value) | add)") | join(" ")) | if . == "" then "0" else . end' "$f")
}

ROWS=$work/rows.tsv
: >"$ROWS"
row() { # SCENARIO VERDICT NOTE (uses the totals)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$T_REQ" "$T_NON2XX" "$T_SOCK" "$T_TIMEOUT" "$T_P99" "$2" "$3" >>"$ROWS"
  log "$1: $2 — $3"
}
verdict() { # CONDITION-RESULT(0/1) -> PASS/FAIL
  (($1)) && echo PASS || echo FAIL
}

# ---------------------------------------------------------------- scenarios
sc_reload() {
  start_origin
  local port admin cfg=$work/reload/portcullis.yaml i n=0 gen0 gen1 last
  free_port port; free_port admin
  mkdir -p "$work/reload"
  write_cfg() { # GENERATION: a changed header value each time, so every write is a real new config
    {
      gateway_head "$port" "$admin"
      cat <<EOF
routes:
  - name: all
    match: { pathPrefix: / }
    cluster: origin
    requestHeaders:
      set: { X-Chaos-Generation: "gen-$1" }
clusters:
  origin:
    destinations: [http://127.0.0.1:$origin_port]
EOF
    } >"$cfg.tmp" && mv "$cfg.tmp" "$cfg" # atomic: the watcher never sees half a file
  }
  write_cfg 0
  start_gateway reload "$cfg" "$admin"
  local gw=$GW_PID
  gen0=$(curl -s "http://127.0.0.1:$admin/admin/config" | jq -r '.generation // empty')
  load_bg main "http://127.0.0.1:$port/" 32 "$LOAD_S"
  local wrk=$LOAD_PID t_end=$((SECONDS + LOAD_S - 1))
  while ((SECONDS < t_end)); do
    sleep 2
    n=$((n + 1))
    write_cfg "$n" # the file watcher reloads; every second change also gets a SIGHUP or POST /admin/reload
    case $((n % 4)) in
      1) kill -HUP "$gw" ;;
      3) curl -s -o /dev/null -X POST "http://127.0.0.1:$admin/admin/reload" ;;
    esac
  done
  wait "$wrk"
  load_collect main
  sleep 1.5
  gen1=$(curl -s "http://127.0.0.1:$admin/admin/config" | jq -r '.generation // empty')
  last=$(curl -s "http://127.0.0.1:$admin/admin/config" | grep -c "gen-$n\"" || true)
  totals ""
  local ok=$((T_BAD == 0 && T_SOCK == 0 && T_TIMEOUT == 0 && last > 0))
  row reload "$(verdict $ok)" "expect 0 errors and the last of $n config writes live: generation $gen0 → $gen1, last write live: $([[ $last -gt 0 ]] && echo yes || echo NO)"
  stop_pid "$gw"
  stop_pid "$ORIGIN_PID"
}

sc_backend_kill() {
  local port admin b1 b2 cfg=$work/backend-kill/portcullis.yaml kills=0 gw p pid
  free_port port; free_port admin; free_port b1; free_port b2
  mkdir -p "$work/backend-kill"
  declare -A bpid
  start_echo() { # PORT
    start_bg "$work/backend-kill/echo-$1.log" "$PC" echo --port "$1"
    bpid[$1]=$BG_PID
    wait_http "http://127.0.0.1:$1/healthz" "$BG_PID" || die "echo backend on $1 did not start"
  }
  start_echo "$b1"; start_echo "$b2"
  {
    gateway_head "$port" "$admin"
    cat <<EOF
routes:
  - name: all
    match: { pathPrefix: / }
    cluster: backends
clusters:
  backends:
    retries: 1
    loadBalancing: roundRobin
    destinations: [http://127.0.0.1:$b1, http://127.0.0.1:$b2]
    healthCheck:
      active: { path: /healthz, interval: 1s, timeout: 1s, unhealthyThreshold: 1, healthyThreshold: 1 }
      passive: { failures: 3, reactivation: 3s }
EOF
  } >"$cfg"
  start_gateway backend-kill "$cfg" "$admin"
  gw=$GW_PID
  load_bg main "http://127.0.0.1:$port/orders/1" 32 "$LOAD_S"
  local wrk=$LOAD_PID t_end=$((SECONDS + LOAD_S - 3))
  sleep 2
  while ((SECONDS < t_end)); do
    p=$([[ $((kills % 2)) == 0 ]] && echo "$b1" || echo "$b2")
    kill -KILL "${bpid[$p]}" # mid-load: requests in flight on pooled connections to it are lost
    wait "${bpid[$p]}" 2>/dev/null
    kills=$((kills + 1))
    sleep 1.5
    start_echo "$p"
    sleep 2
  done
  wait "$wrk"
  load_collect main
  totals ""
  local e502=$(jq -rs 'map(.statuses["502"] // 0) | add' "$work/$SC.loads")
  local ok=$((T_BAD == 0 && T_SOCK == 0 && T_TIMEOUT == 0 && kills >= 2))
  row backend-kill "$(verdict $ok)" "$kills kill -9 + restarts of one of 2 backends (retries: 1): expect 0 502 (got $e502) and 0 other errors"
  stop_pid "$gw"
  for pid in "${bpid[@]}"; do stop_pid "$pid"; done
}

sc_slow_backend() {
  local port admin slow cfg=$work/slow-backend/portcullis.yaml gw ctype fast
  free_port port; free_port admin; free_port slow
  mkdir -p "$work/slow-backend"
  start_origin
  start_bg "$work/slow-backend/slow.log" "$KIT" slow --port "$slow" --delay-ms 5000
  local spid=$BG_PID
  wait_http "http://127.0.0.1:$slow/healthz" "$spid" || die "slow upstream did not start"
  {
    gateway_head "$port" "$admin"
    cat <<EOF
routes:
  - name: slow
    match: { pathPrefix: /slow }
    cluster: slow
  - name: fast
    match: { pathPrefix: / }
    cluster: origin
clusters:
  slow:
    destinations: [http://127.0.0.1:$slow]
    timeouts: { request: 1s }
  origin:
    destinations: [http://127.0.0.1:$origin_port]
EOF
  } >"$cfg"
  start_gateway slow-backend "$cfg" "$admin"
  gw=$GW_PID
  # 64 requests waiting on the slow upstream all the time, and fast traffic beside them
  load_bg slow "http://127.0.0.1:$port/slow" 64 "$((LOAD_S / 2 + 2))"
  local w1=$LOAD_PID
  load_bg fast "http://127.0.0.1:$port/fast" 8 "$((LOAD_S / 2 + 2))"
  local w2=$LOAD_PID
  wait "$w1" "$w2"
  load_collect slow
  local slow_json=$LOAD_JSON
  load_collect fast
  local fast_json=$LOAD_JSON
  ctype=$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "http://127.0.0.1:$port/slow")
  totals "504"
  local slow_p99 fast_p99 n504 nslow
  slow_p99=$(jq -r '.p99_us / 1000 | round' <<<"$slow_json")
  fast_p99=$(jq -r '.p99_us / 1000 * 10 | round / 10' <<<"$fast_json")
  n504=$(jq -r '.statuses["504"] // 0' <<<"$slow_json")
  nslow=$(jq -r '.requests' <<<"$slow_json")
  local ok=$((T_BAD == 0 && T_SOCK == 0 && T_TIMEOUT == 0 && n504 == nslow && nslow > 0 && slow_p99 < 2000))
  [[ $ctype == "504 application/problem+json"* ]] || ok=0
  ok=$((ok && $(jq -r '.statuses["200"] // 0' <<<"$fast_json") > 0))
  row slow-backend "$(verdict $ok)" "upstream 5 s, timeouts.request 1s: expect every /slow a 504 problem+json within 2 s and /fast unaffected; /slow $n504/$nslow 504 ($ctype), p99 ${slow_p99} ms; /fast p99 ${fast_p99} ms"
  stop_pid "$gw"
  stop_pid "$spid"
  stop_pid "$ORIGIN_PID"
}

sc_idp() {
  local port admin idp cfg=$work/idp/portcullis.yaml gw ipid d=$work/idp/www k
  free_port port; free_port admin; free_port idp
  mkdir -p "$d"
  start_origin
  for k in k1 k2 k3; do openssl genrsa -out "$work/idp/$k.pem" 2048 2>/dev/null || die "openssl genrsa failed"; done
  publish_jwks() { # KID... (none: an empty key set); atomic replace
    local args=() kid
    for kid in "$@"; do args+=(--key "$work/idp/$kid.pem:$kid"); done
    "$KIT" jwks "${args[@]}" >"$d/jwks.tmp" && mv "$d/jwks.tmp" "$d/jwks.json"
  }
  token() { "$KIT" mint --key "$work/idp/$1.pem" --kid "$1" --iss https://idp.chaos.test/ --aud chaos-api; }
  start_idp() {
    start_bg "$work/idp/http.log" python3 -m http.server "$idp" --bind 127.0.0.1 --directory "$d"
    ipid=$BG_PID
    wait_http "http://127.0.0.1:$idp/jwks.json" "$ipid" || die "JWKS server did not start"
  }
  publish_jwks k1
  start_idp
  local t1 t2
  t1=$(token k1)
  t2=$(token k2)
  {
    gateway_head "$port" "$admin"
    cat <<EOF
identity:
  issuers:
    - name: chaos
      jwksUri: http://127.0.0.1:$idp/jwks.json
      issuer: https://idp.chaos.test/
      audiences: [chaos-api]
      keys: { refreshInterval: 4s, minRefreshInterval: 1s, unknownKidRefreshInterval: 1s, staleFor: 1h, timeout: 1s }
routes:
  - name: api
    match: { pathPrefix: / }
    auth: { issuers: [chaos] }
    cluster: origin
clusters:
  origin:
    destinations: [http://127.0.0.1:$origin_port]
EOF
  } >"$cfg"
  start_gateway idp "$cfg" "$admin"
  gw=$GW_PID
  local url="http://127.0.0.1:$port/api" notes=() ok=1 c
  code() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$url"; }

  # 1. provider down: the cached k1 keeps verifying across several refresh intervals
  load baseline "$url" 16 "$IDP_LOAD_S" -H "Authorization: Bearer $t1"
  stop_pid "$ipid" KILL
  load idp-down "$url" 16 "$((IDP_LOAD_S > 9 ? IDP_LOAD_S : 9))" -H "Authorization: Bearer $t1"
  c=$(status_of 200)
  notes+=("down: $c/$(jq -r .requests <<<"$LOAD_JSON") 200 with k1")
  # 2. provider back with a rotated set (k1, k2): the first k2 token is accepted (unknown-kid fetch)
  publish_jwks k1 k2
  start_idp
  c=$(code "$t2")
  [[ $c == 200 ]] || ok=0
  notes+=("rotate: first k2 token $c")
  load rotated "$url" 16 "$IDP_LOAD_S" -H "Authorization: Bearer $t2"
  # 3. k1 withdrawn (set = k2): refused within refreshInterval (4s) + timeout (1s), no admin call
  c=$(code "$t1")
  [[ $c == 200 ]] || { ok=0; notes+=("k1 before withdrawal: $c"); }
  publish_jwks k2
  local t0=$EPOCHREALTIME waited=""
  while awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {exit !(b - a < 10)}'; do
    c=$(code "$t1")
    [[ $c == 401 ]] && { waited=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}'); break; }
    sleep 0.2
  done
  if [[ -n $waited ]] && awk -v w="$waited" 'BEGIN {exit !(w <= 6)}'; then notes+=("withdrawn k1 refused after ${waited}s (bound 4s+1s)"); else ok=0; notes+=("withdrawn k1 still accepted after ${waited:-10+}s (bound 5s)"); fi
  # 4. replace: k3 added and k2 withdrawn at once, then POST /admin/issuers/chaos/refresh: k2 refused at once
  publish_jwks k3
  local r
  r=$(curl -s -X POST "http://127.0.0.1:$admin/admin/issuers/chaos/refresh" | jq -r '.result // "?"')
  c=$(code "$t2")
  [[ $c == 401 && $r == refreshed ]] || ok=0
  notes+=("replace + admin refresh ($r): k2 $c")
  local t3
  t3=$(token k3)
  load replaced "$url" 16 "$IDP_LOAD_S" -H "Authorization: Bearer $t3"
  # 5. empty JWKS: a failed fetch, k3 keeps verifying past several refresh intervals
  jwks_failures() { curl -s "http://127.0.0.1:$admin/metrics" | awk '/^portcullis_jwks_fetch_failures_total/ {s += $NF} END {print s + 0}'; }
  local f0 f1
  f0=$(jwks_failures)
  publish_jwks
  load empty-jwks "$url" 16 "$((IDP_LOAD_S > 9 ? IDP_LOAD_S : 9))" -H "Authorization: Bearer $t3"
  c=$(status_of 200)
  f1=$(jwks_failures)
  notes+=("empty set: $c/$(jq -r .requests <<<"$LOAD_JSON") 200 with k3, counted as $((f1 - f0)) failed fetch(es)")
  totals ""
  ok=$((ok && T_BAD == 0 && T_SOCK == 0 && T_TIMEOUT == 0 && f1 > f0))
  row idp "$(verdict $ok)" "expect 0 errors under load with the current key; $(IFS=';'; echo "${notes[*]}" | sed 's/;/; /g')"
  stop_pid "$gw"
  stop_pid "$ipid"
  stop_pid "$ORIGIN_PID"
}

sc_redis() {
  local rport gw_ports=() admins=() gws=() i cfg hog=() notes=() ok=1
  start_origin
  free_port rport
  mkdir -p "$work/redis"
  start_bg "$work/redis/redis.log" redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no
  local rpid=$BG_PID
  for ((i = 0; i < 50; i++)); do redis-cli -p "$rport" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  for i in 1 2 3; do
    local gp ga
    free_port gp; free_port ga
    gw_ports+=("$gp"); admins+=("$ga")
    cfg=$work/redis/gw$i.yaml
    {
      gateway_head "$gp" "$ga"
      cat <<EOF
stores:
  redis: { connection: "127.0.0.1:$rport", instances: 3 }
rateLimits:
  shared: { key: ["header:X-Chaos-Phase"], algorithm: slidingWindow, limit: 300, per: 1h, store: redis, onStoreFailure: local, headers: false }
routes:
  - name: limited
    match: { pathPrefix: / }
    cluster: origin
    rateLimits: [shared]
clusters:
  origin:
    destinations: [http://127.0.0.1:$origin_port]
EOF
    } >"$cfg"
    start_gateway "redis-gw$i" "$cfg" "$ga"
    gws+=("$GW_PID")
  done
  phase() { # NAME: the 3 gateways under load at once, a fresh key (so a fresh window) per phase; P_TOTAL, P_EACH
    local name=$1 pids=() j key=$1-$RANDOM$RANDOM # the same key on all 3 gateways
    for j in 0 1 2; do
      load_bg "$name-gw$((j + 1))" "http://127.0.0.1:${gw_ports[$j]}/" 8 "$REDIS_PHASE_S" -H "X-Chaos-Phase: $key"
      pids+=("$LOAD_PID")
    done
    wait "${pids[@]}"
    P_TOTAL=0 P_EACH=""
    P_FB=$(fallbacks)
    log "redis phase $name: decisions without Redis so far (cumulative): $P_FB"
    for j in 1 2 3; do
      load_collect "$name-gw$j"
      local a
      a=$(status_of 200)
      P_TOTAL=$((P_TOTAL + a))
      P_EACH+="${P_EACH:+/}$a"
    done
  }
  within() { (($1 >= 270 && $1 <= 330)); } # 300 ± 10 %
  fallbacks() { # decisions taken without Redis so far, summed over the 3 gateways' /metrics, by decision
    local j
    for j in 0 1 2; do curl -s --max-time 5 "http://127.0.0.1:${admins[$j]}/metrics"; done |
      awk '/^portcullis_traffic_store_unavailable_total/ {match($0, /decision="[^"]*"/); d = substr($0, RSTART + 10, RLENGTH - 11); n[d] += $NF}
        END {for (d in n) printf "%s%s=%d", (k++ ? " " : ""), d, n[d]; if (!k) printf "none"}'
  }
  start_hog() {
    if command -v stress-ng >/dev/null; then
      start_bg "$work/redis/stress.log" stress-ng --cpu 4 --timeout 600s
      hog+=("$BG_PID")
    else
      for _ in 1 2 3 4; do start_bg /dev/null sh -c 'while :; do :; done'; hog+=("$BG_PID"); done
    fi
  }
  if ((!quick)); then
    phase quiet
    within "$P_TOTAL" || ok=0
    notes+=("quiet: $P_TOTAL ($P_EACH)")
  fi
  start_hog
  sleep 1
  phase contended
  within "$P_TOTAL" || ok=0
  notes+=("CPU-contended ($(command -v stress-ng >/dev/null && echo 'stress-ng --cpu 4' || echo '4 busy loops')): $P_TOTAL ($P_EACH), decisions without Redis so far: $P_FB")
  kill -STOP "$rpid"
  phase redis-stopped
  within "$P_TOTAL" || ok=0
  local e
  for e in ${P_EACH//\// }; do ((e <= 110)) || ok=0; done
  notes+=("Redis SIGSTOP: $P_TOTAL ($P_EACH)")
  kill -CONT "$rpid"
  sleep 3 # the breaker's retryAfter (2s), then a probe
  kill -KILL "$rpid"
  wait "$rpid" 2>/dev/null
  phase redis-killed
  within "$P_TOTAL" || ok=0
  for e in ${P_EACH//\// }; do ((e <= 110)) || ok=0; done
  notes+=("Redis kill -9: $P_TOTAL ($P_EACH)")
  for i in "${hog[@]}"; do stop_pid "$i"; done
  local fb
  fb=$(curl -s "http://127.0.0.1:${admins[0]}/metrics" | grep -E '^portcullis_[a-z_]*(fallback|fail_open|store)[a-z_]*' | head -n 3 | tr '\n' ' ')
  [[ -n $fb ]] && log "redis: gateway 1 metrics: $fb"
  totals "429"
  ok=$((ok && T_BAD == 0 && T_SOCK == 0 && T_TIMEOUT == 0))
  row redis "$(verdict $ok)" "slidingWindow 300 per 1h (one window per phase, a fresh key each) shared by 3 gateways (instances: 3), 200s admitted per ${REDIS_PHASE_S}s phase (gw1/gw2/gw3), expect 270–330 and ≤ 110 each without Redis; $(IFS=';'; echo "${notes[*]}" | sed 's/;/; /g')"
  for i in "${gws[@]}"; do stop_pid "$i"; done
  stop_pid "$ORIGIN_PID"
}

sc_tls_rotate() {
  local port admin cfg=$work/tls/portcullis.yaml gw n=0 fp_live fp_want
  free_port port; free_port admin
  mkdir -p "$work/tls"
  start_origin
  local c
  for c in a b; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=localhost" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$work/tls/$c.key" -out "$work/tls/$c.crt" 2>/dev/null || die "openssl req failed"
    cat "$work/tls/$c.crt" "$work/tls/$c.key" >"$work/tls/$c.pem" # certificate and key in one file: one atomic rename rotates both
  done
  cp "$work/tls/a.pem" "$work/tls/live.pem"
  {
    gateway_head "$port" "$admin" | sed "s|address: 127.0.0.1:$port|address: 127.0.0.1:$port\n    tls:\n      certificates: [{ cert: live.pem }]|"
    cat <<EOF
routes:
  - name: all
    match: { pathPrefix: / }
    cluster: origin
clusters:
  origin:
    destinations: [http://127.0.0.1:$origin_port]
EOF
  } >"$cfg"
  start_gateway tls "$cfg" "$admin"
  gw=$GW_PID
  # Connection: close: a full TLS handshake for every request, so rotations land between handshakes all the time
  load_bg main "https://127.0.0.1:$port/" 16 "$LOAD_S" -H "Connection: close"
  local wrk=$LOAD_PID t_end=$((SECONDS + LOAD_S - 1))
  while ((SECONDS < t_end)); do
    sleep 2
    n=$((n + 1))
    c=$([[ $((n % 2)) == 1 ]] && echo b || echo a)
    cp "$work/tls/$c.pem" "$work/tls/live.tmp" && mv "$work/tls/live.tmp" "$work/tls/live.pem"
  done
  wait "$wrk"
  load_collect main
  sleep 2
  fp_want=$(openssl x509 -in "$work/tls/$c.crt" -noout -fingerprint -sha256)
  fp_live=$(openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256)
  totals ""
  local ok=$((T_BAD == 0 && T_SOCK == 0 && T_TIMEOUT == 0 && n >= 3))
  [[ $fp_live == "$fp_want" ]] || ok=0
  row tls-rotate "$(verdict $ok)" "$n rotations, a handshake per request: expect 0 handshake (socket) failures and the last certificate served: $([[ $fp_live == "$fp_want" ]] && echo yes || echo NO)"
  stop_pid "$gw"
  stop_pid "$ORIGIN_PID"
}

sc_sigterm() {
  local port admin slow cfg=$work/sigterm/portcullis.yaml gw i n=40 ok200=0 s inflight=0 after
  free_port port; free_port admin; free_port slow
  mkdir -p "$work/sigterm"
  start_bg "$work/sigterm/slow.log" "$KIT" slow --port "$slow" --delay-ms 3000
  local spid=$BG_PID
  wait_http "http://127.0.0.1:$slow/healthz" "$spid" || die "slow upstream did not start"
  {
    gateway_head "$port" "$admin"
    cat <<EOF
limits: { shutdownTimeout: 20s }
routes:
  - name: all
    match: { pathPrefix: / }
    cluster: slow
clusters:
  slow:
    destinations: [http://127.0.0.1:$slow]
EOF
  } >"$cfg"
  start_gateway sigterm "$cfg" "$admin"
  gw=$GW_PID
  local cpids=()
  for ((i = 0; i < n; i++)); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 "http://127.0.0.1:$port/work/$i" >"$work/sigterm/curl-$i" 2>&1 &
    cpids+=("$!")
  done
  # wait until the gateway has them all in flight (GET /admin/clusters), at most 10 s
  for ((i = 0; i < 100; i++)); do
    inflight=$(curl -s "http://127.0.0.1:$admin/admin/clusters" | jq '[.. | objects | .inFlight? // .requestsInFlight? // empty | numbers] | add // 0')
    ((inflight >= n)) && break
    sleep 0.1
  done
  local t0=$SECONDS
  kill -TERM "$gw"
  sleep 0.5
  after=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/late")
  wait "${cpids[@]}"
  for ((i = 0; i < n; i++)); do
    s=$(cat "$work/sigterm/curl-$i")
    [[ $s == 200 ]] && ok200=$((ok200 + 1))
    printf '{"requests":1,"statuses":{"%s":1},"err_connect":%d,"err_read":0,"err_write":0,"err_timeout":0,"p99_us":0}\n' "$s" "$([[ $s == 000 ]] && echo 1 || echo 0)" >>"$work/$SC.loads"
  done
  stop_pid "$gw" TERM
  local rc=$STOP_RC took=$((SECONDS - t0))
  totals ""
  T_P99="-"
  local ok=$((ok200 == n && rc == 0 && inflight >= n))
  row sigterm "$(verdict $ok)" "$n requests in flight (upstream 3 s) at SIGTERM: expect all 200 and exit 0; $ok200/$n 200, in flight seen $inflight, exit $rc after ${took}s, a new request after TERM: $after"
  stop_pid "$spid"
}

sc_soak() {
  local port admin cfg=$work/soak/portcullis.yaml gw every lines
  free_port port; free_port admin
  mkdir -p "$work/soak/logs"
  start_origin
  {
    gateway_head "$port" "$admin"
    cat <<EOF
observability:
  accessLog: { enabled: true, target: file, path: logs/access.log, maxSize: 4GiB }
routes:
  - name: all
    match: { pathPrefix: / }
    cluster: origin
clusters:
  origin:
    destinations: [http://127.0.0.1:$origin_port]
EOF
  } >"$cfg"
  start_gateway soak "$cfg" "$admin"
  gw=$GW_PID
  every=$((soak_s >= 120 ? 10 : 2))
  load_bg main "http://127.0.0.1:$port/" 32 "$soak_s"
  local wrk=$LOAD_PID
  : >"$work/soak/rss.tsv"
  while kill -0 "$wrk" 2>/dev/null; do
    printf '%s\t%s\n' "$SECONDS" "$(rss_kb "$gw")" >>"$work/soak/rss.tsv"
    sleep "$every"
  done
  wait "$wrk"
  load_collect main
  stop_pid "$gw" # flushes the access log
  lines=$(cat "$work/soak/logs/access.log"* 2>/dev/null | wc -l)
  # RSS: skip the first quarter (warm-up, tiering, pools filling); the last third's peak must stay within
  # 10 % + 16 MB of the peak of the first third of the rest.
  local first last
  read -r first last < <(awk -F'\t' '{r[NR] = $2} END {s = int(NR / 4) + 1; n = NR - s + 1; t = int(n / 3); if (t < 1) t = 1
    for (i = s; i < s + t; i++) if (r[i] > a) a = r[i]; for (i = NR - t + 1; i <= NR; i++) if (r[i] > b) b = r[i]; printf "%d %d\n", a / 1024, b / 1024}' "$work/soak/rss.tsv")
  totals ""
  local expect_lines=$((T_REQ + 1)) # + the readiness probe is not on the public listener; wrk may have had 32 more in flight at its end
  local ok=$((T_BAD == 0 && T_SOCK == 0 && T_TIMEOUT == 0 && last <= first * 110 / 100 + 16 && lines >= T_REQ && lines <= T_REQ + 32))
  row soak "$(verdict $ok)" "${soak_s}s, RSS every ${every}s: expect the last third's peak ≤ first third's peak × 1.1 + 16 MB (after a 25 % warm-up): $first → $last MB; access-log lines $lines for $T_REQ requests (expect equal, + ≤ 32 in flight at wrk's end)"
  : "$expect_lines"
  stop_pid "$ORIGIN_PID"
}

sc_idle() {
  local port admin cfg=$work/idle/portcullis.yaml gw rss0 rss1 ready open hold=$((quick ? 12 : 30)) ipid
  free_port port; free_port admin
  mkdir -p "$work/idle"
  start_origin
  {
    gateway_head "$port" "$admin"
    cat <<EOF
routes:
  - name: all
    match: { pathPrefix: / }
    cluster: origin
clusters:
  origin:
    destinations: [http://127.0.0.1:$origin_port]
EOF
  } >"$cfg"
  start_gateway idle "$cfg" "$admin"
  gw=$GW_PID
  load warm "http://127.0.0.1:$port/" 16 3
  sleep 1
  rss0=$(($(rss_kb "$gw") / 1024))
  start_bg "$work/idle/conns.log" python3 "$bench/chaos/idle_conns.py" 127.0.0.1 "$port" 2000 "$hold" /
  ipid=$BG_PID
  local i
  for ((i = 0; i < 600; i++)); do grep -q '^ready' "$work/idle/conns.log" && break; kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
  ready=$(sed -n 's/^ready //p' "$work/idle/conns.log")
  load busy "http://127.0.0.1:$port/" 16 "$((hold / 2))"
  rss1=$(($(rss_kb "$gw") / 1024))
  wait "$ipid" 2>/dev/null
  open=$(sed -n 's/^open //p' "$work/idle/conns.log")
  totals ""
  local conns=${ready%% *} answered=${ready##* }
  local ok=$((T_BAD == 0 && T_SOCK == 0 && T_TIMEOUT == 0 && ${conns:-0} == 2000 && ${answered:-0} == 2000 && ${open:-0} == 2000 && rss1 - rss0 <= 150))
  row idle "$(verdict $ok)" "2,000 keep-alive connections idle for ${hold}s while 16 busy ones run: expect all answered and kept (keepAliveTimeout 120s), 0 errors, RSS + ≤ 150 MB; connected/answered ${conns:-?}/${answered:-?}, still open ${open:-?}, RSS $rss0 → $rss1 MB"
  stop_pid "$gw"
  stop_pid "$ORIGIN_PID"
}

# ---------------------------------------------------------------- run
t_start=$SECONDS
log "mode: $( ((quick)) && echo quick || echo full), scenarios: ${scenarios[*]}, work dir $work"
for SC in "${scenarios[@]}"; do
  : >"$work/$SC.loads"
  log "scenario $SC"
  "sc_${SC//-/_}"
done

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$root" status --porcelain -- src 2>/dev/null | wc -l)
load1=$(cut -d' ' -f1 /proc/loadavg)
echo "Chaos run $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit$( ((dirty)) && echo " + $dirty uncommitted change(s) in src/"), $( ((quick)) && echo quick || echo full) mode, $(nproc) cores, load average at the end $load1, $((SECONDS - t_start)) s"
echo
echo "| scenario | requests | non-2xx by status | socket errors | timeouts | p99 ms | verdict | expectation and measurements |"
echo "|---|---|---|---|---|---|---|---|"
fail=0
while IFS=$'\t' read -r sc req non2xx sock tmo p99 v note; do
  echo "| $sc | $req | $non2xx | $sock | $tmo | $p99 | **$v** | $note |"
  [[ $v == PASS ]] || fail=1
done <"$ROWS"
exit "$fail"
