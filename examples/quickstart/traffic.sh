#!/usr/bin/env bash
# Traffic for the running quickstart (start examples/quickstart/run.sh first, in another terminal): ordinary calls,
# then a scanner trying paths no route matches (/.env, /wp-admin/, /.git/config, …), while the ordinary calls go on.
# The advisor (every minute, over the analytics store flushed every 5 s) reports it as a traffic.scanner finding,
# usually within two minutes; the script waits for it and prints it:
#   curl http://127.0.0.1:9901/admin/advice      and the dashboard: http://127.0.0.1:9901/ui/advice
# DEMO_KEY=<the key run.sh printed> adds calls to the API-key route /reports. Exit 0 once the finding is there,
# 1 when it has not appeared after TRAFFIC_WAIT seconds (default 240).
set -euo pipefail
gw="http://127.0.0.1:${GATEWAY_PORT:-8080}"
admin="http://127.0.0.1:${ADMIN_PORT:-9901}"
wait_for="${TRAFFIC_WAIT:-240}"
key="${DEMO_KEY:-}"

if ! curl -fsS -o /dev/null "$gw/gateway/healthz"; then
  echo "no quickstart gateway at $gw: start examples/quickstart/run.sh first" >&2
  exit 1
fi

# Ordinary traffic, a few requests a second, in the background until the script ends.
normal() {
  while true; do
    curl -s -o /dev/null "$gw/orders/$((RANDOM % 500))"
    curl -s -o /dev/null -H 'Api-Version: 2' "$gw/orders/$((RANDOM % 500))"
    curl -s -o /dev/null "$gw/v2/orders/$((RANDOM % 500))"
    [ -n "$key" ] && curl -s -o /dev/null -H "X-Api-Key: $key" "$gw/reports/$((RANDOM % 50))"
    sleep 0.5
  done
}
normal & normal_pid=$!
trap 'kill $normal_pid 2>/dev/null || true' EXIT INT TERM
echo "ordinary traffic to $gw (orders, v2, reports with DEMO_KEY) ..."
sleep 10

# The scanner: one pass over paths where other servers leak secrets or expose admin panels.
probes=(/.env /.env.production /wp-admin/ /wp-login.php /.git/config /.git/HEAD /phpmyadmin/ /.aws/credentials
        /config.json /backup.zip /server-status /.DS_Store /xmlrpc.php /actuator/env /.htpasswd /db.sql)
echo "scanner: ${#probes[@]} probe paths (${probes[*]:0:4} ...)"
for path in "${probes[@]}"; do curl -s -o /dev/null "$gw$path"; done

echo "waiting for the advisor's traffic.scanner finding at $admin/admin/advice (runs every minute) ..."
deadline=$((SECONDS + wait_for))
while [ $SECONDS -lt $deadline ]; do
  answer=$(curl -s "$admin/admin/advice?kind=traffic.scanner" || true)
  if grep -q '"kind": *"traffic.scanner"' <<<"$answer"; then
    title=$(grep -o '"title": *"[^"]*"' <<<"$answer" | head -1 | sed 's/"title": *//')
    echo "finding after $SECONDS s: traffic.scanner $title"
    echo "  curl $admin/admin/advice      # the finding with its evidence"
    echo "  open $admin/ui/advice          # the dashboard's advice page"
    exit 0
  fi
  sleep 5
done
echo "no traffic.scanner finding after $wait_for s (is the advisor on? curl $admin/admin/advice)" >&2
exit 1
