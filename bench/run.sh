#!/usr/bin/env bash
# Portcullis benchmark harness: the same wrk load against
#   direct     wrk -> origin (no proxy: the ceiling of this machine)
#   haproxy    HAProxy (generated cfg, nbthread = cores)
#   haproxy-1t the same HAProxy with nbthread 1 (jwt scenario only: the issue's target is the better of the two)
#   nginx      nginx as a reverse proxy (keep-alive upstream, workers = cores)
#   bareyarp   bench/BareYarp: Kestrel + YARP, one route, one cluster (the floor of our own stack)
#   portcullis `portcullis run -c <generated YAML>`
#   portcullis-redis  the same with its rate limits in Redis (jwt-ratelimit only; the harness starts a
#              redis-server on a free loopback port, no persistence, and stops it on exit)
#   portcullis-analytics  the same with analytics on (a DuckDB file next to its config; plain-small-c64 and
#              jwt only: issue 16 asks for its cost in the same run)
#   portcullis-base  Portcullis built from the commit in PORTCULLIS_BASE_REF (a git worktree under bench/out),
#              same config, interleaved with the current tree: an A/B of two commits in one run (only
#              when PORTCULLIS_BASE_REF is set)
# in one invocation, interleaved in rounds (each round runs every system once, in a rotated order), and
# reports medians. One nginx origin serves a small body (/small, also as /jwt/small and /key/small) and a
# 4 KiB body (/4k); with the h2 scenario it also listens for h2c (prior knowledge) for the "direct" ceiling.
#
# Scenarios: plain-* (wrk, HTTP/1.1 keep-alive); jwt (wrk with one long-lived RS256 bearer JWT, minted per run
# with the openssl CLI; every system must refuse a missing, badly signed, expired and wrong-audience token
# with 401 before anything is measured); apikey (wrk with an X-Api-Key header; a missing and a wrong key must
# get 401); h2 (h2load, cleartext HTTP/2 with prior knowledge). A system that cannot do a scenario (nginx
# has no JWT verification, bare YARP no API keys) gets an "n/a" row, never a number.
# jwt-ratelimit: the jwt route plus a per-subject rate limit too high to ever refuse during the measurement
# (1,000,000 per second: the cost of the decision, not of refusing); HAProxy: jwt_verify + a stick table
# tracking the JWT's sub; Portcullis: a tokenBucket policy keyed by consumer, store local and (as
# portcullis-redis) store redis, strict. Before measuring, every system must answer 429 on a twin route with
# a limit of 2 per 10 s (/rl-tight/small), or the scenario fails: a limiter that does not limit is not measured.
#
#   bench/run.sh [--quick] [--scenario NAME]... [--systems a,b,...] [--rounds N] [--duration S] [--rebuild]
#
# stdout: Markdown (machine, settings, table). stderr: progress. Files: bench/out/results.json,
# bench/out/raw.tsv (every single measurement), bench/out/logs/ (configs and logs of the last run).
# Everything started here is stopped on exit (trap + PIDs).
#
# Optional environment for experiments:
#   PORTCULLIS_ENV / BAREYARP_ENV   extra VAR=VALUE words for that process, e.g. PORTCULLIS_ENV="DOTNET_gcServer=1"
#   PORTCULLIS_BENCH_ACCESS_LOG=0   the generated Portcullis config without its access log (on by default)
#   PORTCULLIS_BASE_REF             a commit (or branch) to build as the portcullis-base system, e.g. 6b8e641
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
declare -A SC_PATH=([plain-small-c64]=/small [plain-small-c256]=/small [plain-4k-c64]=/4k [jwt]=/jwt/small [jwt-ratelimit]=/rl/small [apikey]=/key/small [h2]=/small [tls]=/small)
# connections (h2: connections of H2_STREAMS concurrent streams each, so 8 x 8 = 64 requests in flight)
declare -A SC_CONNS=([plain-small-c64]=64 [plain-small-c256]=256 [plain-4k-c64]=64 [jwt]=64 [jwt-ratelimit]=64 [apikey]=64 [h2]=8 [tls]=64)
H2_STREAMS=8
declare -A NOT_YET=()
ALL_SYSTEMS=(direct haproxy haproxy-1t nginx bareyarp portcullis portcullis-base portcullis-redis portcullis-analytics)
declare -A SYS_LABEL=([direct]="direct (no proxy)" [haproxy]="HAProxy" [haproxy-1t]="HAProxy nbthread 1" [nginx]="nginx" [bareyarp]="bare YARP" [portcullis]="Portcullis" [portcullis-redis]="Portcullis, Redis store" [portcullis-analytics]="Portcullis, analytics on" [portcullis-base]="Portcullis at ${PORTCULLIS_BASE_REF:-base}")
# jwt-ratelimit: the measured limit (never reached) and the probe route's limit (must refuse the 3rd request).
# 1,000,000 per second is the most Portcullis's validation accepts (at most one request per microsecond).
RL_LIMIT=1000000
RL_TIGHT_LIMIT=2 RL_TIGHT_PER_S=10
# JWT test token's claims (the same for every system)
JWT_ISS="https://bench.portcullis.test/"
JWT_AUD="bench-api"

na_reason() { # SCENARIO SYSTEM -> why SYSTEM cannot run SCENARIO ("" when it can; "-" when it is just not part of it)
  case $1/$2 in
    */haproxy-1t) [[ $1 == jwt || $1 == jwt-ratelimit ]] && echo "" || echo - ;;
    */portcullis-redis) [[ $1 == jwt-ratelimit ]] && echo "" || echo - ;;
    */portcullis-analytics) [[ $1 == plain-small-c64 || $1 == jwt ]] && echo "" || echo - ;;
    */portcullis-base) [[ -n ${PORTCULLIS_BASE_REF:-} ]] && echo "" || echo - ;;
    jwt/direct | apikey/direct | jwt-ratelimit/direct) echo "not a proxy: nothing checks the credential" ;;
    tls/direct) echo "the origin serves cleartext only: nothing terminates TLS" ;;
    jwt/nginx | jwt-ratelimit/nginx) echo "open-source nginx cannot verify a JWT (auth_jwt is NGINX Plus only)" ;;
    jwt-ratelimit/bareyarp) echo "bench/BareYarp has no rate limiter wired in (not built)" ;;
    apikey/bareyarp) echo "bare YARP has no API-key feature" ;;
    *) echo "" ;;
  esac
}

