#!/usr/bin/env bash
# benches/faults.sh - what a client sees through the sidecar when the path to the upstream is bad
# (issue 10): splitdns against dnsmasq and unbound in the sidecar position, under packet loss, an
# upstream restart, a black hole and a dead first upstream; and the same faults for splitdns's
# alias-rule lookups, plus how fresh a cached alias target stays (issue 18).
#
#   benches/faults.sh                                  # every fault, every peer (about 13 min)
#   DURATION=8 benches/faults.sh                       # a quick look (about 6 min)
#   PEERS=splitdns FAULTS="loss5 restart" benches/faults.sh
#   PEERS=splitdns-alias benches/faults.sh             # alias-rule lookups only (about 4 min)
#   SPLITDNS_BIN=/tmp/splitdns-old SPLITDNS_EXTRA_ARGS="--upstream-timeout 1s" benches/faults.sh
#
# What to install and what each figure means: benches/faults/README.md; figures: RESULTS.md there.
#
# Topology (two network namespaces made here, removed at exit; nothing else is touched):
#
#   sdfz-cli: lo 127.0.0.1 (sidecar on :53, clients)    sdfz-up: knotd on 10.99.0.2:53, 10.99.0.6:53
#             fzc0 10.99.0.1/30  <------ veth ------>  fzu0 10.99.0.2/30   (upstream 1)
#             fzc1 10.99.0.5/30  <------ veth ------>  fzu1 10.99.0.6/30   (upstream 2, "twoup")
#
# The namespaces have no default route: no packet can leave them. knotd serves example.net (A and
# AAAA on *.any, A only on *.v4, so every query can use a name never asked before; host-N for the
# alias rule, TTL ALIAS_TTL, AAAA only for even N) and a tiny root zone (so health probes of ". NS"
# get an answer).
#
# Faults (the kernel has no netem; all are iptables rules in the raw table of the namespaces,
# on the receiving side of each direction: fzu0 for queries, fzc0 for replies):
#   none       no fault (baseline)
#   loss1/5/20 random loss, 1 / 5 / 20 % per direction (-m statistic --mode random)
#   restart    knotd really stopped at 3 s and started again 3 s later (the sidecar sees what a
#              real restart gives: ICMP port unreachable, rate-limited by the upstream's kernel)
#   blackhole  every packet dropped from 3 s to 13 s, then back
#   twoup      the sidecar is given both upstreams; the first is black-holed from 2 s to the end
#   freshness  (splitdns-alias only) no fault: FRESH_NAMES alias names asked FRESH_RATE times a
#              second each for FRESH_DURATION s while their targets' address changes in knot every
#              FRESH_EVERY s (benches/faults/freshness.py): when the new address is served, and
#              how many upstream queries a hot name costs per cache life
#
# Peers: splitdns (forwarded names: the relay), splitdns-alias (the same binary with the rule
# pod-(\d+).db.example.com -> host-${1}.example.net; its "forwarded" stream asks a name of that
# rule instead, each N once, so every query is a cache miss: an alias target lookup through the
# upstream under the fault; plus HOT_RATE queries/s for HOT_NAMES alias names asked again and
# again, answered from the cache, or stale (TTL 30) while the upstream is unreachable), dnsmasq,
# unbound (no alias rules: relay only).
# During each fault, the paced UDP client (benches/faults/client.py, RATE forwarded queries/s, each
# its own socket, random ID, unique name, 2 s timeout, no retry) also asks the mapped names
# (MAPPED_RATE/s), and glibc getaddrinfo (benches/faults/glibc.py, GLIBC_RATE lookups/s,
# resolv.conf = the sidecar only, default options timeout:5 attempts:2) runs beside it.
#
# Knobs (environment):
#   SPLITDNS_BIN        default target/release/splitdns (not built here)
#   SPLITDNS_EXTRA_ARGS extra arguments for splitdns
#   DNSMASQ_EXTRA_ARGS, UNBOUND_EXTRA_CONF (lines added to unbound's server: clause)
#   PEERS               default "splitdns splitdns-alias dnsmasq unbound"
#   FAULTS              default "none loss1 loss5 loss20 restart blackhole twoup freshness"
#   DURATION            seconds of load per fault and peer, default 20 (blackhole: at least 23,
#                       restart: at least 12)
#   RATE                forwarded queries per second, default 50
#   MAPPED_RATE         mapped-name queries per second, default 10
#   GLIBC_RATE          getaddrinfo lookups per second, default 5 (0: off)
#   GLIBC_FAULTS        faults during which glibc runs, default: all
#   ALIAS_TTL           TTL of the alias targets host-N in knot, default 5 (CoreDNS's pod TTL)
#   HOT_NAMES HOT_RATE  splitdns-alias: cached alias names and their queries/s, default 4 and 5
#   FRESH_NAMES FRESH_RATE FRESH_DURATION FRESH_EVERY FRESH_TTL
#                       freshness: names (4), queries/s per name (10), seconds (45), seconds
#                       between changes (5.3: not a multiple of the refresh period, so the changes
#                       fall at every point of a cache entry's life), the targets' TTL in knot (30:
#                       longer than the cap, as a headless service's records may be)
#   ALIAS_CACHE_TTL     the cap the freshness figures are judged against (--alias-cache-ttl, 5)
#   RATE, MAPPED_RATE, GLIBC_RATE, HOT_RATE and DURATION are whole numbers
#   ICMP_RATELIMIT      net.ipv4.icmp_ratelimit in the upstream namespace (ms), default: kernel's
#   OUT                 result directory, default target/faults/<timestamp>
#   INSTALL=1           apt-get install the missing Debian packages instead of failing
#
# Output: one Markdown table per fault (rows splitdns / dnsmasq / unbound), printed and written
# to $OUT/summary.md, with the raw per-query records (raw/*.jsonl) and every daemon's log beside.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
HERE="$REPO/benches/faults"

