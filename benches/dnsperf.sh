#!/usr/bin/env bash
# benches/dnsperf.sh - splitdns against its peers in ONE run of the side-by-side harness in
# ../shared/bench, then the ratios the performance targets are written in.
#
#   benches/dnsperf.sh                    # ROUNDS=3 DURATION=10 (about 12 min)
#   ROUNDS=1 DURATION=5 benches/dnsperf.sh   # a quick look (about 4 min)
#   SOAK=600 benches/dnsperf.sh soak      # saturation soak: mixed local+forwarded load for SOAK
#                                         # seconds, RSS sampled every 10 s (issue: flat RSS)
#   benches/dnsperf.sh reload             # a 100,000-name mapping: RSS, and local-answer QPS while
#                                         # the mapping is rewritten (and reloaded) every second
#
# Needs (Debian): dnsperf knot dnsmasq dnsdist, python3. Everything listens on loopback only
# (ports 15353-15370) and every load loop is bounded in time by the harness (dnsperf -l).
#
# The daemon is built the way the container image builds it (static, release profile) into
# target/static, because that is the binary whose RSS and cost we ship. The harness directory is
# copied to a scratch directory first: it writes its state next to itself, and ../shared may be
# read-only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
HARNESS_SRC="${HARNESS_SRC:-$REPO/../shared/bench}"
WORK="${WORK:-$REPO/target/bench-harness}"
MODE="${1:-ratios}"

[[ -d "$HARNESS_SRC" ]] || { echo "no harness at $HARNESS_SRC" >&2; exit 2; }
for tool in dnsperf knotd dnsmasq dnsdist python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf knot dnsmasq dnsdist)" >&2; exit 2; }
done

echo "== building the static release binary (as the image does)"
RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" CARGO_TARGET_DIR="$REPO/target/static" \
  cargo build --release --locked --target x86_64-unknown-linux-gnu
BIN="$REPO/target/static/x86_64-unknown-linux-gnu/release/splitdns"

mkdir -p "$WORK"
rm -rf "$WORK/bench"
cp -r "$HARNESS_SRC" "$WORK/bench"
cd "$WORK/bench"
export SPLITDNS_BIN="$BIN"

cleanup() { ./peers.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

if [[ "$MODE" == soak ]]; then
  SOAK="${SOAK:-600}"
  ./peers.sh start upstream splitdns
  ./peers.sh check
  pid=$(awk 'NR==1{print $1}' run/splitdns.pid)
  # A mixed query file: the 300 mapped names and forwarded names, interleaved.
  paste -d '\n' data/local.txt <(head -n "$(wc -l < data/local.txt)" data/forward.txt) > data/mixed.txt
  echo "== soak: ${SOAK}s of saturation load, RSS every 10 s (pid $pid)"
  ( timeout $((SOAK + 30)) taskset -c 0 dnsperf -s 127.0.0.1 -p 15370 -d data/mixed.txt -l "$SOAK" -c 4 -q 100 -T 1 -t 2 > "$WORK/soak-dnsperf.txt" 2>&1 ) &
  load=$!
  for ((t = 0; t <= SOAK; t += 10)); do
    kill -0 "$pid" 2>/dev/null || { echo "splitdns died during the soak" >&2; exit 1; }
    printf '%4ds  RSS %s kB\n' "$t" "$(awk '/VmRSS/{print $2}' /proc/"$pid"/status)"
    sleep 10
  done
  wait "$load" || true
  grep -E "Queries (sent|completed|lost)|Queries per second|Response codes" "$WORK/soak-dnsperf.txt"
  kill -0 "$pid" && echo "splitdns alive after the soak"
  exit 0
fi

if [[ "$MODE" == reload ]]; then
  N=100000
  ./peers.sh gen >/dev/null
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
  SPLITDNS_MAPPING="$PWD/data/big.yaml" ./peers.sh start upstream splitdns
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

./peers.sh start upstream limit limit-relay dnsmasq dnsdist splitdns
./peers.sh check
OUT="$WORK/results"
rm -rf "$OUT"
OUT="$OUT" ./run.sh limit limit-relay dnsmasq dnsdist splitdns | tail -n 40

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
lost = sum(r["lost"] for r in runs if r["target"] == "splitdns")
rows = [
    ("local: server-core us/q vs limit", med("splitdns","local","thr","core_us_q"), med("limit","local","thr","core_us_q"), "<= 1.15"),
    ("local: p99 @2k qps vs limit", med("splitdns","local","lat","p99"), med("limit","local","lat","p99"), "<= 1.2"),
    ("local: server-core us/q vs dnsmasq", med("splitdns","local","thr","core_us_q"), med("dnsmasq","local","thr","core_us_q"), "< 1"),
    ("fwdmiss: server-core us/q vs limit-relay", med("splitdns","fwdmiss","thr","core_us_q"), med("limit-relay","fwdmiss","thr","core_us_q"), "<= 1.1"),
    ("fwdmiss: QPS vs limit-relay", med("splitdns","fwdmiss","thr","qps"), med("limit-relay","fwdmiss","thr","qps"), ">= 0.9"),
    ("fwdmiss: p99 @2k qps vs dnsdist", med("splitdns","fwdmiss","lat","p99"), med("dnsdist","fwdmiss","lat","p99"), "<= 1"),
    ("fwdmiss: server-core us/q vs dnsdist", med("splitdns","fwdmiss","thr","core_us_q"), med("dnsdist","fwdmiss","thr","core_us_q"), "< 1"),
]
print("\n| measure | splitdns | peer | ratio | target |\n|---|---:|---:|---:|---|")
for name, a, b, target in rows:
    print(f"| {name} | {a:.4g} | {b:.4g} | {a / b:.2f}x | {target} |")
print(f"| RSS after the run (MiB) | {rss.get('splitdns', float('nan')):.1f} | limit-relay {rss.get('limit-relay', float('nan')):.1f}, dnsmasq {rss.get('dnsmasq', float('nan')):.1f} | | <= 4.5 |")
print(f"| queries lost by splitdns (all phases) | {lost} | | | 0 |")
EOF