usage() {
  cat <<EOF
usage: bench/run.sh [--quick] [--scenario NAME]... [--systems LIST] [--rounds N] [--duration SECONDS] [--rebuild]
  --quick           3 rounds of 1 s, short warm-ups: every scenario in about 2.5 minutes (with jwt, apikey
                    and h2 added, 2 s rounds took 3.6 minutes; --quick --duration 2 is the old shape)
  --scenario NAME   run only this scenario (repeatable or comma-separated); default: all
                    scenarios: ${ALL_SCENARIOS[*]}
  --systems LIST    comma-separated subset of: ${ALL_SYSTEMS[*]} (default: all)
  --rounds N        rounds (default 5, --quick 3; at least 3 for a median worth the name)
  --duration S      seconds per measurement (default 10, --quick 1)
  --warmup S        warm-up seconds per .NET system before round 1 (default 20, --quick 5); the jwt, apikey
                    and h2 scenarios add their own short warm-up (a quarter of that, at least 1 s)
  --rebuild         publish Portcullis and BareYarp even when bench/out looks up to date
  --no-publish      use bench/out/portcullis and bench/out/bareyarp as they are (e.g. while src/ is mid-edit)
  --wait-quiet S    before each measurement wait up to S seconds for other processes to use < 15% of
                    the CPU (default 0: do not wait; the background share is reported either way)
EOF
}

quick=0 rebuild=0 no_publish=0 wait_quiet_s=0 rounds="" duration="" warmup_dotnet="" systems_arg=""
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
    --no-publish) no_publish=1 ;;
    --wait-quiet) wait_quiet_s=${2:?}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then
  : "${rounds:=3}" "${duration:=1}" "${warmup_dotnet:=5}"; warmup_other=1
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

measured=() not_yet=()
for sc in "${scenarios[@]}"; do
  if [[ -n ${SC_PATH[$sc]:-} ]]; then measured+=("$sc"); else not_yet+=("$sc"); fi
done
declare -A SC_SYSTEMS # scenario -> the selected systems that run it (space-separated)
active=()             # systems that run at least one measured scenario (only these are started)
need_jwt=0 need_key=0 need_h2=0 need_rl=0 need_tls=0
for sc in "${measured[@]}"; do
  [[ $sc == jwt || $sc == jwt-ratelimit ]] && need_jwt=1
  [[ $sc == jwt-ratelimit ]] && need_rl=1
  [[ $sc == apikey ]] && need_key=1
  [[ $sc == h2 ]] && need_h2=1
  [[ $sc == tls ]] && need_tls=1
  SC_SYSTEMS[$sc]=""
  for sys in "${systems[@]}"; do
    [[ -z $(na_reason "$sc" "$sys") ]] || continue
    SC_SYSTEMS[$sc]+="$sys "
    [[ " ${active[*]} " == *" $sys "* ]] || active+=("$sys")
  done
done
ordered=()
for sys in "${systems[@]}"; do [[ " ${active[*]} " == *" $sys "* ]] && ordered+=("$sys"); done
active=("${ordered[@]}")
runs_system() { [[ " ${active[*]} " == *" $1 "* ]]; }

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
  { runs_system haproxy || runs_system haproxy-1t; } && ! command -v haproxy >/dev/null && need_apt+=(haproxy)
  command -v h2load >/dev/null || need_apt+=(nghttp2-client) # for the h2 scenario
  ((need_jwt)) && ! command -v openssl >/dev/null && need_apt+=(openssl) # mints the test JWT
  runs_system portcullis-redis && { command -v redis-server >/dev/null && command -v redis-cli >/dev/null || need_apt+=(redis-server); }
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
{ runs_system haproxy || runs_system haproxy-1t; } && { command -v haproxy >/dev/null || die "haproxy is required"; }
((need_h2)) && { command -v h2load >/dev/null || die "h2load is required (apt-get install nghttp2-client)"; }
((need_jwt)) && { command -v openssl >/dev/null && command -v basenc >/dev/null || die "openssl and basenc (coreutils) are required for the jwt scenario"; }
runs_system portcullis-redis && { command -v redis-server >/dev/null && command -v redis-cli >/dev/null || die "redis-server and redis-cli are required for portcullis-redis (apt-get install redis-server)"; }

# ---------------------------------------------------------------- build
# Release + ReadyToRun publish into bench/out. bin/obj go to bench/out/artifacts (--artifacts-path), so
# this never touches the obj/ folders of a developer's own build in src/.
publish() { # project output-dir stamp-name executable inputs...
  local project=$1 dest=$2 name=$3 exe=$4
  local stamp=$out/.stamp-$name started=$out/.stamp-$name.new attempt
  shift 4
  if ((no_publish)); then
    [[ -x $dest/$exe ]] || die "--no-publish: $dest/$exe does not exist"
    log "publish $project: skipped (--no-publish); using ${dest#"$root"/} as it is"
    return
  fi
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
{ runs_system portcullis || runs_system portcullis-redis || runs_system portcullis-analytics; } && publish src/Portcullis.Cli "$out/portcullis" portcullis portcullis \
  "$root/src" "$root/Directory.Build.props" "$root/Directory.Packages.props"
if runs_system portcullis-base; then
  # The base commit's tree in a detached worktree (re-made when the ref moves), published like the current one.
  base_commit=$(git -C "$root" rev-parse --verify "${PORTCULLIS_BASE_REF}^{commit}") || die "PORTCULLIS_BASE_REF=$PORTCULLIS_BASE_REF is not a commit"
  if [[ ! -x $out/portcullis-base/portcullis || $(cat "$out/.base-commit" 2>/dev/null) != "$base_commit" ]]; then
    git -C "$root" worktree remove --force "$out/base-src" 2>/dev/null || rm -rf "$out/base-src"
    git -C "$root" worktree prune
    git -C "$root" worktree add --detach "$out/base-src" "$base_commit" >/dev/null 2>&1 || die "git worktree add of $base_commit failed"
    log "publish portcullis at ${base_commit:0:12} (Release, ReadyToRun) -> bench/out/portcullis-base"
    dotnet publish "$out/base-src/src/Portcullis.Cli" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
      --artifacts-path "$out/artifacts-base" -o "$out/portcullis-base" --nologo -v quiet -clp:ErrorsOnly >"$out/publish-base.log" 2>&1 ||
      { tail -n 20 "$out/publish-base.log" >&2; die "publish of $base_commit failed; see bench/out/publish-base.log"; }
    echo "$base_commit" >"$out/.base-commit"
  else
    log "publish portcullis at ${base_commit:0:12}: up to date"
  fi
fi
runs_system bareyarp && publish bench/BareYarp "$out/bareyarp" bareyarp BareYarp \
  "$bench/BareYarp" "$root/Directory.Build.props" "$root/Directory.Packages.props"

# ---------------------------------------------------------------- process helpers
work=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
chmod 755 "$work"
clk_tck=$(getconf CLK_TCK)
cores=$(nproc)

# shellcheck source=ports.sh
source "$bench/ports.sh"

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

origin_port="" origin_h2_port=""
free_port origin_port
((need_h2)) && free_port origin_h2_port
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
        # the jwt and apikey scenarios' paths: the same small body, so every proxy forwards the path as is
        location = /jwt/small { default_type text/plain; return 200 "hello from the origin\n"; }
        location = /key/small { default_type text/plain; return 200 "hello from the origin\n"; }
        location = /rl/small { default_type text/plain; return 200 "hello from the origin\n"; }
        location = /rl-tight/small { default_type text/plain; return 200 "hello from the origin\n"; }
        # 4 KiB is past nginx's limit for a config token, so this one is a file (descriptor cached)
        location = /4k { default_type text/plain; open_file_cache max=16 inactive=600s; open_file_cache_valid 600s; alias $work/origin/www/4k.txt; }
        location / { default_type text/plain; return 200 "ok\n"; }
    }