PEERS="${PEERS:-splitdns splitdns-alias dnsmasq unbound}"
FAULTS="${FAULTS:-none loss1 loss5 loss20 restart blackhole twoup freshness}"
DURATION="${DURATION:-20}"
RATE="${RATE:-50}"
MAPPED_RATE="${MAPPED_RATE:-10}"
GLIBC_RATE="${GLIBC_RATE:-5}"
GLIBC_FAULTS="${GLIBC_FAULTS:-$FAULTS}"
ALIAS_TTL="${ALIAS_TTL:-5}"
HOT_NAMES="${HOT_NAMES:-4}"
HOT_RATE="${HOT_RATE:-5}"
FRESH_NAMES="${FRESH_NAMES:-4}"
FRESH_RATE="${FRESH_RATE:-10}"
FRESH_DURATION="${FRESH_DURATION:-45}"
FRESH_EVERY="${FRESH_EVERY:-5.3}"
FRESH_TTL="${FRESH_TTL:-30}"
ALIAS_CACHE_TTL="${ALIAS_CACHE_TTL:-5}"
SPLITDNS_BIN="${SPLITDNS_BIN:-target/release/splitdns}"
SPLITDNS_EXTRA_ARGS="${SPLITDNS_EXTRA_ARGS:-}"
DNSMASQ_EXTRA_ARGS="${DNSMASQ_EXTRA_ARGS:-}"
UNBOUND_EXTRA_CONF="${UNBOUND_EXTRA_CONF:-}"
ICMP_RATELIMIT="${ICMP_RATELIMIT:-}"
OUT="${OUT:-$REPO/target/faults/$(date +%Y%m%d-%H%M%S)}"

NS_C=sdfz-cli
NS_U=sdfz-up
C0=10.99.0.1 U0=10.99.0.2 C1=10.99.0.5 U1=10.99.0.6
ZONE=example.net
MAPPED="db-0.svc.fz.test/A,db-1.svc.fz.test/A,db-1.svc.fz.test/AAAA,db-2.svc.fz.test/A"
ALIAS_TEMPLATE="pod-{n}.db.example.com" # the rule's names; its target is host-N.example.net
# Which N each stream uses (each N of the unique streams asked once per run): the paced client
# n = 2*seq (+1), seq counting every query it sends; glibc from GLIBC_BASE; then the hot names,
# the freshness names and the probe name. knot gets a host-N for every one of them.
DMAX=$(( DURATION > 23 ? DURATION : 23 ))
GLIBC_BASE=$(( 2 * (RATE + MAPPED_RATE + HOT_RATE) * (DMAX + 2) + 2 ))
HOT_BASE=$(( GLIBC_BASE + 2 * GLIBC_RATE * (DMAX + 2) + 2 ))
FRESH_BASE=$(( HOT_BASE + HOT_NAMES ))
PROBE_N=$(( FRESH_BASE + FRESH_NAMES ))

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 2; }

