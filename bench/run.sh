#!/usr/bin/env bash
# Portcullis benchmark harness: the same wrk load against
#   direct     wrk -> origin (no proxy: the ceiling of this machine)
#   haproxy    HAProxy (generated cfg, nbthread = cores)
#   nginx      nginx as a reverse proxy (keep-alive upstream, workers = cores)
#   bareyarp   bench/BareYarp: Kestrel + YARP, one route, one cluster (the floor of our own stack)
#   portcullis `portcullis run -c <generated YAML>`
# in one invocation, interleaved in rounds (each round runs every system once, in a rotated order), and
# reports medians. One nginx origin serves a small body (/small) and a 4 KiB body (/4k).
#
#   bench/run.sh [--quick] [--scenario NAME]... [--systems a,b,...] [--rounds N] [--duration S] [--rebuild]
#
# stdout: Markdown (machine, settings, table). stderr: progress. Files: bench/out/results.json,
# bench/out/raw.tsv (every single measurement), bench/out/logs/ (configs and logs of the last run).
# Everything started here is stopped on exit (trap + PIDs).
#
# Optional environment for experiments:
#   PORTCULLIS_ENV / BAREYARP_ENV   extra VAR=VALUE words for that process, e.g. PORTCULLIS_ENV="DOTNET_gcServer=1"
#   PORTCULLIS_BENCH_YAML           a Portcullis config to use instead of the generated one; it can use
#                                   ${BENCH_GATEWAY_PORT} and ${BENCH_ORIGIN_PORT}
set -euo pipefail
export LC_ALL=C
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=$root/bench
out=$bench/out

# ---------------------------------------------------------------- scenarios and systems
ALL_SCENARIOS=(plain-small-c64 plain-small-c256 plain-4k-c64 jwt jwt-ratelimit tls h2 apikey)
declare -A SC_PATH=([plain-small-c64]=/small [plain-small-c256]=/small [plain-4k-c64]=/4k)
declare -A SC_CONNS=([plain-small-c64]=64 [plain-small-c256]=256 [plain-4k-c64]=64)
declare -A NOT_YET=(
  [jwt]="JWT validation (RS256) is not built in Portcullis yet"
  [jwt-ratelimit]="JWT validation and rate limiting are not built in Portcullis yet"
  [tls]="TLS termination is not built in Portcullis yet"
  [h2]="the HTTP/2 scenario (h2load) is not built into the harness yet"
  [apikey]="API-key authentication is not built in Portcullis yet"
)
ALL_SYSTEMS=(direct haproxy nginx bareyarp portcullis)
declare -A SYS_LABEL=([direct]="direct (no proxy)" [haproxy]="HAProxy" [nginx]="nginx" [bareyarp]="bare YARP" [portcullis]="Portcullis")

usage() {
  cat <<EOF
usage: bench/run.sh [--quick] [--scenario NAME]... [--systems LIST] [--rounds N] [--duration SECONDS] [--rebuild]
  --quick           3 rounds of 2 s, 5 s warm-up: the whole run, publish included, in < 3 minutes
  --scenario NAME   run only this scenario (repeatable or comma-separated); default: all
                    scenarios: ${ALL_SCENARIOS[*]}
  --systems LIST    comma-separated subset of: ${ALL_SYSTEMS[*]} (default: all)
  --rounds N        rounds (default 5, --quick 3; at least 3 for a median worth the name)
  --duration S      seconds per measurement (default 10, --quick 2)
  --warmup S        warm-up seconds per .NET system before round 1 (default 20, --quick 5)
  --rebuild         publish Portcullis and BareYarp even when bench/out looks up to date
  --wait-quiet S    before each measurement wait up to S seconds for other processes to use < 15% of
                    the CPU (default 0: do not wait; the background share is reported either way)
EOF
}