EOF
  # h2c (prior knowledge) for the h2 scenario's "direct" ceiling; the proxies still talk HTTP/1.1 to the origin
  ((need_h2)) && cat <<EOF
    server {
        listen 127.0.0.1:$origin_h2_port http2;
        location = /small { default_type text/plain; return 200 "hello from the origin\n"; }
    }
EOF
  echo "}"
} >"$work/origin/nginx.conf"
nginx -t -q -p "$work/origin" -e "$work/origin/error.log" -c "$work/origin/nginx.conf" || die "origin nginx config is invalid"
start_bg origin "$work/origin/stdout.log" nginx -p "$work/origin" -e "$work/origin/error.log" -c "$work/origin/nginx.conf"
origin_pid=$BG_PID
wait_ready origin "$origin_pid" "http://127.0.0.1:$origin_port/small" "$small_len"
read -ra origin_pids <<<"$(process_tree "$origin_pid")"
log "origin nginx on 127.0.0.1:$origin_port (pids ${origin_pids[*]})"

# ---------------------------------------------------------------- credentials (jwt, apikey)
# JWT: one RSA key pair per run and ONE long-lived RS256 token (exp 10 years ahead, iss and aud set), minted
# with the openssl CLI (the harness's own test token; the gateway never gets a hand-written JWT parser).
# Refusal probes: no token, a token signed by another key, an expired one and one for another audience.
creds=$work/credentials
mkdir -p "$creds"
b64url() { basenc --base64url -w0 | tr -d '='; }
mint_jwt() { # KEYFILE PAYLOAD_JSON -> header.payload.signature
  local h p
  h=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
  p=$(printf '%s' "$2" | b64url)
  printf '%s.%s.%s' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$1" -binary | b64url)"
}
jwt_token="" jwt_bad_sig="" jwt_expired="" jwt_wrong_aud="" api_key=""
if ((need_jwt)); then
  openssl genrsa -out "$creds/jwt-key.pem" 2048 2>/dev/null || die "openssl genrsa failed"
  openssl rsa -in "$creds/jwt-key.pem" -pubout -out "$creds/jwt-pub.pem" 2>/dev/null || die "openssl rsa -pubout failed"
  openssl genrsa -out "$creds/other-key.pem" 2048 2>/dev/null || die "openssl genrsa failed"
  modulus=$(openssl rsa -pubin -in "$creds/jwt-pub.pem" -noout -modulus | sed 's/^Modulus=//' | basenc --base16 -d | b64url)
  printf '{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"bench","n":"%s","e":"AQAB"}]}\n' "$modulus" >"$creds/jwks.json"
  now=$(date +%s)
  claims() { printf '{"iss":"%s","aud":"%s","sub":"bench-user","scope":"bench","iat":%d,"exp":%d}' "$JWT_ISS" "$1" "$now" "$2"; }
  jwt_token=$(mint_jwt "$creds/jwt-key.pem" "$(claims "$JWT_AUD" $((now + 10 * 365 * 86400)))")
  jwt_bad_sig=$(mint_jwt "$creds/other-key.pem" "$(claims "$JWT_AUD" $((now + 10 * 365 * 86400)))")
  jwt_expired=$(mint_jwt "$creds/jwt-key.pem" "$(claims "$JWT_AUD" $((now - 3600)))")
  jwt_wrong_aud=$(mint_jwt "$creds/jwt-key.pem" "$(claims other-api $((now + 10 * 365 * 86400)))")
  printf '%s\n' "$jwt_token" >"$creds/token.jwt"
  log "jwt: RS256 key pair and a token for iss=$JWT_ISS aud=$JWT_AUD (${#jwt_token} characters) in ${creds#"$work"/}"
fi
if ((need_key)); then
  if runs_system portcullis; then
    # Portcullis's key file holds only the SHA-256 hash; the key is printed once.
    api_key=$("$out/portcullis/portcullis" keys create --file "$creds/keys.yaml" --consumer bench --scopes bench 2>/dev/null | sed -n 's/^key: //p')
    [[ $api_key == pck_* ]] || die "portcullis keys create did not print a key"
  else
    api_key="pck_000000000000_$(head -c 32 /dev/urandom | b64url)"
  fi
  printf '%s bench\n' "$api_key" >"$creds/keys.map" # HAProxy's map file: plaintext keys (HAProxy compares them as is)
fi
if ((need_tls)); then
  # tls: one self-signed ECDSA P-256 certificate for every system (HAProxy wants certificate and key in one file)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$creds/tls-key.pem" -out "$creds/tls-cert.pem" 2>/dev/null || die "openssl req (tls certificate) failed"
  cat "$creds/tls-cert.pem" "$creds/tls-key.pem" >"$creds/tls.pem"
  log "tls: self-signed ECDSA P-256 certificate for localhost/127.0.0.1 in ${creds#"$work"/}"
fi
declare -A SC_HEADER=([jwt]="Authorization: Bearer $jwt_token" [jwt-ratelimit]="Authorization: Bearer $jwt_token" [apikey]="X-Api-Key: $api_key")

# ---------------------------------------------------------------- systems
redis_pid=""
declare -A PORT H2PORT TLSPORT SCPORT SYSPIDS # SCPORT[scenario/system]: a scenario's own port where it has one
haproxy_jwt_checks() { # the jwt frontend's checks (after them, the JWT is valid; Authorization is removed)
  cat <<EOF
    http-request set-var(txn.bearer) http_auth_bearer
    http-request deny deny_status 401 unless { var(txn.bearer) -m found }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_header_query('\$.alg') -m str RS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify("RS256","$creds/jwt-pub.pem") -m int 1 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str $JWT_ISS }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str $JWT_AUD }
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 unless { var(txn.exp) -m found }
    http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
    http-request del-header Authorization
