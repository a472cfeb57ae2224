#!/usr/bin/env bash
# benches/security/perf.sh - the forward path's cost of the anti-spoofing relay (issue 19): dnsperf
# ratio of splitdns to the `limit-relay` floor, this tree against the commit before the port pool,
# in alternating runs (old, new, new, old, ...) with the floor measured in every run.
#
#   sudo benches/security/perf.sh              # ALTERNATIONS=4 pairs, fwdmiss, 10 s each (about 12 min)
#   ALTERNATIONS=6 WORKLOADS="fwdmiss forward" benches/security/perf.sh
#   OLD_BIN=/path/old NEW_BIN=/path/new benches/security/perf.sh     # skip the builds
#
# The harness (benches/dnsperf, or HARNESS_SRC) is copied to target/security-perf and run in a
# network namespace of its own (its own loopback: its ports 15353-15370 cannot collide with
# another harness run on the machine). Both binaries are built as the image builds them (static,
# release), as benches/dnsperf.sh does. OLD is the parent of the commit "Relay against off-path
# spoofing" (OLD_REV to choose another). Needs root, dnsperf, knot, python3, cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO="$PWD"
HARNESS_SRC="${HARNESS_SRC:-$REPO/benches/dnsperf}"
WORK="$REPO/target/security-perf"
ALTERNATIONS="${ALTERNATIONS:-4}"
WORKLOADS="${WORKLOADS:-fwdmiss}"
DURATION="${DURATION:-10}"
MAX_LOAD="${MAX_LOAD:-0.7}"
NS=sdsec-perf

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 2; }
[[ $EUID -eq 0 ]] || die "needs root (a network namespace for the harness)"
for t in dnsperf knotd python3 cargo taskset; do command -v "$t" >/dev/null || die "missing $t (apt-get install dnsperf knot)"; done
[[ -d "$HARNESS_SRC" ]] || die "no harness at $HARNESS_SRC"
mkdir -p "$WORK"

static_build() { # SRC_DIR TARGET_DIR -> prints the binary
  (cd "$1" && RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" CARGO_TARGET_DIR="$2" \
    nice cargo build --release --locked --target x86_64-unknown-linux-gnu >&2)
  echo "$2/x86_64-unknown-linux-gnu/release/splitdns"
}
if [[ -z "${OLD_BIN:-}" ]]; then
  OLD_REV="${OLD_REV:-$(git log --format=%H --grep='^Relay against off-path spoofing' -n1)^}"
  OLD_REV="$(git rev-parse --short "$OLD_REV")"
  log "building $OLD_REV (before the port pool)"
  rm -rf "$WORK/old-src" && mkdir -p "$WORK/old-src"
  git archive "$OLD_REV" | tar -x -C "$WORK/old-src"
  find "$WORK/old-src" -type f -exec touch {} + # archive mtimes are old: cargo must not trust them
  OLD_BIN="$(static_build "$WORK/old-src" "$WORK/old-target")"
fi
if [[ -z "${NEW_BIN:-}" ]]; then
  log "building this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ', modified'))"
  NEW_BIN="$(static_build "$REPO" "$REPO/target/static")"
fi
OLD_REV="${OLD_REV:-given}"

rm -rf "$WORK/bench" && cp -r "$HARNESS_SRC" "$WORK/bench" && chmod -R u+w "$WORK/bench"
export LIMIT_BIN="$WORK/limit-target/release/dns-limit"
(cd "$WORK/bench/limit" && CARGO_TARGET_DIR="$WORK/limit-target" cargo build --release --quiet)
touch "$LIMIT_BIN"

ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
cleanup() {
  set +e
  (cd "$WORK/bench" && ip netns exec "$NS" ./peers.sh stop >/dev/null 2>&1)
  local pid
  for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT
cd "$WORK/bench"
H() { ip netns exec "$NS" "$@"; }
H ./peers.sh start upstream limit-relay >&2

quiet() { # wait (at most 10 min) for the 1-minute load to drop under MAX_LOAD
  local i l
  for ((i = 0; i < 60; i++)); do
    l=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$l" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }' && return 0
    ((i == 0)) && log "load $l: waiting for it to drop under $MAX_LOAD"
    sleep 10
  done
  log "load still $(cut -d' ' -f1 /proc/loadavg): measuring anyway (marked)"
}

RES="$WORK/results-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RES"
: >"$RES/runs.tsv"
for ((i = 1; i <= ALTERNATIONS; i++)); do
  if ((i % 2)); then order="old new"; else order="new old"; fi
  for which in $order; do
    bin=$OLD_BIN
    [[ $which == new ]] && bin=$NEW_BIN
    H ./peers.sh stop splitdns >/dev/null 2>&1 || true
    SPLITDNS_BIN="$bin" H ./peers.sh start splitdns >&2
    quiet
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    out="$RES/$i-$which"
    log "run $i $which (load $load)"
    ROUNDS=1 DURATION="$DURATION" LAT_DURATION=0 WORKLOADS="$WORKLOADS" OUT="$out" \
      H ./run.sh limit-relay splitdns >"$out.log" 2>&1 || { tail "$out.log" >&2; die "run.sh failed"; }
    printf '%s\t%s\t%s\t%s\n' "$i" "$which" "$out" "$load" >>"$RES/runs.tsv"
  done
done

python3 - "$RES" "$OLD_REV" "$WORKLOADS" <<'EOF'
import json, statistics, sys
res, old_rev, workloads = sys.argv[1], sys.argv[2], sys.argv[3].split()
rows = [l.rstrip("\n").split("\t") for l in open(f"{res}/runs.tsv")]
def get(d, target, wl, key):
    for l in open(f"{d}/runs.jsonl"):
        r = json.loads(l)
        if r["target"] == target and r["workload"] == wl and r["phase"] == "thr":
            return r[key]
    return float("nan")
print(f"\n### Forward path vs the `limit-relay` floor: {old_rev} (before the port pool) and this tree, alternating\n")
for wl in workloads:
    print(f"`{wl}`, one dnsperf run of each per line (10 s, -c 4 -q 100), the floor measured in the same run:\n")
    print("| run | build | load | splitdns QPS | limit-relay QPS | QPS ratio | splitdns core us/q | limit-relay core us/q | core ratio |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    ratios = {"old": [], "new": []}
    core = {"old": [], "new": []}
    for i, which, d, load in rows:
        s, f = get(d, "splitdns", wl, "qps"), get(d, "limit-relay", wl, "qps")
        sc, fc = get(d, "splitdns", wl, "core_us_q"), get(d, "limit-relay", wl, "core_us_q")
        ratios[which].append(s / f)
        core[which].append(sc / fc)
        print(f"| {i} | {which} | {load} | {s:,.0f} | {f:,.0f} | {s / f:.3f} | {sc:.2f} | {fc:.2f} | {sc / fc:.3f} |")
    mo, mn = statistics.median(ratios["old"]), statistics.median(ratios["new"])
    co, cn = statistics.median(core["old"]), statistics.median(core["new"])
    print(f"\nMedians: QPS ratio old {mo:.3f}, new {mn:.3f} (**{100 * (mn / mo - 1):+.1f} %**); "
          f"server-core time ratio old {co:.3f}, new {cn:.3f} (**{100 * (cn / co - 1):+.1f} %**, lower is better). "
          f"Target: the ratio no worse than 3 %.\n")
EOF
