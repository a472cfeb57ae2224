#!/usr/bin/env bash
# benches/operator/compare.sh - the operator's DNS sidecar (kurrent-io/dns-sidecar, "the
# incumbent") and splitdns side by side, same operator JSON rules, one run (issue 17). The rows
# and how each is measured: benches/operator/compare.py; what to install: README.md beside it.
#
#   INCUMBENT=/path/to/dns benches/operator/compare.sh      # both columns
#   benches/operator/compare.sh                              # splitdns only
#
# Environment (defaults):
#   INCUMBENT=            the incumbent's binary (built outside this repository, see README.md);
#                         unset or empty: its column is skipped
#   SPLITDNS=${CARGO_TARGET_DIR:-target}/release/splitdns   (not built here; "none": skipped)
#   SPLITDNS_FORMAT=json  json: `splitdns PATH-TO-JSON`; yaml: the same rules as a YAML mapping
#   POD_RESOLV=1          (root) daemons see a pod-shaped /etc/resolv.conf in a private mount namespace
#   PORT53=1              (root) everything on port 53 of 127.0.0.21/.22/.53 when free; enables the
#                         glibc client rows (a resolv.conf has no port numbers)
#   LAT_N=500 LAT_ROUNDS=5  queries per latency round, rounds (median round shown)
#   OUTAGE_WAIT=120       how long a client waits for an answer while the upstream is down
#   TIMEOUT=900           the whole run, seconds
#   OUT=target/operator/compare-<timestamp>.md   the report (also printed)
#
# Loopback only; every wait is bounded; only processes started by the run are signalled (by PID).
# A full run takes 2-4 minutes (the incumbent needs 80 s to give up on a silent upstream).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

missing=()
for tool in knotd knotc python3 timeout; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "missing: ${missing[*]} (Debian: apt-get install -y knot python3 coreutils)" >&2
    exit 1
fi
if ! python3 -c 'import dns.message, dns.edns' 2>/dev/null; then
    echo "missing the Python package dnspython (pip install dnspython)" >&2
    exit 1
fi
SPLITDNS="${SPLITDNS:-${CARGO_TARGET_DIR:-target}/release/splitdns}"
if [ "$SPLITDNS" != none ] && [ ! -x "$SPLITDNS" ]; then
    echo "no splitdns binary at $SPLITDNS: cargo build --release first, or SPLITDNS=none" >&2
    exit 1
fi
if [ -n "${INCUMBENT:-}" ] && [ ! -x "$INCUMBENT" ]; then
    echo "INCUMBENT=$INCUMBENT is not an executable" >&2
    exit 1
fi
mkdir -p target/operator
export SPLITDNS INCUMBENT="${INCUMBENT:-}" PYTHONDONTWRITEBYTECODE=1
export OUT="${OUT:-target/operator/compare-$(date +%Y%m%d-%H%M%S).md}"
timeout --kill-after=15 "${TIMEOUT:-900}" python3 benches/operator/compare.py
echo "report: $OUT" >&2