# ------------------------------------------------------------------ checks ----
[[ $EUID -eq 0 ]] || die "needs root (network namespaces, iptables)"
declare -A PKG=([ip]=iproute2 [iptables]=iptables [knotd]=knot [knotc]=knot [dnsmasq]=dnsmasq [unbound]=unbound
                [python3]=python3 [nstat]=iproute2 [ss]=iproute2 [flock]=util-linux [timeout]=coreutils)
need=(ip iptables knotd python3 nstat ss flock timeout)
for p in $PEERS; do
  case $p in
    splitdns | splitdns-alias) ;;
    dnsmasq | unbound) need+=("$p") ;;
    *) die "unknown peer '$p' (PEERS: splitdns splitdns-alias dnsmasq unbound)" ;;
  esac
done
for f in $FAULTS; do
  case $f in none | loss1 | loss5 | loss20 | restart | blackhole | twoup | freshness) ;;
    *) die "unknown fault '$f' (FAULTS: none loss1 loss5 loss20 restart blackhole twoup freshness)" ;; esac
done
if [[ " $FAULTS " == *" freshness "* && " $PEERS " == *" splitdns-alias "* ]]; then need+=(knotc); fi
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing+=("${PKG[$t]}"); done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ "${INSTALL:-0}" == 1 ]]; then
    log "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >&2 ||
      { apt-get update >&2 && apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >&2; }
  else
    die "missing tools; install them with: apt-get install ${missing[*]}  (or run with INSTALL=1)"
  fi
fi
if [[ " $PEERS " == *" splitdns "* || " $PEERS " == *" splitdns-alias "* ]]; then
  [[ -x "$SPLITDNS_BIN" ]] || die "no splitdns binary at '$SPLITDNS_BIN' (cargo build --release, or set SPLITDNS_BIN)"
  SPLITDNS_BIN="$(realpath "$SPLITDNS_BIN")"
fi
ip netns list >/dev/null 2>&1 || die "'ip netns' does not work here (needs CAP_SYS_ADMIN)"
# The real interpreter, not a version-manager shim (it starts faster, and inside the namespaces).
PY="$(python3 -c 'import sys; print(sys.executable)')"

exec 9>/run/splitdns-faults.lock
flock -n 9 || die "another benches/faults.sh is running (lock /run/splitdns-faults.lock)"

renice -n 5 $$ >/dev/null 2>&1 || true # be gentle with a 2-core machine; children inherit it

mkdir -p "$OUT"/{conf,logs,pids,raw,run}
OUT="$(realpath "$OUT")"
PIDS="$OUT/pids"
log "results in $OUT"

nsc() { ip netns exec "$NS_C" "$@"; }
nsu() { ip netns exec "$NS_U" "$@"; }

# --------------------------------------------------------------- processes ----
# shellcheck source=benches/netns-procs.sh
source "$REPO/benches/netns-procs.sh"

ETC_NETNS_MADE=0
SLEEP_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e # clean up everything, whatever fails on the way
  [[ -n "$SLEEP_PID" ]] && kill "$SLEEP_PID" 2>/dev/null
  stop_all
  remove_ns "$NS_C"
  remove_ns "$NS_U"
  rm -f "/etc/netns/$NS_C/resolv.conf"
  rmdir "/etc/netns/$NS_C" 2>/dev/null || true
  ((ETC_NETNS_MADE)) && rmdir /etc/netns 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- topology ----
# Leftovers of an earlier run that was killed before its trap ran carry these same names.
remove_ns "$NS_C"
remove_ns "$NS_U"
ip netns add "$NS_C"
ip netns add "$NS_U"
ip link add fzc0 netns "$NS_C" type veth peer name fzu0 netns "$NS_U"
ip link add fzc1 netns "$NS_C" type veth peer name fzu1 netns "$NS_U"
for ns in "$NS_C" "$NS_U"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true
  ip -n "$ns" link set lo up
done
ip -n "$NS_C" addr add "$C0/30" dev fzc0
ip -n "$NS_C" addr add "$C1/30" dev fzc1
ip -n "$NS_U" addr add "$U0/30" dev fzu0
ip -n "$NS_U" addr add "$U1/30" dev fzu1
for i in fzc0 fzc1; do ip -n "$NS_C" link set "$i" up; done
for i in fzu0 fzu1; do ip -n "$NS_U" link set "$i" up; done
[[ -n "$ICMP_RATELIMIT" ]] && nsu sysctl -qw "net.ipv4.icmp_ratelimit=$ICMP_RATELIMIT"
log "namespaces $NS_C ($C0, $C1) and $NS_U ($U0, $U1) up; upstream icmp_ratelimit $(nsu sysctl -n net.ipv4.icmp_ratelimit) ms"

