#!/usr/bin/env bash
# Starts three echo upstreams and the gateway in front of them; Ctrl-C stops everything.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
echo "Building Portcullis into .build/portcullis (the first build takes a minute or two)..." >&2
dotnet build src/Portcullis.Cli -c Release -o .build/portcullis --nologo -v quiet -clp:ErrorsOnly
bin=.build/portcullis/portcullis

# This run's demo key file and dev CA (its private key included) live under the quickstart's data folder,
# not in the system temp folder, and are removed on exit.
run_dir="${QUICKSTART_DATA:-$root/examples/quickstart/data}/run.$$"
mkdir -p "$run_dir"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$run_dir"; }
trap cleanup EXIT INT TERM
echo "Starting three echo upstreams (ports ${ECHO_PORT_1:-5001}-${ECHO_PORT_3:-5003}) and the gateway..." >&2

"$bin" echo --port "${ECHO_PORT_1:-5001}" --name orders-v1-a >/dev/null & pids+=($!)
"$bin" echo --port "${ECHO_PORT_2:-5002}" --name orders-v1-b >/dev/null & pids+=($!)
"$bin" echo --port "${ECHO_PORT_3:-5003}" --name orders-v2 >/dev/null & pids+=($!)

# A demo API key in a temporary key file (the gateway reads it through QUICKSTART_KEYS).
export QUICKSTART_KEYS="$run_dir/keys.yaml"
demo_key=$("$bin" keys create --file "$QUICKSTART_KEYS" --consumer demo --group trial --scopes reports.read --expires 1d 2>/dev/null | sed -n 's/^key: //p')

# A development CA and server certificate for the TLS listener (the gateway reads them through QUICKSTART_CERTS).
export QUICKSTART_CERTS="$run_dir/certs"
"$bin" certs dev --out "$QUICKSTART_CERTS" --hosts localhost,127.0.0.1 >/dev/null

gw="http://127.0.0.1:${GATEWAY_PORT:-8080}"
gws="https://localhost:${GATEWAY_TLS_PORT:-8443}"
admin="http://127.0.0.1:${ADMIN_PORT:-9901}"
cat <<TRY
Try:
  curl $gw/orders/42                       # round robin over orders-v1-a / orders-v1-b
  curl -H 'Api-Version: 2' $gw/orders/42   # map file sends version 2 to orders-v2
  curl $gw/v2/orders/42                    # same, chosen by the path segment
  curl -H 'X-Api-Key: $demo_key' $gw/reports/1   # API key → consumer headers + signed assertion
  curl $gw/reports/1                       # 401 problem+json
  for i in \$(seq 15); do curl -s -o /dev/null -w '%{http_code} ' -H 'X-Api-Key: $demo_key' $gw/reports/1 & done; wait   # 15 at once: 429s after the burst of 10
  curl --cacert $QUICKSTART_CERTS/ca.pem $gws/orders/42   # TLS (HTTP/2 by ALPN) with the dev CA
  curl $admin/admin/certificates           # certificates and days to expiry
  curl $admin/admin/traffic                # rate limits, quotas, stores
  curl $admin/admin/clusters               # destinations and their health
  curl "$admin/admin/analytics/top?by=consumer"   # analytics (flushed every 5 s): who called what, p50/p99
  open $admin/ui/                          # the analytics dashboard (loopback admin listener: no sign-in)
  DEMO_KEY=$demo_key examples/quickstart/traffic.sh   # traffic + a scanner → a traffic.scanner finding in ~2 min:
  curl $admin/admin/advice                 # the advisor's findings (every minute), also on $admin/ui/advice
  edit examples/quickstart/versions.map    # takes effect without a restart
TRY
"$bin" run -c examples/quickstart/portcullis.yaml & pids+=($!)
wait "${pids[-1]}"