quick=0 rebuild=0 wait_quiet_s=0 rounds="" duration="" warmup_dotnet="" systems_arg=""
scenario_args=()
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --scenario) scenario_args+=("${2:?--scenario needs a name}"); shift ;;
    --scenario=*) scenario_args+=("${1#*=}") ;;
    --systems) systems_arg=${2:?--systems needs a list}; shift ;;
    --systems=*) systems_arg=${1#*=} ;;
    --rounds) rounds=${2:?}; shift ;;
    --duration) duration=${2:?}; shift ;;
    --warmup) warmup_dotnet=${2:?}; shift ;;
    --rebuild) rebuild=1 ;;
    --wait-quiet) wait_quiet_s=${2:?}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then
  : "${rounds:=3}" "${duration:=2}" "${warmup_dotnet:=5}"; warmup_other=1
else
  : "${rounds:=5}" "${duration:=10}" "${warmup_dotnet:=20}"; warmup_other=5
fi
[[ $rounds =~ ^[0-9]+$ && $duration =~ ^[0-9]+$ && $warmup_dotnet =~ ^[0-9]+$ && $wait_quiet_s =~ ^[0-9]+$ ]] || { echo "rounds, duration and warm-up are whole numbers" >&2; exit 2; }
((rounds >= 1 && duration >= 1)) || { echo "rounds and duration must be at least 1" >&2; exit 2; }
((rounds >= 3)) || echo "warning: fewer than 3 rounds; medians are not meaningful" >&2

