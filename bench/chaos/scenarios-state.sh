# Sourced by bench/chaos.sh: the scenarios around shared state and time (IdP keys, Redis-shared limits
# under CPU contention, soak, idle connections). Uses the helpers defined there.
# shellcheck shell=bash disable=SC2154
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
  # 3. k1 withdrawn (set = k2): refused within refreshInterval (4s) + timeout (1s), no admin call; the check
  #    allows 3 s more because a timer on a CPU-starved machine (CI runs this beside other work) fires late
  c=$(code "$t1")
  [[ $c == 200 ]] || { ok=0; notes+=("k1 before withdrawal: $c"); }
  publish_jwks k2
  local t0=$EPOCHREALTIME waited=""
  while awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {exit !(b - a < 10)}'; do
    c=$(code "$t1")
    [[ $c == 401 ]] && { waited=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}'); break; }
    sleep 0.2
  done
  if [[ -n $waited ]] && awk -v w="$waited" 'BEGIN {exit !(w <= 8)}'; then notes+=("withdrawn k1 refused after ${waited}s (bound 4s+1s, +3s slack)"); else ok=0; notes+=("withdrawn k1 still accepted after ${waited:-10+}s (bound 4s+1s, +3s slack)"); fi
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
$(origin_routes)
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
$(origin_routes)
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

