# Sourced by bench/chaos.sh: the scenarios where the gateway itself or its upstreams are disturbed
# (reload, backend kill, slow backend, certificate rotation, SIGTERM). Uses the helpers defined there.
# shellcheck shell=bash disable=SC2154
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
$(origin_routes)
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