EOF
}
haproxy_cfg() { # SYSTEM THREADS DIR
  local sys=$1 threads=$2 dir=$3
  cat <<EOF
# generated by bench/run.sh; no logging (as for every system here)
global
    nbthread $threads
    maxconn 4096
    pidfile $dir/haproxy.pid

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind 127.0.0.1:${PORT[$sys]}
    default_backend origin
EOF
  if ((need_jwt)); then
    cat <<EOF

# jwt scenario: RS256 bearer JWT. HAProxy keeps no validated-token cache: it checks the signature on every
# request. Checked: alg pinned to RS256, signature (jwt_verify with the PEM public key), iss, aud (as one
# string), exp present and not past. Not checked: nbf, typ, crit, duplicate members, kid (one key).
frontend jwt
    bind 127.0.0.1:${SCPORT[jwt/$sys]}
EOF
    haproxy_jwt_checks
    cat <<EOF
    default_backend origin
EOF
  fi
  if ((need_rl)); then
    local which port limit period
    for which in rl rl-tight; do
      if [[ $which == rl ]]; then port=${SCPORT[jwt-ratelimit/$sys]} limit=$RL_LIMIT period=1s; else port=${SCPORT[jwt-ratelimit-tight/$sys]} limit=$RL_TIGHT_LIMIT period=${RL_TIGHT_PER_S}s; fi
      cat <<EOF

# jwt-ratelimit scenario$([[ $which == rl-tight ]] && echo " (probe twin: the same rules with a tiny limit; must refuse)"): the jwt checks above, then a stick
# table keyed by the JWT's sub counting requests over $period; more than $limit per $period -> 429.
frontend jwt-$which
    bind 127.0.0.1:$port
    stick-table type string len 64 size 100k expire ${RL_TIGHT_PER_S}s store http_req_rate($period)
EOF
      haproxy_jwt_checks
      cat <<EOF
    http-request track-sc0 var(txn.bearer),jwt_payload_query('\$.sub')
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt $limit }
    default_backend origin
EOF
    done
  fi
  if ((need_key)) && [[ $sys == haproxy ]]; then
    cat <<EOF

# apikey scenario: the key must be in a map file. HAProxy compares plaintext keys (Portcullis stores hashes).
frontend apikey
    bind 127.0.0.1:${SCPORT[apikey/$sys]}
    http-request deny deny_status 401 unless { req.hdr(x-api-key),map($creds/keys.map) -m found }
    http-request del-header X-Api-Key
    default_backend origin
EOF
  fi
  if ((need_tls)) && [[ $sys == haproxy ]]; then
    cat <<EOF

# tls scenario: TLS termination (TLS 1.2+; the client negotiates 1.3), cleartext HTTP/1.1 to the origin
frontend tls
    bind 127.0.0.1:${TLSPORT[$sys]} ssl crt $creds/tls.pem ssl-min-ver TLSv1.2 alpn h2,http/1.1
    default_backend origin
EOF
  fi
  if ((need_h2)) && [[ $sys == haproxy ]]; then
    cat <<EOF

# h2 scenario: cleartext HTTP/2 with prior knowledge from the client; HTTP/1.1 to the origin
frontend h2
    bind 127.0.0.1:${H2PORT[$sys]} proto h2
    default_backend origin
EOF
  fi
  cat <<EOF

backend origin
    server origin 127.0.0.1:$origin_port
EOF
}