scenarios=()
if ((${#scenario_args[@]} == 0)); then
  scenarios=("${ALL_SCENARIOS[@]}")
else
  for arg in "${scenario_args[@]}"; do
    IFS=, read -ra names <<<"$arg"
    for name in "${names[@]}"; do
      [[ " ${ALL_SCENARIOS[*]} " == *" $name "* ]] || { echo "unknown scenario '$name' (known: ${ALL_SCENARIOS[*]})" >&2; exit 2; }
      scenarios+=("$name")
    done
  done
fi
systems=()
if [[ -z $systems_arg ]]; then
  systems=("${ALL_SYSTEMS[@]}")
else
  IFS=, read -ra names <<<"$systems_arg"
  for name in "${ALL_SYSTEMS[@]}"; do # keep the canonical order
    [[ ",$systems_arg," == *",$name,"* ]] && systems+=("$name")
  done
  for name in "${names[@]}"; do
    [[ " ${ALL_SYSTEMS[*]} " == *" $name "* ]] || { echo "unknown system '$name' (known: ${ALL_SYSTEMS[*]})" >&2; exit 2; }
  done
fi
has_system() { [[ " ${systems[*]} " == *" $1 "* ]]; }

measured=() not_yet=()
for sc in "${scenarios[@]}"; do
  if [[ -n ${SC_PATH[$sc]:-} ]]; then measured+=("$sc"); else not_yet+=("$sc"); fi
done

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
work="" wrk_pid=""
declare -a started_pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $wrk_pid ]] && kill -TERM "$wrk_pid" 2>/dev/null || true
  local pid i
  for pid in "${started_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${started_pids[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "pid $pid did not stop on TERM; killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  if [[ -n $work && -d $work ]]; then
    rm -rf "$out/logs" && mkdir -p "$out/logs" && cp -r "$work"/. "$out/logs/" 2>/dev/null || true
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- output helpers
mkdir -p "$out"
rm -f "$out/results.json" "$out/raw.tsv" # never leave a previous run's numbers behind a failed one
print_not_yet_rows() {
  local sc
  for sc in "${not_yet[@]}"; do
    printf '| %s | — | not yet | | | | | | | | | |\n' "$sc"
  done
}
not_yet_json() {
  local sc
  for sc in "${not_yet[@]}"; do
    jq -nc --arg s "$sc" --arg why "${NOT_YET[$sc]}" \
      '{scenario:$s, system:"portcullis", status:"not yet", note:$why, rps:null, p50_ms:null, p99_ms:null, rss_mb:null, cpu_us_per_req:null}'
  done
}

# ---------------------------------------------------------------- tools
need_apt=()
command -v jq >/dev/null || need_apt+=(jq)
if ((${#measured[@]})); then
  command -v curl >/dev/null || need_apt+=(curl)
  command -v wrk >/dev/null || need_apt+=(wrk)
  command -v nginx >/dev/null || need_apt+=(nginx) # the origin is always nginx
  has_system haproxy && ! command -v haproxy >/dev/null && need_apt+=(haproxy)
  command -v h2load >/dev/null || need_apt+=(nghttp2-client) # for the h2 scenario
fi
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing from Debian packages: ${need_apt[*]}"
    apt-get update -qq >&2
    # The nginx/haproxy packages may start their system services (policy-rc.d permitting); those are not
    # ours and are left alone: every process here uses its own config and a free loopback port.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
  else
    die "missing tools: ${need_apt[*]} (install them: sudo apt-get install ${need_apt[*]})"
  fi
fi
command -v jq >/dev/null || die "jq is required"

if ((${#measured[@]} == 0)); then
  echo "| scenario | system | rps | rps min–max | p50 ms | p99 ms | vs HAProxy | vs bare YARP | proxy peak RSS MB | CPU µs/req | errors | bg CPU % |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  print_not_yet_rows
  not_yet_json | jq -s . >"$out/results.json"
  for sc in "${not_yet[@]}"; do log "$sc: not yet — ${NOT_YET[$sc]}"; done
  exit 0
fi
for tool in curl wrk nginx dotnet; do command -v "$tool" >/dev/null || die "$tool is required"; done
has_system haproxy && { command -v haproxy >/dev/null || die "haproxy is required"; }

# ---------------------------------------------------------------- build
# Release + ReadyToRun publish into bench/out. bin/obj go to bench/out/artifacts (--artifacts-path), so
# this never touches the obj/ folders of a developer's own build in src/.
publish() { # project output-dir stamp-name executable inputs...
  local project=$1 dest=$2 name=$3 exe=$4
  local stamp=$out/.stamp-$name started=$out/.stamp-$name.new attempt
  shift 4
  if ((!rebuild)) && [[ -f $stamp && -x $dest/$exe ]] &&
    [[ -z $(find "$@" \( -name bin -o -name obj \) -prune -o -type f -newer "$stamp" -print -quit 2>/dev/null) ]]; then
    log "publish $project: up to date"
    return
  fi
  for attempt in 1 2 3; do
    touch "$started"
    log "publish $project (Release, ReadyToRun) -> ${dest#"$root"/}"
    if dotnet publish "$root/$project" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
      --artifacts-path "$out/artifacts" -o "$dest" --nologo -v quiet -clp:ErrorsOnly >"$out/publish-$name.log" 2>&1; then
      mv "$started" "$stamp"
      return
    fi
    tail -n 20 "$out/publish-$name.log" >&2
    ((attempt < 3)) && { log "publish failed (src/ may be mid-edit); retrying in 20 s"; sleep 20; }
  done
  die "publish $project failed; see bench/out/publish-$name.log"
}
has_system portcullis && publish src/Portcullis.Cli "$out/portcullis" portcullis portcullis \
  "$root/src" "$root/Directory.Build.props" "$root/Directory.Packages.props"
has_system bareyarp && publish bench/BareYarp "$out/bareyarp" bareyarp BareYarp \
  "$bench/BareYarp" "$root/Directory.Build.props" "$root/Directory.Packages.props"

# ---------------------------------------------------------------- process helpers
work=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
chmod 755 "$work"
clk_tck=$(getconf CLK_TCK)
cores=$(nproc)

used_ports=" "
free_port() { # VAR: a loopback port nobody listens on, below the ephemeral range
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

process_tree() { # PID -> "PID CHILD..." from /proc (one level is enough: nginx master + workers)
  local parent=$1 f stat
  local -a fields kids=()
  for f in /proc/[0-9]*/stat; do
    { read -r stat <"$f"; } 2>/dev/null || continue
    stat=${stat##*) }
    read -ra fields <<<"$stat"
    [[ ${fields[1]:-} == "$parent" ]] || continue
    f=${f#/proc/}
    kids+=("${f%/stat}")
  done
  echo "$parent ${kids[*]}"
}

cpu_ticks() { # PIDs... -> utime+stime summed (clock ticks); a process's stat covers all its threads
  local pid stat total=0
  local -a fields
  for pid in "$@"; do
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue
    stat=${stat##*) }
    read -ra fields <<<"$stat"
    total=$((total + fields[11] + fields[12])) # utime, stime (fields 14 and 15 of stat)
  done
  echo "$total"
}
reset_hwm() { # PIDs...: peak RSS := current RSS (Linux >= 4.0, clear_refs 5)
  local pid
  for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
}
hwm_kb() { # PIDs... -> VmHWM summed (kB)
  local pid total=0 v
  for pid in "$@"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

machine_ticks() { # -> "BUSY TOTAL": user+nice+system, and all of it, over all cores (/proc/stat)
  local user nice system idle iowait irq softirq steal rest
  read -r _ user nice system idle iowait irq softirq steal rest </proc/stat
  echo "$((user + nice + system)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}
children_cpu() { # CHILD_CPU := CPU seconds (user+sys) of this shell's waited-for children so far.
  # `times` must run in this shell (a $(...) subshell would see its own, empty, children).
  times >"$work/times"
  CHILD_CPU=$(awk 'NR == 2 {n = split($0, f, /[ ms]+/); t = 0; for (i = 1; i < n; i += 2) t += f[i] * 60 + f[i + 1]; print t}' "$work/times")
}
background_pct() { # SECONDS: share of the machine's CPU used by others while we are idle
  local b0 t0 b1 t1
  read -r b0 t0 <<<"$(machine_ticks)"
  sleep "$1"
  read -r b1 t1 <<<"$(machine_ticks)"
  echo $(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
}
start_bg() { # NAME LOGFILE cmd...: start, remember the PID in BG_PID
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 &
  BG_PID=$!
  started_pids+=("$BG_PID")
}

wait_ready() { # NAME PID URL EXPECTED_BYTES
  local name=$1 pid=$2 url=$3 want=$4 got i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$work/$name"/*.log >&2 || true; die "$name exited during start-up"; }
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 2 "$url" || true)
    [[ $got == "200 $want" ]] && return
    sleep 0.1
  done
  tail -n 30 "$work/$name"/*.log >&2 || true
  die "$name did not answer $url with 200 and $want bytes within 30 s (last: '$got')"
}

# ---------------------------------------------------------------- origin
small_body="hello from the origin"$'\n'
small_len=${#small_body}
body4k=$(head -c 4096 /dev/zero | tr '\0' 'x')
declare -A BODY_LEN=([/small]=$small_len [/4k]=4096)

nginx_common() { # DIR: the lines every nginx here shares (own pid, logs and temp paths)
  cat <<EOF
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 8192; }
EOF
}
nginx_http_common() {
  cat <<EOF
    access_log off;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
EOF
}

origin_port=""
free_port origin_port
mkdir -p "$work/origin/www"
printf '%s' "$body4k" >"$work/origin/www/4k.txt"
chmod 755 "$work/origin" "$work/origin/www"
chmod 644 "$work/origin/www/4k.txt"
{
  echo "worker_processes $cores;"
  nginx_common "$work/origin"
  echo "http {"
  nginx_http_common "$work/origin"
  cat <<EOF
    server {
        listen 127.0.0.1:$origin_port;
        location = /small { default_type text/plain; return 200 "hello from the origin\n"; }
        # 4 KiB is past nginx's limit for a config token, so this one is a file (descriptor cached)
        location = /4k { default_type text/plain; open_file_cache max=16 inactive=600s; open_file_cache_valid 600s; alias $work/origin/www/4k.txt; }
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
} >"$work/origin/nginx.conf"
nginx -t -q -p "$work/origin" -e "$work/origin/error.log" -c "$work/origin/nginx.conf" || die "origin nginx config is invalid"
start_bg origin "$work/origin/stdout.log" nginx -p "$work/origin" -e "$work/origin/error.log" -c "$work/origin/nginx.conf"
origin_pid=$BG_PID
wait_ready origin "$origin_pid" "http://127.0.0.1:$origin_port/small" "$small_len"
read -ra origin_pids <<<"$(process_tree "$origin_pid")"
log "origin nginx on 127.0.0.1:$origin_port (pids ${origin_pids[*]})"

# ---------------------------------------------------------------- systems
declare -A PORT SYSPIDS
start_system() {
  local sys=$1 port pid dir=$work/$1
  mkdir -p "$dir"
  case $sys in
    direct)
      PORT[$sys]=$origin_port
      SYSPIDS[$sys]=""
      return
      ;;
    haproxy)
      free_port port
      cat >"$dir/haproxy.cfg" <<EOF
# generated by bench/run.sh; no logging (as for every system here)
global
    nbthread $cores
    maxconn 4096
    pidfile $dir/haproxy.pid

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind 127.0.0.1:$port
    default_backend origin

backend origin
    server origin 127.0.0.1:$origin_port
EOF
      haproxy -c -q -f "$dir/haproxy.cfg" || die "generated haproxy.cfg is invalid"
      start_bg haproxy "$dir/haproxy.log" haproxy -db -f "$dir/haproxy.cfg"
      ;;
    nginx)
      free_port port
      {
        echo "worker_processes $cores;"
        nginx_common "$dir"
        echo "http {"
        nginx_http_common "$dir"
        cat <<EOF
    upstream origin {
        server 127.0.0.1:$origin_port;
        keepalive 512;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
      } >"$dir/nginx.conf"
      nginx -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" || die "generated nginx proxy config is invalid"
      start_bg nginx "$dir/stdout.log" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
      ;;
    bareyarp)
      free_port port
      # shellcheck disable=SC2086
      (cd "$dir" && exec env BAREYARP_PORT="$port" BAREYARP_DESTINATION="http://127.0.0.1:$origin_port" ${BAREYARP_ENV:-} \
        "$out/bareyarp/BareYarp") >"$dir/bareyarp.log" 2>&1 &
      BG_PID=$!
      started_pids+=("$BG_PID")
      ;;
    portcullis)
      free_port port
      if [[ -n ${PORTCULLIS_BENCH_YAML:-} ]]; then
        cp "$PORTCULLIS_BENCH_YAML" "$dir/portcullis.yaml"
      else
        cat >"$dir/portcullis.yaml" <<EOF
# generated by bench/run.sh: one listener, one catch-all route, one cluster; everything else default
listeners:
  - name: public
    address: 127.0.0.1:\${BENCH_GATEWAY_PORT}

routes:
  - name: all
    match: { pathPrefix: / }
    cluster: origin

clusters:
  origin:
    destinations:
      - http://127.0.0.1:\${BENCH_ORIGIN_PORT}
EOF
      fi
      # shellcheck disable=SC2086
      (cd "$dir" && exec env BENCH_GATEWAY_PORT="$port" BENCH_ORIGIN_PORT="$origin_port" ${PORTCULLIS_ENV:-} \
        "$out/portcullis/portcullis" run -c "$dir/portcullis.yaml") >"$dir/portcullis.log" 2>&1 &
      BG_PID=$!
      started_pids+=("$BG_PID")
      ;;
  esac
  pid=$BG_PID
  PORT[$sys]=$port
  wait_ready "$sys" "$pid" "http://127.0.0.1:$port/small" "$small_len"
  SYSPIDS[$sys]=$(process_tree "$pid")
  log "$sys on 127.0.0.1:$port (pids ${SYSPIDS[$sys]})"
}

pre_bg=$(background_pct 2)
((pre_bg < 15)) || log "warning: other processes use ${pre_bg}% of this machine's CPU; results will be noisy (see the bg CPU % column; --wait-quiet S waits)"
for sys in "${systems[@]}"; do start_system "$sys"; done

# Every system must return the origin's exact bodies before anything is measured.
for sys in "${systems[@]}"; do
  for path in /small /4k; do
    got=$(curl -s --max-time 5 "http://127.0.0.1:${PORT[$sys]}$path" | wc -c)
    [[ $got == "${BODY_LEN[$path]}" ]] || die "$sys returned $got bytes for $path, expected ${BODY_LEN[$path]}"
  done
done

# ---------------------------------------------------------------- measuring
raw=$out/raw.tsv
printf 'scenario\tsystem\tround\trps\tp50_ms\tp99_ms\tcpu_us_per_req\trss_mb\terrors\trequests\torigin_cpu_us_per_req\twrk_cpu_us_per_req\tbackground_cpu_pct\n' >"$raw"

run_wrk() { # OUTFILE CONNS SECONDS URL
  wrk -t1 -c"$2" -d"$3s" -s "$bench/wrk-report.lua" "$4" >"$1" 2>&1 &
  wrk_pid=$!
  wait "$wrk_pid" || true
  wrk_pid=""
}

wait_quiet() { # wait (up to --wait-quiet seconds) until other processes use < 15% of the machine
  ((wait_quiet_s > 0)) || return 0
  local waited=0 pct
  while pct=$(background_pct 1) && ((pct >= 15 && waited < wait_quiet_s)); do
    ((waited == 0)) && log "machine busy (${pct}% CPU used by other processes); waiting up to ${wait_quiet_s}s"
    waited=$((waited + 1))
  done
  ((waited == 0 || pct < 15)) || log "still busy (${pct}%) after ${wait_quiet_s}s; measuring anyway"
}

measure() { # SCENARIO SYSTEM ROUND
  local sc=$1 sys=$2 round=$3 f=$work/wrk-$1-$2-$3.txt pids opids c0 c1 o0 o1 w0 w1 m0 m1 t0 t1 hwm json
  read -ra pids <<<"${SYSPIDS[$sys]}"
  opids=("${origin_pids[@]}")
  wait_quiet
  reset_hwm "${pids[@]}"
  c0=$(cpu_ticks "${pids[@]}")
  o0=$(cpu_ticks "${opids[@]}")
  children_cpu
  w0=$CHILD_CPU
  read -r m0 t0 <<<"$(machine_ticks)"
  run_wrk "$f" "${SC_CONNS[$sc]}" "$duration" "http://127.0.0.1:${PORT[$sys]}${SC_PATH[$sc]}"
  read -r m1 t1 <<<"$(machine_ticks)"
  children_cpu
  w1=$CHILD_CPU
  c1=$(cpu_ticks "${pids[@]}")
  o1=$(cpu_ticks "${opids[@]}")
  hwm=$(hwm_kb "${pids[@]}")
  json=$(sed -n 's/^WRKJSON //p' "$f")
  [[ -n $json ]] || { cat "$f" >&2; die "wrk produced no result for $sc/$sys"; }
  # background: machine user+system time not spent by the proxy, the origin or wrk, as % of all cores
  jq -r --arg sc "$sc" --arg sys "$sys" --arg round "$round" --argjson cpu "$((c1 - c0))" --argjson ocpu "$((o1 - o0))" \
    --argjson hz "$clk_tck" --argjson hwm "$hwm" --argjson proxy "${#pids[@]}" \
    --argjson wrk "$(awk -v a="$w0" -v b="$w1" 'BEGIN {print b - a}')" --argjson mbusy "$((m1 - m0))" --argjson mtotal "$((t1 - t0))" '
    (.duration_us / 1e6) as $secs
    | (.err_connect + .err_read + .err_write + .err_status + .err_timeout) as $errors
    | ((($mbusy - $cpu - $ocpu - $wrk * $hz) / (if $mtotal > 0 then $mtotal else 1 end) * 100) | if . < 0 then 0 else . end) as $bg
    | [$sc, $sys, $round,
       (.requests / $secs | floor),
       (.p50_us / 1000), (.p99_us / 1000),
       (if $proxy > 0 and .requests > 0 then ($cpu / $hz * 1e6 / .requests) else "-" end),
       (if $proxy > 0 then ($hwm / 1024) else "-" end),
       $errors, .requests,
       (if .requests > 0 then ($ocpu / $hz * 1e6 / .requests) else "-" end),
       (if .requests > 0 then ($wrk * 1e6 / .requests) else "-" end),
       ($bg | floor)]
    | @tsv' <<<"$json" >>"$raw"
  tail -n 1 "$raw" | awk -F'\t' '{printf "  %-17s %-10s round %s: %7d rps  p50 %6.2f ms  p99 %7.2f ms  cpu/req %5s us  errors %s  background %s%%\n", $1, $2, $3, $4, $5, $6, ($7 == "-" ? "-" : sprintf("%.1f", $7)), $9, $13}' >&2
}

# Warm-up before round 1: .NET tiers its code up (and PGO settles) over the first seconds under load.
for sys in "${systems[@]}"; do
  secs=$warmup_other
  [[ $sys == bareyarp || $sys == portcullis ]] && secs=$warmup_dotnet
  ((secs > 0)) || continue
  log "warm-up $sys: ${secs}s"
  run_wrk "$work/warmup-$sys.txt" 64 "$secs" "http://127.0.0.1:${PORT[$sys]}/small"
  # full mode: also a quarter of that with 256 connections and the 4 KiB body (more sockets, bigger buffers)
  ((quick)) || run_wrk "$work/warmup-$sys-4k.txt" 256 "$(((secs + 3) / 4))" "http://127.0.0.1:${PORT[$sys]}/4k"
done

nsys=${#systems[@]}
for sc in "${measured[@]}"; do
  log "scenario $sc: $rounds rounds x $nsys systems x ${duration}s, wrk -t1 -c${SC_CONNS[$sc]} ${SC_PATH[$sc]}"
  for ((r = 1; r <= rounds; r++)); do
    for ((k = 0; k < nsys; k++)); do
      # rotate the order each round so no system always runs right after the same neighbour
      measure "$sc" "${systems[$(((k + r - 1) % nsys))]}" "$r"
    done
  done
done

# ---------------------------------------------------------------- aggregation
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
column_of() { # SCENARIO SYSTEM COLUMN
  awk -F'\t' -v sc="$1" -v sys="$2" -v col="$3" 'NR > 1 && $1 == sc && $2 == sys && $col != "-" {print $col}' "$raw"
}
agg=$work/aggregate.tsv
: >"$agg"
for sc in "${measured[@]}"; do
  for sys in "${systems[@]}"; do
    rps=$(column_of "$sc" "$sys" 4 | median)
    p50=$(column_of "$sc" "$sys" 5 | median)
    p99=$(column_of "$sc" "$sys" 6 | median)
    cpu=$(column_of "$sc" "$sys" 7 | median)
    rss=$(column_of "$sc" "$sys" 8 | sort -g | tail -n 1)
    errors=$(column_of "$sc" "$sys" 9 | awk '{s += $1} END {print s + 0}')
    lo=$(column_of "$sc" "$sys" 4 | sort -g | head -n 1)
    hi=$(column_of "$sc" "$sys" 4 | sort -g | tail -n 1)
    ocpu=$(column_of "$sc" "$sys" 11 | median)
    wcpu=$(column_of "$sc" "$sys" 12 | median)
    bg=$(column_of "$sc" "$sys" 13 | median)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sc" "$sys" "$rps" "$p50" "$p99" "${cpu:--}" "${rss:--}" "$errors" "$lo" "$hi" "$ocpu" "$wcpu" "$bg" >>"$agg"
  done
done

ratio() { # SCENARIO SYSTEM BASE -> rps(system)/rps(base), or "-"
  awk -F'\t' -v sc="$1" -v sys="$2" -v base="$3" '
    $1 == sc && $2 == sys {a = $3} $1 == sc && $2 == base {b = $3}
    END {if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else print "-"}' "$agg"
}

# results.json
{
  while IFS=$'\t' read -r sc sys rps p50 p99 cpu rss errors lo hi ocpu wcpu bg; do
    jq -nc --arg sc "$sc" --arg sys "$sys" --arg rps "$rps" --arg p50 "$p50" --arg p99 "$p99" --arg cpu "$cpu" \
      --arg rss "$rss" --arg errors "$errors" --arg lo "$lo" --arg hi "$hi" --arg ocpu "$ocpu" --arg wcpu "$wcpu" --arg bg "$bg" \
      --arg vh "$(ratio "$sc" "$sys" haproxy)" --arg vy "$(ratio "$sc" "$sys" bareyarp)" \
      --argjson rounds "$rounds" --argjson duration "$duration" --argjson conns "${SC_CONNS[$sc]}" '
      def num: if . == "-" or . == "" then null else tonumber end;
      {scenario: $sc, system: $sys, status: "ok",
       rps: ($rps | num | if . == null then null else floor end),
       p50_ms: ($p50 | num | if . == null then null else (. * 1000 | round) / 1000 end),
       p99_ms: ($p99 | num | if . == null then null else (. * 1000 | round) / 1000 end),
       rss_mb: ($rss | num | if . == null then null else (. * 10 | round) / 10 end),
       cpu_us_per_req: ($cpu | num | if . == null then null else (. * 10 | round) / 10 end),
       ratio_vs_haproxy: ($vh | num), ratio_vs_bare_yarp: ($vy | num),
       rps_min: ($lo | num), rps_max: ($hi | num), errors: ($errors | num),
       origin_cpu_us_per_req: ($ocpu | num | if . == null then null else (. * 10 | round) / 10 end),
       wrk_cpu_us_per_req: ($wcpu | num | if . == null then null else (. * 10 | round) / 10 end),
       background_cpu_pct: ($bg | num),
       rounds: $rounds, duration_s: $duration, connections: $conns, wrk_threads: 1}'
  done <"$agg"
  not_yet_json
} | jq -s . >"$out/results.json"

# ---------------------------------------------------------------- Markdown on stdout
ver() { "$@" 2>&1 | head -n 1 || true; }
gc_mode() { # RUNTIMECONFIG EXTRA_ENV -> the GC the process ran with (an env override wins)
  local mode=workstation
  grep -q '"System.GC.Server": true' "$1" 2>/dev/null && mode=server
  [[ " $2 " =~ [[:space:]](DOTNET|COMPlus)_gcServer=([01])[[:space:]] ]] && mode=$([[ ${BASH_REMATCH[2]} == 1 ]] && echo server || echo workstation)
  echo "$mode${2:+ (env: $2)}"
}
dirty=$(git -C "$root" status --porcelain -- src 2>/dev/null | wc -l)
cat <<EOF
## Machine

- cores: $cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), memory: $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
- kernel: $(uname -r)
- dotnet: $(dotnet --version 2>/dev/null); HAProxy: $(ver haproxy -v | sed 's/ - https.*//'); nginx: $(ver nginx -v | sed 's/^nginx version: //'); wrk: $(ver wrk --version | awk '{print $2}')
- Portcullis: commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$( ((dirty)) && echo " + $dirty uncommitted change(s) in src/" || true)
- GC: Portcullis $(gc_mode "$out/portcullis/portcullis.runtimeconfig.json" "${PORTCULLIS_ENV:-}"), bare YARP $(gc_mode "$out/bareyarp/BareYarp.runtimeconfig.json" "${BAREYARP_ENV:-}")

## Settings

$( ((quick)) && echo "quick mode: " || true)$rounds rounds x ${duration}s per system and scenario, interleaved (order rotated each round), medians; warm-up ${warmup_dotnet}s (.NET) / ${warmup_other}s (others) before round 1.
wrk -t1, HTTP/1.1 keep-alive, loopback; proxies use $cores threads/workers; nothing pinned (wrk, proxy and origin share the $cores cores).
RSS = peak VmHWM of the proxy process(es) during the scenario; CPU = proxy utime+stime over the run / requests.
bg CPU % = median share of the machine's CPU used by processes other than wrk, the origin and the proxy during the runs (0 on a quiet machine; anything above ~5 makes the numbers noisy).

## Results

| scenario | system | rps | rps min–max | p50 ms | p99 ms | vs HAProxy | vs bare YARP | proxy peak RSS MB | CPU µs/req | errors | bg CPU % |
|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
while IFS=$'\t' read -r sc sys rps p50 p99 cpu rss errors lo hi ocpu wcpu bg; do
  printf '| %s | %s | %.0f | %.0f–%.0f | %.2f | %.2f | %s | %s | %s | %s | %s | %.0f |\n' \
    "$sc" "${SYS_LABEL[$sys]}" "$rps" "$lo" "$hi" "$p50" "$p99" \
    "$(r=$(ratio "$sc" "$sys" haproxy); [[ $r == - ]] && echo – || echo "${r}×")" \
    "$(r=$(ratio "$sc" "$sys" bareyarp); [[ $r == - ]] && echo – || echo "${r}×")" \
    "$([[ $rss == - ]] && echo – || printf '%.1f' "$rss")" \
    "$([[ $cpu == - ]] && echo – || printf '%.1f' "$cpu")" \
    "$errors" "$bg"
done <"$agg"
print_not_yet_rows
echo
for sc in "${not_yet[@]}"; do echo "- $sc: not yet — ${NOT_YET[$sc]}"; done
log "results: ${out#"$root"/}/results.json, raw rounds: ${out#"$root"/}/raw.tsv, logs: ${out#"$root"/}/logs/"