# glibc in the client namespace: `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf.
[[ -d /etc/netns ]] || { mkdir /etc/netns; ETC_NETNS_MADE=1; }
mkdir -p "/etc/netns/$NS_C"
printf 'nameserver 127.0.0.1\n' >"/etc/netns/$NS_C/resolv.conf"

# ---------------------------------------------------------------- upstream ----
mkdir -p "$OUT/run/knot/db"
cat >"$OUT/conf/example.net.zone" <<EOF
\$ORIGIN example.net.
\$TTL 300
@       SOA   ns.example.net. hostmaster.example.net. 1 3600 900 604800 60
@       NS    ns
ns      A     $U0
www     A     192.0.2.10
www     AAAA  2001:db8::10
*.any   A     192.0.2.1
*.any   AAAA  2001:db8::1
*.v4    A     192.0.2.2
EOF
# The alias rule's targets: host-N, A for every N, AAAA for even N (as *.any / *.v4 above).
awk -v n="$PROBE_N" -v ttl="$ALIAS_TTL" -v f0="$FRESH_BASE" -v f1="$PROBE_N" -v fttl="$FRESH_TTL" 'BEGIN {
    for (i = 0; i <= n; i++) {
      t = (i >= f0 && i < f1) ? fttl : ttl
      printf "host-%d %d A 198.18.%d.%d\n", i, t, int(i / 250) % 256, i % 250 + 1
      if (i % 2 == 0) printf "host-%d %d AAAA 2001:db8:a::%x\n", i, t, i
    }
  }' >>"$OUT/conf/example.net.zone"
cat >"$OUT/conf/root.zone" <<EOF
\$ORIGIN .
\$TTL 300
@            SOA  a.root.test. hostmaster.root.test. 1 3600 900 604800 60
@            NS   a.root.test.
a.root.test. A    $U0
EOF
cat >"$OUT/conf/knot.conf" <<EOF
server:
    rundir: "$OUT/run/knot"
    listen: [ $U0@53, $U1@53 ]
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$OUT/run/knot/knot.sock" # knotc: the freshness run changes records
log:
  - target: stderr
    any: info
database:
    storage: "$OUT/run/knot/db"
template:
  - id: default
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: example.net.
    file: "$OUT/conf/example.net.zone"
  - domain: .
    file: "$OUT/conf/root.zone"
EOF
knot_start() {
  spawn knotd "$OUT/logs/knotd.log" ip netns exec "$NS_U" knotd -c "$OUT/conf/knot.conf"
}
knot_ready() { # answering on both addresses (asked from inside its own namespace: no ICMP to the client side)
  nsu "$PY" "$HERE/client.py" probe --server "$U0:53" --name "www.$ZONE" --deadline "${1:-10}" &&
    nsu "$PY" "$HERE/client.py" probe --server "$U1:53" --name "www.$ZONE" --deadline "${1:-10}"
}
knot_alive() { [[ -f "$PIDS/knotd.pid" ]] && kill -0 "$(<"$PIDS/knotd.pid")" 2>/dev/null; }
knot_start
knot_ready 10 || die "knotd does not answer (see $OUT/logs/knotd.log)"
nsc "$PY" "$HERE/client.py" probe --server "$U0:53" --name "www.$ZONE" --deadline 5 ||
  die "the client namespace cannot reach knotd over the veth"
log "knotd up on $U0:53 and $U1:53"

# ----------------------------------------------------------------- sidecars ----
cat >"$OUT/conf/mapping.yaml" <<EOF
ttl: 5
hosts:
  db-0.svc.fz.test: 10.42.0.10
  db-1.svc.fz.test: [10.42.0.11, "fd00::11"]
  db-2.svc.fz.test: 10.42.0.12
EOF
{
  cat "$OUT/conf/mapping.yaml"
  cat <<'EOF'
rules:
  - host: 'pod-(\d+)\.db\.example\.com'
    regex: true
    result: 'host-${1}.example.net'
EOF
} >"$OUT/conf/mapping-alias.yaml"
cat >"$OUT/conf/hosts" <<EOF
10.42.0.10 db-0.svc.fz.test
10.42.0.11 db-1.svc.fz.test
fd00::11   db-1.svc.fz.test
10.42.0.12 db-2.svc.fz.test
EOF