start_system() {
  local sys=$1 port pid dir=$work/$1
  mkdir -p "$dir"
  case $sys in
    direct)
      PORT[$sys]=$origin_port
      H2PORT[$sys]=$origin_h2_port
      SYSPIDS[$sys]=""
      return
      ;;
    haproxy | haproxy-1t)
      free_port port
      PORT[$sys]=$port
      ((need_jwt)) && free_port "SCPORT[jwt/$sys]"
      ((need_rl)) && free_port "SCPORT[jwt-ratelimit/$sys]" && free_port "SCPORT[jwt-ratelimit-tight/$sys]"
      if [[ $sys == haproxy ]]; then
        ((need_key)) && free_port "SCPORT[apikey/$sys]"
        ((need_h2)) && free_port "H2PORT[$sys]"
        ((need_tls)) && free_port "TLSPORT[$sys]"
      fi
      haproxy_cfg "$sys" "$([[ $sys == haproxy-1t ]] && echo 1 || echo "$cores")" "$dir" >"$dir/haproxy.cfg"
      haproxy -c -q -f "$dir/haproxy.cfg" || die "generated haproxy.cfg is invalid"
      start_bg "$sys" "$dir/haproxy.log" haproxy -db -f "$dir/haproxy.cfg"
      ;;
    nginx)
      free_port port
      ((need_h2)) && free_port "H2PORT[$sys]"
      ((need_tls)) && free_port "TLSPORT[$sys]"
      {
        echo "worker_processes $cores;"
        nginx_common "$dir"
        echo "http {"
        nginx_http_common "$dir"
        # apikey scenario: plaintext keys in a map (nginx has no hashed key store either)
        ((need_key)) && printf '    map_hash_bucket_size 128;\n    map $http_x_api_key $bench_api_key_ok {\n        default 0;\n        "%s" 1;\n    }\n' "$api_key"
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
EOF
        ((need_key)) && cat <<'EOF'
        location /key/ {
            if ($bench_api_key_ok = 0) { return 401; }
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Api-Key "";
        }
EOF
        echo "    }"
        ((need_tls)) && cat <<EOF
    server {
        listen 127.0.0.1:${TLSPORT[$sys]} ssl http2;
        ssl_certificate $creds/tls-cert.pem;
        ssl_certificate_key $creds/tls-key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
        ((need_h2)) && cat <<EOF
    server {
        listen 127.0.0.1:${H2PORT[$sys]} http2;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
        echo "}"
      } >"$dir/nginx.conf"
      nginx -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" || die "generated nginx proxy config is invalid"
      start_bg nginx "$dir/stdout.log" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
      ;;
    bareyarp)
      free_port port
      ((need_h2)) && free_port "H2PORT[$sys]"
      local -a extra=()
      ((need_h2)) && extra+=("BAREYARP_H2_PORT=${H2PORT[$sys]}")
      if ((need_tls)); then
        free_port "TLSPORT[$sys]"
        extra+=("BAREYARP_TLS_PORT=${TLSPORT[$sys]}" "BAREYARP_TLS_CERT=$creds/tls-cert.pem" "BAREYARP_TLS_KEY=$creds/tls-key.pem")
      fi
      ((need_jwt)) && extra+=("BAREYARP_JWT_PUBLIC_KEY=$creds/jwt-pub.pem" "BAREYARP_JWT_ISSUER=$JWT_ISS" "BAREYARP_JWT_AUDIENCE=$JWT_AUD")
      # shellcheck disable=SC2086
      (cd "$dir" && exec env BAREYARP_PORT="$port" BAREYARP_DESTINATION="http://127.0.0.1:$origin_port" "${extra[@]}" ${BAREYARP_ENV:-} \
        "$out/bareyarp/BareYarp") >"$dir/bareyarp.log" 2>&1 &
      BG_PID=$!
      started_pids+=("$BG_PID")
      ;;
    portcullis | portcullis-redis | portcullis-analytics | portcullis-base)
      free_port port
      ((need_h2)) && free_port "H2PORT[$sys]"
      ((need_tls)) && free_port "TLSPORT[$sys]"
      local store=local redis_port=0
      if [[ $sys == portcullis-redis ]]; then
        store=redis
        free_port redis_port
        # no persistence: the counters are throw-away; stopped on exit with everything else
        start_bg redis "$dir/redis.log" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no
        redis_pid=$BG_PID
        local i
        for ((i = 0; i < 100; i++)); do
          [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] && break
          kill -0 "$redis_pid" 2>/dev/null || { tail -n 20 "$dir/redis.log" >&2; die "redis-server exited during start-up"; }
          sleep 0.1
        done
        [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] || die "redis-server on 127.0.0.1:$redis_port did not answer PING"
        log "redis-server on 127.0.0.1:$redis_port (pid $redis_pid; $(redis-server --version | awk '{print $3}'))"
      fi
      if [[ -n ${PORTCULLIS_BENCH_YAML:-} ]]; then
        cp "$PORTCULLIS_BENCH_YAML" "$dir/portcullis.yaml"
      else
        ((need_jwt)) && cp "$creds/jwks.json" "$dir/jwks.json"
        ((need_key)) && cp "$creds/keys.yaml" "$dir/keys.yaml"
        {
          cat <<EOF
# generated by bench/run.sh: one listener, one catch-all route, one cluster; everything else default.
# Only with the jwt / apikey / h2 scenarios: a JWT issuer and a /jwt route, API keys and a /key route,
# an h2c listener. Plain requests take the catch-all route either way.
listeners:
  - name: public
    address: 127.0.0.1:\${BENCH_GATEWAY_PORT}
EOF
          ((need_h2)) && cat <<EOF
  - name: h2
    address: 127.0.0.1:\${BENCH_H2_PORT}
    protocols: http2
EOF
          ((need_tls)) && cat <<EOF
  - name: tls
    address: 127.0.0.1:\${BENCH_TLS_PORT}
    tls:
      certificates:
        - { cert: $creds/tls-cert.pem, key: $creds/tls-key.pem }
EOF
          # The issue's condition for the plain-proxy targets: access log and metrics on (metrics are on by
          # default). HAProxy, nginx and bare YARP log nothing; PORTCULLIS_BENCH_ACCESS_LOG=0 turns it off.
          [[ ${PORTCULLIS_BENCH_ACCESS_LOG:-1} == 1 ]] && cat <<EOF

# JSON access log to a file next to this config (one rotated file kept: disk stays bounded)
observability:
  accessLog: { enabled: true, target: file, path: access.log, maxSize: 200MiB, maxFiles: 1 }
EOF
          # portcullis-analytics: the same gateway recording every request into a DuckDB file next to this
          # config (rollups per minute, samples of every error and 1 % of successes), flushed every 5 s.
          [[ $sys == portcullis-analytics ]] && cat <<EOF

analytics:
  path: analytics.duckdb
  samples: { successRate: 0.01 }
EOF
          if ((need_rl)); then
            [[ $store == redis ]] && cat <<EOF

# jwt-ratelimit with store: redis (strict: one Lua script, one round trip per decision). onStoreFailure
# closed, so a Redis that does not answer shows as 503 errors, never as silently unlimited traffic; the
# timeout is 500 ms (default 100 ms) so that a stall of this shared machine is not mistaken for an outage.
stores:
  redis:
    connection: 127.0.0.1:\${BENCH_REDIS_PORT}
    timeout: 500ms
EOF
            cat <<EOF

# jwt-ratelimit: a per-consumer (= the token's sub) limit that is never reached, and its twin with a tiny
# limit that the harness probes for a 429 before measuring. No RateLimit headers (HAProxy sends none).
rateLimits:
EOF
            for which in rl rl-tight; do
              printf '  bench-%s:\n    key: consumer\n    algorithm: tokenBucket\n    limit: %s\n    per: %s\n    store: %s\n    headers: false\n' \
                "$which" "$([[ $which == rl ]] && echo $RL_LIMIT || echo $RL_TIGHT_LIMIT)" "$([[ $which == rl ]] && echo 1s || echo ${RL_TIGHT_PER_S}s)" "$store"
              [[ $store == redis ]] && printf '    onStoreFailure: closed\n'
            done
          fi
          if ((need_jwt || need_key)); then
            printf '\nidentity:\n'
            ((need_jwt)) && cat <<EOF
  issuers:
    - name: bench
      jwksFile: jwks.json
      issuer: $JWT_ISS
      audiences: [$JWT_AUD]
      algorithms: [RS256]
EOF
            ((need_key)) && printf '  apiKeys:\n    file: keys.yaml\n'
          fi
          printf '\nroutes:\n'
          ((need_jwt)) && printf '  - name: jwt\n    match: { pathPrefix: /jwt }\n    auth: { issuers: [bench] }\n    cluster: origin\n'
          if ((need_rl)); then
            printf '  - name: rl-tight\n    match: { pathPrefix: /rl-tight }\n    auth: { issuers: [bench] }\n    rateLimits: bench-rl-tight\n    cluster: origin\n'
            printf '  - name: rl\n    match: { pathPrefix: /rl }\n    auth: { issuers: [bench] }\n    rateLimits: bench-rl\n    cluster: origin\n'
          fi
          ((need_key)) && printf '  - name: apikey\n    match: { pathPrefix: /key }\n    auth: { apiKey: true }\n    cluster: origin\n'
          cat <<EOF
  - name: all
    match: { pathPrefix: / }
    cluster: origin

clusters:
  origin:
    destinations:
      - http://127.0.0.1:\${BENCH_ORIGIN_PORT}
EOF
        } >"$dir/portcullis.yaml"
      fi
      # shellcheck disable=SC2086
      (cd "$dir" && exec env BENCH_GATEWAY_PORT="$port" BENCH_H2_PORT="${H2PORT[$sys]:-0}" BENCH_TLS_PORT="${TLSPORT[$sys]:-0}" BENCH_ORIGIN_PORT="$origin_port" BENCH_REDIS_PORT="$redis_port" ${PORTCULLIS_ENV:-} \
        "$out/$([[ $sys == portcullis-base ]] && echo portcullis-base || echo portcullis)/portcullis" run -c "$dir/portcullis.yaml") >"$dir/portcullis.log" 2>&1 &
      BG_PID=$!
      started_pids+=("$BG_PID")
      ;;
  esac
  pid=$BG_PID
  PORT[$sys]=$port
  wait_ready "$sys" "$pid" "http://127.0.0.1:$port/small" "$small_len"
  SYSPIDS[$sys]=$(process_tree "$pid")
  # portcullis-redis: redis-server's CPU and memory count as the gateway's (the limit's whole cost)
  [[ $sys == portcullis-redis ]] && SYSPIDS[$sys]+=" $redis_pid"
  log "$sys on 127.0.0.1:$port (pids ${SYSPIDS[$sys]})"
}

url_of() { # SCENARIO SYSTEM -> the URL the load generator uses
  local sc=$1 sys=$2
  if [[ $sc == h2 ]]; then echo "http://127.0.0.1:${H2PORT[$sys]}${SC_PATH[$sc]}"; return; fi
  if [[ $sc == tls ]]; then echo "https://127.0.0.1:${TLSPORT[$sys]}${SC_PATH[$sc]}"; return; fi
  echo "http://127.0.0.1:${SCPORT[$sc/$sys]:-${PORT[$sys]}}${SC_PATH[$sc]}"
}

