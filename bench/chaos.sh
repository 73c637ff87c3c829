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
  --quick          short phases, soak 30 s: every scenario in about 4 minutes
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

# shellcheck source=ports.sh
source "$bench/ports.sh"
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

origin_routes() { # one catch-all route to the origin cluster ($origin_port), for a config heredoc
  cat <<EOF
routes:
  - name: all
    match: { pathPrefix: / }
    cluster: origin
clusters:
  origin:
    destinations: [http://127.0.0.1:$origin_port]
EOF
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

# ---------------------------------------------------------------- scenarios (bench/chaos/scenarios-*.sh)
# shellcheck source=chaos/scenarios-gateway.sh
source "$bench/chaos/scenarios-gateway.sh"
# shellcheck source=chaos/scenarios-state.sh
source "$bench/chaos/scenarios-state.sh"

# ---------------------------------------------------------------- run
t_start=$SECONDS
# the commit and state of the tree the run starts from (the table is about that code)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$root" status --porcelain -- src bench/chaos.sh bench/chaos 2>/dev/null | wc -l)
log "mode: $( ((quick)) && echo quick || echo full), scenarios: ${scenarios[*]}, work dir $work"
for SC in "${scenarios[@]}"; do
  : >"$work/$SC.loads"
  log "scenario $SC"
  "sc_${SC//-/_}"
done

load1=$(cut -d' ' -f1 /proc/loadavg)
echo "Chaos run $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit$( ((dirty)) && echo " + $dirty uncommitted change(s) in src/ or the harness"), $( ((quick)) && echo quick || echo full) mode, $(nproc) cores, load average at the end $load1, $((SECONDS - t_start)) s"
echo
echo "| scenario | requests | non-2xx by status | socket errors | timeouts | p99 ms | verdict | expectation and measurements |"
echo "|---|---|---|---|---|---|---|---|"
fail=0
while IFS=$'\t' read -r sc req non2xx sock tmo p99 v note; do
  echo "| $sc | $req | $non2xx | $sock | $tmo | $p99 | **$v** | $note |"
  [[ $v == PASS ]] || fail=1
done <"$ROWS"
exit "$fail"