peer_start() { # PEER NUPSTREAMS TAG
  local peer=$1 n=$2 tag=$3 logf="$OUT/logs/$3.log"
  case $peer in
    splitdns | splitdns-alias)
      local ups=(--upstream "$U0:53") map="$OUT/conf/mapping.yaml"
      ((n == 2)) && ups+=(--upstream "$U1:53")
      [[ $peer == splitdns-alias ]] && map="$OUT/conf/mapping-alias.yaml"
      # shellcheck disable=SC2086
      spawn peer "$logf" ip netns exec "$NS_C" "$SPLITDNS_BIN" --listen 127.0.0.1:53 \
        --mapping "$map" "${ups[@]}" --admin off $SPLITDNS_EXTRA_ARGS
      ;;
    dnsmasq)
      local ups=(--server="$U0")
      ((n == 2)) && ups+=(--server="$U1")
      # shellcheck disable=SC2086
      spawn peer "$logf" ip netns exec "$NS_C" dnsmasq --keep-in-foreground --conf-file=/dev/null \
        --no-resolv --no-hosts --addn-hosts="$OUT/conf/hosts" "${ups[@]}" --cache-size=0 \
        --listen-address=127.0.0.1 --bind-interfaces --port=53 --user=root --pid-file= \
        --log-facility=- $DNSMASQ_EXTRA_ARGS
      ;;
    unbound)
      mkdir -p "$OUT/run/unbound"
      {
        cat <<EOF
server:
    interface: 127.0.0.1
    port: 53
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$OUT/run/unbound"
    pidfile: "$OUT/run/unbound/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    do-ip6: no
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    local-data: "db-0.svc.fz.test. 5 IN A 10.42.0.10"
    local-data: "db-1.svc.fz.test. 5 IN A 10.42.0.11"
    local-data: "db-1.svc.fz.test. 5 IN AAAA fd00::11"
    local-data: "db-2.svc.fz.test. 5 IN A 10.42.0.12"
$UNBOUND_EXTRA_CONF
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: $U0
EOF
        ((n == 2)) && echo "    forward-addr: $U1"
      } >"$OUT/conf/unbound-$tag.conf"
      spawn peer "$logf" ip netns exec "$NS_C" unbound -d -c "$OUT/conf/unbound-$tag.conf"
      ;;
  esac
  local i
  for i in 1 2; do
    if nsc "$PY" "$HERE/client.py" probe --server 127.0.0.1:53 --name "www.$ZONE" --deadline 10 &&
      nsc "$PY" "$HERE/client.py" probe --server 127.0.0.1:53 --name db-0.svc.fz.test --deadline 5 &&
      { [[ $peer != splitdns-alias ]] ||
        nsc "$PY" "$HERE/client.py" probe --server 127.0.0.1:53 --name "pod-$PROBE_N.db.example.com" --deadline 5; }; then
      return 0
    fi
    kill -0 "$(<"$PIDS/peer.pid")" 2>/dev/null || break
  done
  log "$peer does not answer on 127.0.0.1:53; its log ($logf):"
  tail -n 20 "$logf" >&2
  return 1
}

# ------------------------------------------------------------------ faults ----
EVF=/dev/null
ev() { printf '%s %s\n' "$1" "$(date +%s.%N)" >>"$EVF"; }
rule() { # NS IFACE MATCH...: drop what arrives on IFACE (raw PREROUTING, before conntrack)
  local ns=$1 ifc=$2
  shift 2
  ip netns exec "$ns" iptables -w 5 -t raw -A PREROUTING -i "$ifc" "$@" -j DROP
}
loss_on() { # PROBABILITY
  rule "$NS_U" fzu0 -m statistic --mode random --probability "$1" # queries
  rule "$NS_C" fzc0 -m statistic --mode random --probability "$1" # replies
}
hole_on() { rule "$NS_U" fzu0; rule "$NS_C" fzc0; }
faults_off() {
  nsu iptables -w 5 -t raw -F PREROUTING
  nsc iptables -w 5 -t raw -F PREROUTING
}
sleep_until() { # OFFSET (seconds after $T0, wall clock)
  local d
  d=$(awk -v t0="$T0" -v o="$1" -v now="$(date +%s.%N)" 'BEGIN { d = t0 + o - now; print (d > 0 ? d : 0) }')
  sleep "$d" &
  SLEEP_PID=$!
  wait $SLEEP_PID # (a signal interrupts `wait`, not a foreground sleep: Ctrl-C cleans up at once)
}
snap_icmp() { # WHEN TAG
  { echo "# $NS_U"; nsu nstat -asz; echo "# $NS_C"; nsc nstat -asz; } >"$OUT/raw/$2.icmp-$1.txt" 2>&1 || true
}

