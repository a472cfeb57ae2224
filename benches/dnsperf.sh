#!/usr/bin/env bash
# benches/dnsperf.sh - splitdns against its peers in ONE run of the side-by-side harness in
# benches/dnsperf/ (README.md there: what to install, what is measured), then the ratios the
# performance targets are written in.
#
#   benches/dnsperf.sh                    # ROUNDS=3 DURATION=10 (about 14 min)
#   ROUNDS=1 DURATION=5 benches/dnsperf.sh   # a quick look (about 5 min)
#   SOAK=600 benches/dnsperf.sh soak      # saturation soak: mixed local+forwarded load for SOAK
#                                         # seconds, RSS sampled every 10 s (issue: flat RSS)
#   benches/dnsperf.sh reload             # a 100,000-name mapping: RSS, and local-answer QPS while
#                                         # the mapping is rewritten (and reloaded) every second
#
# Needs (Debian): dnsperf knot dnsmasq dnsdist bind9-dnsutils, python3, and cargo with a C linker
# (gcc) for the limit responders. Everything listens on loopback only (ports 15353-15381) and
# every load loop is bounded in time by the harness (dnsperf -l).
#
# The daemon is built the way the container image builds it (static, release profile) into
# target/static, because that is the binary whose RSS and cost we ship (SPLITDNS_BIN=... skips
# the build and measures that binary instead). The harness writes its state (generated data,
# configs, logs, results) under STATE_DIR, default target/bench-harness.
#
# Two splitdns instances run: `splitdns` with the plain 300-name mapping (the local and forward
# ratios, as before) and `splitdns-alias` with the same mapping plus the alias rule
# pod-(\d+).db.example.com -> host-${1}.example.net, whose `local` and `alias` workloads give the
# cost of a cached alias answer against a local answer in one process.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
H="$REPO/benches/dnsperf"
export STATE_DIR="${STATE_DIR:-${WORK:-$REPO/target/bench-harness}}"
MODE="${1:-ratios}"

for tool in dnsperf knotd dnsmasq dnsdist dig python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf knot dnsmasq dnsdist bind9-dnsutils; see benches/dnsperf/README.md)" >&2; exit 2; }
done

if [[ -z "${SPLITDNS_BIN:-}" ]]; then
  echo "== building the static release binary (as the image does)"
  RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" CARGO_TARGET_DIR="$REPO/target/static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu
  SPLITDNS_BIN="$REPO/target/static/x86_64-unknown-linux-gnu/release/splitdns"
fi
export SPLITDNS_BIN="$(realpath "$SPLITDNS_BIN")"

mkdir -p "$STATE_DIR"
# shellcheck source=dnsperf/common.sh
source "$H/common.sh"
cd "$STATE_DIR"
peers() { "$H/peers.sh" "$@"; }