tight_url_of() { # SYSTEM -> the jwt-ratelimit probe twin's URL (limit 2 per 10 s)
  echo "http://127.0.0.1:${SCPORT[jwt-ratelimit-tight/$1]:-${PORT[$1]}}/rl-tight/small"
}

pre_bg=$(background_pct 2)
((pre_bg < 15)) || log "warning: other processes use ${pre_bg}% of this machine's CPU; results will be noisy (see the bg CPU % column; --wait-quiet S waits)"
for sys in "${active[@]}"; do start_system "$sys"; done

# ---------------------------------------------------------------- checks before measuring
# Every system must return the origin's exact bodies, and refuse what it must refuse, before anything is
# measured: a JWT or API-key benchmark of a proxy that does not check the credential is a fake number.
probe() { # URL [curl args...] -> "HTTP_CODE BYTES"
  local url=$1
  shift
  curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 "$@" "$url" || true
}
for sys in "${active[@]}"; do
  for path in /small /4k; do
    got=$(curl -s --max-time 5 "http://127.0.0.1:${PORT[$sys]}$path" | wc -c)
    [[ $got == "${BODY_LEN[$path]}" ]] || die "$sys returned $got bytes for $path, expected ${BODY_LEN[$path]}"
  done
done
for sc in "${measured[@]}"; do
  for sys in ${SC_SYSTEMS[$sc]}; do
    url=$(url_of "$sc" "$sys")
    case $sc in
      jwt | jwt-ratelimit)
        got=$(probe "$url" -H "Authorization: Bearer $jwt_token")
        [[ $got == "200 $small_len" ]] || die "jwt: $sys answered '$got' to a valid token on $url, expected 200 and $small_len bytes"
        for bad in missing bad_sig expired wrong_aud; do
          case $bad in
            missing) got=$(probe "$url") ;;
            bad_sig) got=$(probe "$url" -H "Authorization: Bearer $jwt_bad_sig") ;;
            expired) got=$(probe "$url" -H "Authorization: Bearer $jwt_expired") ;;
            wrong_aud) got=$(probe "$url" -H "Authorization: Bearer $jwt_wrong_aud") ;;
          esac
          [[ $got == 401\ * ]] || die "jwt: $sys answered '$got' to a $bad token on $url, expected 401: it does not verify tokens, refusing to measure it"
        done
        log "$sc: $sys accepts the valid token and refuses missing, badly signed, expired and wrong-audience tokens (401)"
        if [[ $sc == jwt-ratelimit ]]; then
          # The limiter must limit: the twin route (limit 2 per 10 s, same key) must answer 429 within a few
          # requests. A Redis store that is still connecting answers 503 (fail-closed) meanwhile: retried.
          tight=$(tight_url_of "$sys") codes="" limited=0
          for ((i = 0; i < 40; i++)); do
            got=$(probe "$tight" -H "Authorization: Bearer $jwt_token")
            codes+="${got%% *} "
            [[ $got == 429\ * ]] && { limited=1; break; }
            [[ $got == 200\ * || $got == 503\ * ]] || break
            [[ $got == 503\ * ]] && sleep 0.25
          done
          ((limited)) || die "jwt-ratelimit: $sys never answered 429 on $tight (limit $RL_TIGHT_LIMIT per ${RL_TIGHT_PER_S}s; answers: $codes): it does not rate-limit, refusing to measure it"
          log "jwt-ratelimit: $sys limits (429 on the twin route after: $codes)"
        fi
        ;;
      apikey)
        got=$(probe "$url" -H "X-Api-Key: $api_key")
        [[ $got == "200 $small_len" ]] || die "apikey: $sys answered '$got' to the valid key on $url, expected 200 and $small_len bytes"
        for got in "$(probe "$url")" "$(probe "$url" -H "X-Api-Key: ${api_key%?}x")"; do
          [[ $got == 401\ * ]] || die "apikey: $sys answered '$got' to a missing or wrong key on $url, expected 401: it does not check keys, refusing to measure it"
        done
        log "apikey: $sys accepts the key and refuses a missing and a wrong key (401)"
        ;;
      tls)
        # HTTP/1.1 over TLS 1.3 (what wrk negotiates); the certificate is self-signed, so no verification here
        got=$(curl -sk -o /dev/null -w '%{scheme} %{http_code} %{size_download}' --max-time 5 --http1.1 --tlsv1.3 "$url" || true)
        [[ ${got,,} == "https 200 $small_len" ]] || die "tls: $sys answered '$got' on $url over TLS 1.3, expected 'https 200 $small_len'"
        ;;
      h2)
        got=$(curl -s -o /dev/null -w '%{http_version} %{http_code} %{size_download}' --max-time 5 --http2-prior-knowledge "$url" || true)
        [[ $got == "2 200 $small_len" ]] || die "h2: $sys answered '$got' on $url with HTTP/2 prior knowledge, expected '2 200 $small_len'"
        ;;
    esac
  done
done

# ---------------------------------------------------------------- measuring
raw=$out/raw.tsv
printf 'scenario\tsystem\tround\trps\tp50_ms\tp99_ms\tcpu_us_per_req\trss_mb\terrors\trequests\torigin_cpu_us_per_req\twrk_cpu_us_per_req\tbackground_cpu_pct\n' >"$raw"