# freshness (splitdns-alias): a steady load of the same alias names while their targets' address
# changes in knot; benches/faults/freshness.py does the load, the changes and the analysis, and
# runs its sniffer in the upstream's namespace (what reaches knot on fzu0).
run_freshness() { # PEER
  local peer=$1 tag="freshness-$1" names=() owners=() i
  for ((i = FRESH_BASE; i < FRESH_BASE + FRESH_NAMES; i++)); do
    names+=("pod-$i.db.example.com"); owners+=("host-$i")
  done
  faults_off
  knot_alive || { log "knotd had died; restarting it"; knot_start; knot_ready 10 || die "knotd does not come back"; }
  log "== freshness / $peer (${FRESH_DURATION}s, ${FRESH_NAMES} names at ${FRESH_RATE}/s each, a change every ${FRESH_EVERY}s)"
  if ! peer_start "$peer" 1 "$tag"; then
    stop peer
    printf '%s\t%s\tFAILED\n' freshness "$peer" >>"$OUT/runs.tsv"
    return 0
  fi
  spawn fresh "$OUT/logs/$tag.client.log" timeout -k 5 $((${FRESH_DURATION%.*} + 60)) ip netns exec "$NS_C" \
    "$PY" "$HERE/freshness.py" run --server 127.0.0.1:53 --zone "$ZONE" \
    --names "$(IFS=,; echo "${names[*]}")" --owners "$(IFS=,; echo "${owners[*]}")" \
    --rate "$FRESH_RATE" --duration "$FRESH_DURATION" --change-every "$FRESH_EVERY" \
    --target-ttl "$FRESH_TTL" --cap "$ALIAS_CACHE_TTL" \
    --knotc "ip netns exec $NS_U knotc -s $OUT/run/knot/knot.sock" \
    --sniff "ip netns exec $NS_U $PY $HERE/freshness.py sniff --iface fzu0 --port 53" \
    --out "$OUT/raw/$tag"
  wait "$(<"$PIDS/fresh.pid")" || log "freshness client exited with $?"
  rm -f "$PIDS/fresh.pid"
  stop peer
  printf '%s\t%s\tok\n' freshness "$peer" >>"$OUT/runs.tsv"
  tail -n 1 "$OUT/logs/$tag.client.log" >&2 || true
}

