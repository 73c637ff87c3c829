#!/usr/bin/env bash
# Runs every Portcullis test. Installs what the tests need when it is missing (Debian/Ubuntu, as root
# or with sudo): the .NET SDK, and redis-server + redis-cli for the traffic-control tests (their fixtures
# start their own redis-server processes on free loopback ports, single node and cluster mode).
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
# The chaos subset (bench/chaos.sh) loads the gateway with wrk, fronts nginx as a backend, reads JSON with jq.
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v jq >/dev/null || need_apt+=(jq)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
# Browser-session tests drive Debian's Chromium (/usr/bin/chromium) headless through Playwright. Of its
# recommended packages headless use needs only a font (fonts-liberation); the rest (udev, upower, printing,
# notifications, Mesa drivers: about 130 packages with their dependencies) is for a desktop.
[ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-liberation)
if ((${#need_apt[@]})); then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  apt_log="${TMPDIR:-/tmp}/portcullis-test-apt.log"
  echo "test.sh: installing ${need_apt[*]} (apt output in $apt_log)" >&2
  if ! { $sudo_cmd apt-get update -qq && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"; } >"$apt_log" 2>&1; then
    echo "test.sh: apt-get failed; the last lines of $apt_log:" >&2
    tail -n 20 "$apt_log" >&2
    exit 1
  fi
fi

# Every test gateway watches its files (FileSystemWatcher = one inotify instance each); Linux allows 128
# per user by default. The gateway falls back to polling when refused, but give parallel tests room.
if [ "$(id -u)" -eq 0 ] && [ "$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)" -lt 1024 ]; then
  sysctl -qw fs.inotify.max_user_instances=1024 2>/dev/null || true
fi

if ! command -v dotnet >/dev/null; then
  echo "error: the .NET 10 SDK is required (https://dot.net)" >&2
  exit 1
fi

dotnet test Portcullis.sln -c Release --nologo "$@"

# The quick chaos subset (docs/reliability.md): reloads, a killed backend, SIGTERM, provider key changes and
# a shared Redis limit under CPU contention, against the published gateway (about 3 minutes). Skipped when
# arguments narrow the test run, or with PORTCULLIS_CHAOS=0.
if [ $# -eq 0 ] && [ "${PORTCULLIS_CHAOS:-1}" != 0 ]; then
  bench/chaos.sh --quick --scenario reload,backend-kill,sigterm,idp,redis
fi