run_wrk() { # OUTFILE CONNS SECONDS URL [HEADER]
  if (($# > 4)); then
    wrk -t1 -c"$2" -d"$3s" -s "$bench/wrk-report.lua" -H "$5" "$4" >"$1" 2>&1 &
  else
    wrk -t1 -c"$2" -d"$3s" -s "$bench/wrk-report.lua" "$4" >"$1" 2>&1 &
  fi
  wrk_pid=$!
  wait "$wrk_pid" || true
  wrk_pid=""
}
run_h2load() { # OUTFILE CONNS SECONDS URL: one thread, CONNS connections of H2_STREAMS streams, h2c prior knowledge
  # --log-file has every request's latency, so p50/p99 come from it (h2load itself prints only min/max/mean/sd)
  h2load -t1 -c"$2" -m"$H2_STREAMS" -D"$3" --log-file="$1.requests" "$4" >"$1" 2>&1 &
  wrk_pid=$!
  wait "$wrk_pid" || true
  wrk_pid=""
}
run_load() { # OUTFILE SCENARIO SECONDS URL: the scenario's load generator, connections and headers
  local sc=$2
  if [[ $sc == h2 ]]; then
    run_h2load "$1" "${SC_CONNS[$sc]}" "$3" "$4"
  elif [[ -n ${SC_HEADER[$sc]:-} ]]; then
    run_wrk "$1" "${SC_CONNS[$sc]}" "$3" "$4" "${SC_HEADER[$sc]}"
  else
    run_wrk "$1" "${SC_CONNS[$sc]}" "$3" "$4"
  fi
}
load_json() { # OUTFILE SCENARIO -> the load generator's result as the JSON object wrk-report.lua prints
  if [[ $2 != h2 ]]; then
    sed -n 's/^WRKJSON //p' "$1"
    return
  fi
  # h2load: "finished in 2.00s, 31234.50 req/s, ...", "requests: N total, N started, N done, N succeeded,
  # N failed, N errored, N timeout", "status codes: N 2xx, N 3xx, N 4xx, N 5xx"; latencies from the log.
  local p50 p99
  read -r p50 p99 < <(awk -F'\t' '{print $3}' "$1.requests" 2>/dev/null | sort -n |
    awk '{v[NR] = $1} END {if (NR == 0) print "0 0"; else print v[int((NR - 1) * 0.50) + 1], v[int((NR - 1) * 0.99) + 1]}')
  rm -f "$1.requests"
  awk -v p50="$p50" -v p99="$p99" '
    /^finished in/ {d = $3; sub(/,$/, "", d); if (d ~ /ms$/) {sub(/ms$/, "", d); d = d * 1000} else {sub(/s$/, "", d); d = d * 1e6}}
    /^requests:/ {done = $6; failed = $10; errored = $12; timeout = $14}
    /^status codes:/ {bad = $5 + $7 + $9}
    END {
      if (d == "" || done == "") exit 1
      printf "{\"requests\":%d,\"duration_us\":%d,\"bytes\":0,\"err_connect\":0,\"err_read\":%d,\"err_write\":0,\"err_status\":%d,\"err_timeout\":%d,\"p50_us\":%s,\"p90_us\":0,\"p99_us\":%s,\"max_us\":0,\"mean_us\":0}\n",
        done, d, failed + errored, bad, timeout, p50, p99
    }' "$1" || true
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
  local sc=$1 sys=$2 round=$3 f=$work/load-$1-$2-$3.txt pids opids c0 c1 o0 o1 w0 w1 m0 m1 t0 t1 hwm json
  read -ra pids <<<"${SYSPIDS[$sys]}"
  opids=("${origin_pids[@]}")
  wait_quiet
  reset_hwm "${pids[@]}"
  c0=$(cpu_ticks "${pids[@]}")
  o0=$(cpu_ticks "${opids[@]}")
  children_cpu
  w0=$CHILD_CPU
  read -r m0 t0 <<<"$(machine_ticks)"
  run_load "$f" "$sc" "$duration" "$(url_of "$sc" "$sys")"
  read -r m1 t1 <<<"$(machine_ticks)"
  children_cpu
  w1=$CHILD_CPU
  c1=$(cpu_ticks "${pids[@]}")
  o1=$(cpu_ticks "${opids[@]}")
  hwm=$(hwm_kb "${pids[@]}")
  json=$(load_json "$f" "$sc")
  [[ -n $json ]] || { cat "$f" >&2; die "the load generator produced no result for $sc/$sys"; }
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
for sys in "${active[@]}"; do
  secs=$warmup_other
  [[ $sys == bareyarp || $sys == portcullis* ]] && secs=$warmup_dotnet
  ((secs > 0)) || continue
  log "warm-up $sys: ${secs}s"
  run_wrk "$work/warmup-$sys.txt" 64 "$secs" "http://127.0.0.1:${PORT[$sys]}/small"
  # full mode: also a quarter of that with 256 connections and the 4 KiB body (more sockets, bigger buffers)
  ((quick)) || run_wrk "$work/warmup-$sys-4k.txt" 256 "$(((secs + 3) / 4))" "http://127.0.0.1:${PORT[$sys]}/4k"
done

for sc in "${measured[@]}"; do
  read -ra sc_systems <<<"${SC_SYSTEMS[$sc]}"
  nsys=${#sc_systems[@]}
  ((nsys > 0)) || { log "scenario $sc: none of the selected systems can run it"; continue; }
  if [[ $sc == h2 ]]; then
    gen="h2load -t1 -c${SC_CONNS[$sc]} -m$H2_STREAMS (h2c)"
  else
    gen="wrk -t1 -c${SC_CONNS[$sc]}${SC_HEADER[$sc]:+ -H '${SC_HEADER[$sc]%%:*}: …'}"
  fi
  # The jwt, apikey and h2 scenarios exercise code the plain warm-up did not: give each system a short one.
  if [[ $sc == jwt || $sc == jwt-ratelimit || $sc == apikey || $sc == h2 ]]; then
    for sys in "${sc_systems[@]}"; do
      secs=1
      [[ $sys == bareyarp || $sys == portcullis* ]] && secs=$(((warmup_dotnet + 3) / 4 > 1 ? (warmup_dotnet + 3) / 4 : 1))
      ((quick)) && [[ $sys != bareyarp && $sys != portcullis* ]] && continue # HAProxy and nginx need none
      run_load "$work/warmup-$sc-$sys.txt" "$sc" "$secs" "$(url_of "$sc" "$sys")"
      rm -f "$work/warmup-$sc-$sys.txt.requests"
    done
  fi
  log "scenario $sc: $rounds rounds x $nsys systems x ${duration}s, $gen ${SC_PATH[$sc]}"
  for ((r = 1; r <= rounds; r++)); do
    for ((k = 0; k < nsys; k++)); do
      # rotate the order each round so no system always runs right after the same neighbour
      measure "$sc" "${sc_systems[$(((k + r - 1) % nsys))]}" "$r"
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
na=$work/not-applicable.tsv
: >"$na"
for sc in "${measured[@]}"; do
  for sys in "${systems[@]}"; do
    why=$(na_reason "$sc" "$sys")
    [[ -n $why && $why != - ]] && printf '%s\t%s\t%s\n' "$sc" "$sys" "$why" >>"$na"
  done
  for sys in ${SC_SYSTEMS[$sc]}; do
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

ratio() { # SCENARIO SYSTEM BASE -> rps(system)/rps(base), or "-". Base haproxy = the better of haproxy and
  # haproxy-1t where both ran (the jwt scenario: the issue's target is HAProxy's better of nbthread 1 and 2).
  awk -F'\t' -v sc="$1" -v sys="$2" -v base="$3" '
    $1 == sc && $2 == sys {a = $3}
    $1 == sc && ($2 == base || (base == "haproxy" && $2 == "haproxy-1t")) && $3 > b {b = $3}
    END {if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else print "-"}' "$agg"
}
haproxy_base() { # SCENARIO -> the HAProxy system the "vs HAProxy" column divides by
  awk -F'\t' -v sc="$1" '$1 == sc && ($2 == "haproxy" || $2 == "haproxy-1t") && $3 > b {b = $3; s = $2} END {print s}' "$agg"
}
label() { # SCENARIO SYSTEM
  if [[ $2 == haproxy && ($1 == jwt || $1 == jwt-ratelimit) ]] && runs_system haproxy-1t; then echo "HAProxy nbthread $cores"
  elif [[ $2 == portcullis && $1 == jwt-ratelimit ]]; then echo "Portcullis, local store"
  else echo "${SYS_LABEL[$2]}"; fi
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
  while IFS=$'\t' read -r sc sys why; do
    jq -nc --arg sc "$sc" --arg sys "$sys" --arg why "$why" \
      '{scenario: $sc, system: $sys, status: "n/a", note: $why, rps: null, p50_ms: null, p99_ms: null, rss_mb: null, cpu_us_per_req: null}'
  done <"$na"
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
- Portcullis: $( ((no_publish)) && echo "--no-publish: the binaries in bench/out as published $(date -u -r "$out/portcullis/portcullis.dll" '+%Y-%m-%d %H:%M UTC' 2>/dev/null) (not necessarily this commit); " || true)commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$( ((dirty)) && echo " + $dirty uncommitted change(s) in src/" || true)
- GC: Portcullis $(gc_mode "$out/portcullis/portcullis.runtimeconfig.json" "${PORTCULLIS_ENV:-}"), bare YARP $(gc_mode "$out/bareyarp/BareYarp.runtimeconfig.json" "${BAREYARP_ENV:-}")

## Settings

$( ((quick)) && echo "quick mode: " || true)$rounds rounds x ${duration}s per system and scenario, interleaved (order rotated each round), medians; warm-up ${warmup_dotnet}s (.NET) / ${warmup_other}s (others) before round 1.
wrk -t1, HTTP/1.1 keep-alive, loopback; proxies use $cores threads/workers (plus HAProxy nbthread 1 in jwt and jwt-ratelimit); nothing pinned (load generator, proxy and origin share the $cores cores).
Portcullis: $([[ -n ${PORTCULLIS_BENCH_YAML:-} ]] && echo "config from PORTCULLIS_BENCH_YAML" || { [[ ${PORTCULLIS_BENCH_ACCESS_LOG:-1} == 1 ]] && echo "JSON access log to a file and Prometheus metrics on (the defaults plus accessLog)" || echo "access log off (PORTCULLIS_BENCH_ACCESS_LOG=0), metrics on"; }); HAProxy, nginx and bare YARP log nothing.
tls: wrk over TLS 1.3 (HTTP/1.1, keep-alive: handshakes only when connections open) to the proxy, cleartext to the origin; one self-signed ECDSA P-256 certificate for all.
jwt: wrk -H 'Authorization: Bearer <one RS256 token>' on /jwt/small (jwt-ratelimit: the same token on /rl/small); apikey: wrk -H 'X-Api-Key: <one key>' on /key/small; h2: h2load -t1 -c${SC_CONNS[h2]} -m$H2_STREAMS, h2c prior knowledge, p50/p99 from its per-request log.
RSS = peak VmHWM of the proxy process(es) during the scenario; CPU = proxy utime+stime over the run / requests.
bg CPU % = median share of the machine's CPU used by processes other than wrk, the origin and the proxy during the runs (0 on a quiet machine; anything above ~5 makes the numbers noisy).

## Results

| scenario | system | rps | rps min–max | p50 ms | p99 ms | vs HAProxy | vs bare YARP | proxy peak RSS MB | CPU µs/req | errors | bg CPU % |
|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
while IFS=$'\t' read -r sc sys rps p50 p99 cpu rss errors lo hi ocpu wcpu bg; do
  if [[ $sys == n/a ]]; then
    printf '| %s | %s | n/a | | | | | | | | | |\n' "$sc" "$(label "$sc" "$rps")"
    continue
  fi
  printf '| %s | %s | %.0f | %.0f–%.0f | %.2f | %.2f | %s | %s | %s | %s | %s | %.0f |\n' \
    "$sc" "$(label "$sc" "$sys")" "$rps" "$lo" "$hi" "$p50" "$p99" \
    "$(r=$(ratio "$sc" "$sys" haproxy); [[ $r == - ]] && echo – || echo "${r}×")" \
    "$(r=$(ratio "$sc" "$sys" bareyarp); [[ $r == - ]] && echo – || echo "${r}×")" \
    "$([[ $rss == - ]] && echo – || printf '%.1f' "$rss")" \
    "$([[ $cpu == - ]] && echo – || printf '%.1f' "$cpu")" \
    "$errors" "$bg"
done < <(for sc in "${measured[@]}"; do awk -F'\t' -v sc="$sc" '$1 == sc' "$agg"; awk -F'\t' -v sc="$sc" '$1 == sc {print $1 "\tn/a\t" $2}' "$na"; done)
print_not_yet_rows
echo
for sc in jwt jwt-ratelimit; do
  if [[ " ${measured[*]} " == *" $sc "* ]] && [[ -n $(haproxy_base "$sc") ]]; then
    echo "- $sc: \"vs HAProxy\" divides by the better HAProxy, here $(label "$sc" "$(haproxy_base "$sc")") (issue #4: HAProxy's better of nbthread 1 and 2)."
  fi
done
if [[ " ${measured[*]} " == *" jwt-ratelimit "* ]]; then
  echo "- jwt-ratelimit: limit $RL_LIMIT per second per JWT sub (never reached; each system answered 429 on a twin route limited to $RL_TIGHT_LIMIT per ${RL_TIGHT_PER_S} s before measuring). HAProxy: jwt_verify + stick table (http_req_rate(1s)); Portcullis: tokenBucket keyed by consumer, no RateLimit headers; Portcullis, Redis store: the same in a local redis-server (strict, one round trip per decision; its CPU and RSS are counted in the Portcullis columns)."
  r=$(ratio jwt-ratelimit portcullis-redis portcullis)
  [[ $r != - ]] && echo "- jwt-ratelimit: Portcullis with the Redis store reached ${r}× the requests/s of the local store in this run."
  r=$(awk -F'\t' '$1 == "jwt" && $2 == "portcullis" {a = $3} $1 == "jwt-ratelimit" && $2 == "portcullis" {b = $3} END {if (a > 0 && b > 0) printf "%.2f", b / a; else print "-"}' "$agg")
  [[ $r != - ]] && echo "- jwt-ratelimit: Portcullis with the local limit reached ${r}× its own jwt (no limit) requests/s in this run."
fi
for sc in plain-small-c64 jwt; do
  r=$(ratio "$sc" portcullis-analytics portcullis)
  [[ $r != - ]] && echo "- $sc: Portcullis with analytics on reached ${r}× the requests/s of Portcullis with it off in this run (issue 16: at least 0.95×)."
done
for sc in "${measured[@]}"; do
  r=$(ratio "$sc" portcullis portcullis-base)
  [[ $r != - ]] && echo "- $sc: Portcullis (this tree) reached ${r}× the requests/s of Portcullis at ${PORTCULLIS_BASE_REF} in this run."
done
while IFS=$'\t' read -r sc sys why; do echo "- $sc, $(label "$sc" "$sys"): n/a — $why"; done <"$na"
for sc in "${not_yet[@]}"; do echo "- $sc: not yet — ${NOT_YET[$sc]}"; done
log "results: ${out#"$root"/}/results.json, raw rounds: ${out#"$root"/}/raw.tsv, logs: ${out#"$root"/}/logs/"