run_one() { # FAULT PEER
  local fault=$1 peer=$2 tag="$1-$2" d=$DURATION n=1 udp glibc="" alias_args=() glibc_args=()
  if [[ $fault == freshness ]]; then
    # the other peers have no alias rules: nothing to measure
    [[ $peer == splitdns-alias ]] && run_freshness "$peer"
    return 0
  fi
  if [[ $peer == splitdns-alias ]]; then
    local hot=() i
    for ((i = HOT_BASE; i < HOT_BASE + HOT_NAMES; i++)); do hot+=("pod-$i.db.example.com/A"); done
    alias_args=(--fwd-template "$ALIAS_TEMPLATE" --fwd-base 0 --hot "$(IFS=,; echo "${hot[*]}")" --hot-rate "$HOT_RATE")
    glibc_args=(--template "$ALIAS_TEMPLATE" --base "$GLIBC_BASE")
  fi
  # Room for the window and for what comes after it.
  [[ $fault == blackhole ]] && ((d < 23)) && d=23
  [[ $fault == restart ]] && ((d < 12)) && d=12
  [[ $fault == twoup ]] && n=2
  EVF="$OUT/raw/$tag.events"
  : >"$EVF"
  faults_off
  knot_alive || { log "knotd had died; restarting it"; knot_start; knot_ready 10 || die "knotd does not come back"; }
  log "== $fault / $peer (${d}s)"
  if ! peer_start "$peer" "$n" "$tag"; then
    stop peer
    printf '%s\t%s\tFAILED\n' "$fault" "$peer" >>"$OUT/runs.tsv"
    return 0
  fi
  snap_icmp before "$tag"
  case $fault in loss*) loss_on "0.$(printf '%02d' "${fault#loss}")"; ev fault_on ;; esac
  T0=$(date +%s.%N)
  ev start
  spawn udp "$OUT/logs/$tag.client.log" timeout -k 5 $((d + 30)) ip netns exec "$NS_C" \
    "$PY" "$HERE/client.py" run --server 127.0.0.1:53 --duration "$d" --rate "$RATE" \
    --mapped-rate "$MAPPED_RATE" --mapped "$MAPPED" --zone "$ZONE" --timeout 2 --out "$OUT/raw/$tag.udp.jsonl" \
    "${alias_args[@]}"
  udp=$(<"$PIDS/udp.pid")
  if [[ " $GLIBC_FAULTS " == *" $fault "* ]] && [[ "$GLIBC_RATE" != 0 ]]; then
    spawn glibc "$OUT/logs/$tag.glibc.log" timeout -k 5 $((d + 45)) ip netns exec "$NS_C" \
      "$PY" "$HERE/glibc.py" --duration "$d" --rate "$GLIBC_RATE" --zone "$ZONE" --out "$OUT/raw/$tag.glibc.jsonl" \
      "${glibc_args[@]}"
    glibc=$(<"$PIDS/glibc.pid")
  fi
  case $fault in
    restart)
      sleep_until 3
      stop knotd
      ev window_start # knotd gone: the upstream's kernel now answers with ICMP port unreachable
      # What the sidecar's sockets to the upstream look like (connected ones get the ICMP errors).
      sleep_until 4.5
      nsc ss -uanp >"$OUT/raw/$tag.ss.txt" 2>&1 || true
      sleep_until 6
      knot_start
      ev knot_started
      knot_ready 10 || log "knotd did not come back within 10 s"
      ev window_end # knotd answering again
      ;;
    blackhole)
      sleep_until 3
      hole_on
      ev window_start
      sleep_until 13
      faults_off
      ev window_end
      ;;
    twoup)
      sleep_until 2
      hole_on
      ev window_start
      ;;
  esac
  wait "$udp" || log "udp client exited with $?"
  rm -f "$PIDS/udp.pid"
  if [[ -n "$glibc" ]]; then
    wait "$glibc" || log "glibc client exited with $?"
    rm -f "$PIDS/glibc.pid"
  fi
  [[ $fault == twoup ]] && ev window_end
  ev end
  faults_off
  snap_icmp after "$tag"
  stop peer
  printf '%s\t%s\tok\n' "$fault" "$peer" >>"$OUT/runs.tsv"
  tail -n 1 "$OUT/logs/$tag.client.log" >&2 || true
}

: >"$OUT/runs.tsv"
{
  echo "date=$(date -Is)"
  [[ " $PEERS " == *" splitdns "* ]] && echo "splitdns=$SPLITDNS_BIN sha256=$(sha256sum "$SPLITDNS_BIN" | cut -c1-16)"
  echo "splitdns_extra_args=$SPLITDNS_EXTRA_ARGS"
  echo "dnsmasq=$(dnsmasq --version 2>/dev/null | head -1)"
  echo "unbound=$(unbound -V 2>/dev/null | head -1)"
  echo "knotd=$(knotd --version 2>/dev/null | head -1)"
  echo "duration=$DURATION rate=$RATE mapped_rate=$MAPPED_RATE glibc_rate=$GLIBC_RATE"
  echo "alias: rule pod-N.db.example.com -> host-N.example.net, target TTL $ALIAS_TTL, unique N per query; hot_names=$HOT_NAMES hot_rate=$HOT_RATE"
  echo "freshness: names=$FRESH_NAMES rate_per_name=$FRESH_RATE duration=$FRESH_DURATION change_every=$FRESH_EVERY target_ttl=$FRESH_TTL cap=$ALIAS_CACHE_TTL"
  echo "icmp_ratelimit=$(nsu sysctl -n net.ipv4.icmp_ratelimit)"
  echo "kernel=$(uname -r)"
} >"$OUT/meta.txt"

for fault in $FAULTS; do
  for peer in $PEERS; do
    run_one "$fault" "$peer"
  done
done

"$PY" "$HERE/report.py" "$OUT" | tee "$OUT/summary.md"
log "summary written to $OUT/summary.md"