cleanup() { peers stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

if [[ "$MODE" == soak ]]; then
  SOAK="${SOAK:-600}"
  peers start upstream splitdns
  peers check
  pid=$(awk 'NR==1{print $1}' run/splitdns.pid)
  # A mixed query file: the 300 mapped names and forwarded names, interleaved.
  paste -d '\n' data/local.txt <(head -n "$(wc -l < data/local.txt)" data/forward.txt) > data/mixed.txt
  echo "== soak: ${SOAK}s of saturation load, RSS every 10 s (pid $pid)"
  ( timeout $((SOAK + 30)) taskset -c 0 dnsperf -s 127.0.0.1 -p 15370 -d data/mixed.txt -l "$SOAK" -c 4 -q 100 -T 1 -t 2 > "$STATE_DIR/soak-dnsperf.txt" 2>&1 ) &
  load=$!
  for ((t = 0; t <= SOAK; t += 10)); do
    kill -0 "$pid" 2>/dev/null || { echo "splitdns died during the soak" >&2; exit 1; }
    printf '%4ds  RSS %s kB\n' "$t" "$(awk '/VmRSS/{print $2}' /proc/"$pid"/status)"
    sleep 10
  done
  wait "$load" || true
  grep -E "Queries (sent|completed|lost)|Queries per second|Response codes" "$STATE_DIR/soak-dnsperf.txt"
  kill -0 "$pid" && echo "splitdns alive after the soak"
  exit 0
fi

if [[ "$MODE" == reload ]]; then
  N=100000
  peers gen >/dev/null
  python3 - "$N" <<'PY'
import sys
n = int(sys.argv[1])
for variant, path in ((0, "data/big-a.yaml"), (1, "data/big-b.yaml")):
    with open(path, "w") as f:
        f.write("ttl: 5\nhosts:\n")
        for i in range(n):
            f.write(f"  kurrentdb-{i}.big.example.com: 10.{variant}.{(i >> 8) & 255}.{i & 255}\n")
with open("data/big-local.txt", "w") as f:
    for i in range(0, n, 97):
        f.write(f"kurrentdb-{i}.big.example.com A\n")
PY
  cp data/big-a.yaml data/big.yaml
  SPLITDNS_MAPPING="$PWD/data/big.yaml" peers start upstream splitdns
  pid=$(awk 'NR==1{print $1}' run/splitdns.pid)
  echo "== 100,000 names loaded: RSS $(awk '/VmRSS/{print $2}' /proc/"$pid"/status) kB"
  run_load() { timeout 40 taskset -c 0 dnsperf -s 127.0.0.1 -p 15370 -d data/big-local.txt -l 10 -c 4 -q 100 -T 1 -t 2 2>&1 | grep -E "Queries per second|Queries lost"; }
  echo "== 10 s of local answers, mapping untouched"
  run_load
  echo "== 10 s of local answers, mapping rewritten (a then b then a ...) every second"
  ( for i in $(seq 1 10); do sleep 1; if (( i % 2 )); then cp data/big-b.yaml data/big.yaml.tmp; else cp data/big-a.yaml data/big.yaml.tmp; fi; mv data/big.yaml.tmp data/big.yaml; done ) &
  run_load
  wait
  grep -c "mapping reloaded" logs/splitdns.log | sed 's/^/reloads logged: /'
  grep "mapping reloaded" logs/splitdns.log | tail -2
  echo "== RSS after: $(awk '/VmRSS/{print $2}' /proc/"$pid"/status) kB"
  exit 0
fi

peers gen >/dev/null
peers start upstream limit limit-relay dnsmasq dnsdist splitdns splitdns-alias
peers check
OUT="$STATE_DIR/results"
rm -rf "$OUT"
OUT="$OUT" "$H/run.sh" limit limit-relay dnsmasq dnsdist splitdns splitdns-alias | tail -n 40
# What the alias target cache did over the whole run (hits, misses, background refreshes).
python3 - "$SPLITDNS_ALIAS_ADMIN_PORT" > "$OUT/alias-metrics.txt" <<'PY' || true
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print("\n".join(l for l in body.splitlines() if l.startswith("splitdns_alias")))
PY

python3 - "$OUT" <<'EOF'
import json, sys, statistics
d = sys.argv[1]
runs = [json.loads(l) for l in open(f"{d}/runs.jsonl") if l.strip()]
def med(target, workload, phase, key):
    v = [r[key] for r in runs if r["target"] == target and r["workload"] == workload
         and r["phase"] == phase and r.get(key) is not None]
    return statistics.median(v) if v else float("nan")
rss = {}
for line in open(f"{d}/rss.tsv").read().splitlines()[1:]:
    t, _pid, kb, _hwm = line.split("\t")
    rss[t] = int(kb) / 1024 if kb.isdigit() else float("nan")
lost = sum(r["lost"] for r in runs if r["target"] in ("splitdns", "splitdns-alias"))
rows = [
    ("local: server-core us/q vs limit", med("splitdns","local","thr","core_us_q"), med("limit","local","thr","core_us_q"), "<= 1.15"),
    ("local: p99 @2k qps vs limit", med("splitdns","local","lat","p99"), med("limit","local","lat","p99"), "<= 1.2"),
    ("local: server-core us/q vs dnsmasq", med("splitdns","local","thr","core_us_q"), med("dnsmasq","local","thr","core_us_q"), "< 1"),
    ("fwdmiss: server-core us/q vs limit-relay", med("splitdns","fwdmiss","thr","core_us_q"), med("limit-relay","fwdmiss","thr","core_us_q"), "<= 1.1"),
    ("fwdmiss: QPS vs limit-relay", med("splitdns","fwdmiss","thr","qps"), med("limit-relay","fwdmiss","thr","qps"), ">= 0.9"),
    ("fwdmiss: p99 @2k qps vs dnsdist", med("splitdns","fwdmiss","lat","p99"), med("dnsdist","fwdmiss","lat","p99"), "<= 1"),
    ("fwdmiss: server-core us/q vs dnsdist", med("splitdns","fwdmiss","thr","core_us_q"), med("dnsdist","fwdmiss","thr","core_us_q"), "< 1"),
    # splitdns-alias: the same binary with the alias rule; both sides of each ratio from it.
    ("alias (cached): server-core us/q vs local", med("splitdns-alias","alias","thr","core_us_q"), med("splitdns-alias","local","thr","core_us_q"), "<= 1.5"),
    ("alias (cached): p50 @2k qps vs local", med("splitdns-alias","alias","lat","p50"), med("splitdns-alias","local","lat","p50"), "<= 1.5"),
    ("alias (cached): p99 @2k qps vs local", med("splitdns-alias","alias","lat","p99"), med("splitdns-alias","local","lat","p99"), ""),
    ("alias (cached): QPS vs local", med("splitdns-alias","alias","thr","qps"), med("splitdns-alias","local","thr","qps"), ""),
    ("alias (cached): server-core us/q vs limit (local)", med("splitdns-alias","alias","thr","core_us_q"), med("limit","local","thr","core_us_q"), ""),
    ("local with the rule loaded: server-core us/q vs without", med("splitdns-alias","local","thr","core_us_q"), med("splitdns","local","thr","core_us_q"), ""),
]
print("\n| measure | splitdns | peer | ratio | target |\n|---|---:|---:|---:|---|")
for name, a, b, target in rows:
    print(f"| {name} | {a:.4g} | {b:.4g} | {a / b:.2f}x | {target} |")
print(f"| RSS after the run (MiB) | {rss.get('splitdns', float('nan')):.1f} | limit-relay {rss.get('limit-relay', float('nan')):.1f}, dnsmasq {rss.get('dnsmasq', float('nan')):.1f} | | <= 4.5 |")
print(f"| queries lost by splitdns and splitdns-alias (all phases) | {lost} | | | 0 |")
try:
    m = dict(l.rsplit(None, 1) for l in open(f"{d}/alias-metrics.txt") if l.strip() and not l.startswith("#"))
    hits = sum(float(v) for k, v in m.items() if k.startswith("splitdns_alias_cache_hits"))
    miss = sum(float(v) for k, v in m.items() if k.startswith("splitdns_alias_cache_misses"))
    refr = sum(float(v) for k, v in m.items() if k.startswith("splitdns_alias_cache_refreshes"))
    print(f"\nsplitdns-alias cache over the run: {hits:.0f} hits, {miss:.0f} misses, {refr:.0f} background refreshes "
          f"({100 * hits / max(hits + miss, 1):.3f} % answered from memory)")
except (OSError, ValueError):
    pass
EOF
