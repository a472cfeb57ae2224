#!/usr/bin/env bash
# benches/tcp_flood.sh - benches/tcp_flood.py in a network namespace of its own (nothing else
# shares its loopback or its ports), for each mode.
#
#   benches/tcp_flood.sh                         # modes local forward large bigreply
#   MODES="local" SPLITDNS_BIN=/tmp/old benches/tcp_flood.sh
#   EXTRA="--tcp-memory 8MiB" benches/tcp_flood.sh
#
# Needs root (ip netns), python3 and ss (iproute2). The namespace has only a loopback interface; it is removed at
# exit. Prints one JSON line per mode.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${SPLITDNS_BIN:-target/release/splitdns}"
MODES="${MODES:-local forward large bigreply}"
NS="tcpflood-$$"
cleanup() { ip netns delete "$NS" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
for mode in $MODES; do
    ip netns exec "$NS" timeout 400 python3 benches/tcp_flood.py --bin "$BIN" --mode "$mode" \
        --extra "${EXTRA:-}" "$@"
done
