#!/usr/bin/env bash
# benches/security.sh - splitdns's defences measured from outside (issue 19): off-path spoofing,
# resource exhaustion and reflection, against dnsmasq and unbound in the same sidecar position,
# in the same run.
#
#   benches/security.sh                                   # every attack, every peer (~15 min)
#   PEERS=splitdns ATTACKS="spoof reflect" benches/security.sh
#   QUERIES=100 DURATION=10 benches/security.sh           # a quicker look
#   SPLITDNS_BIN=/tmp/splitdns-old benches/security.sh
#
# What to install, what each attack does and what each figure means: benches/security/README.md;
# figures: benches/security/RESULTS.md.
#
# Topology (three network namespaces made here, removed at exit; nothing else is touched):
#
#   sdsx-pod  lo 127.0.0.1: the sidecar (:53) and its in-pod clients
#             sxp0 10.98.0.1/30  <---- veth ---->  sxu0 10.98.0.2/30  sdsx-up: upstream.py on :53
#             sxp1 10.98.0.5/30  <---- veth ---->  sxa0 10.98.0.6/30  sdsx-atk: the attacker, a
#                                                                     neighbour pod
# No namespace has a default route and sdsx-pod does not forward: no packet leaves them, spoofed
# ones included. sdsx-pod has rp_filter=0, so the forged answers (source 10.98.0.2, the upstream,
# arriving on sxp1 from sdsx-atk) are taken, as on a cluster network without source validation.
# splitdns's admin endpoint is on 10.98.0.5:9253 (reachable from the attacker's pod, as a pod IP
# is); the /live probes come from the pod's namespace (another address than the attacker's).
#
# Attacks (ATTACKS; each peer is started afresh for each):
#   spoof         QUERIES sequential queries (a new name each, answered by the upstream after
#                 DELAY_MS), forged answers at RATE/s to the source port of the sidecar's first
#                 upstream query (learned once from the upstream's log) for the whole delay
#   spoofrelearn  the same, the attacker re-reading the latest source port every RELEARN_S s
#   spoof32       ROUNDS rounds of CLIENTS clients asking one new name at once, forged as in spoof;
#                 upstream queries per name counted
#   slowloris     (splitdns only: the peers have no HTTP endpoint) SLOW_CONNS connections from
#                 sdsx-atk sending request headers one octet a second, reopened when closed, while
#                 /live is probed every 1 s with a 1 s timeout
#   tcplock       TCP_CONNS in-pod clients pipelining queries and never reading, reopened when
#                 closed; the TCP canary is a new client every 0.5 s (1 s timeout)
#   bigudp        BIG_RATE forwarded UDP queries a second of each size in BIG_SIZES (EDNS
#                 padding) to names the upstream never answers; one run per size
#   aliasflood    ALIAS_RATE queries a second, each a new alias name whose target the upstream
#                 never answers, while a working alias name is asked every 0.5 s (peers: no alias
#                 rules, so new forwarded names the upstream never answers, and a forwarded name)
#   reflect       every peer bound beyond loopback with its default access settings: a stranger
#                 (sdsx-atk) and a local client ask with EDNS 4096; replies and amplification
# Every exhaustion attack runs BASELINE s quiet, DURATION s attacking, AFTER s quiet, with a
# mapped-name canary over UDP and over TCP every 0.5 s and the daemon's RSS sampled every 0.5 s.
#
# Knobs (environment): PEERS (default "splitdns dnsmasq unbound"), ATTACKS (default all above),
#   QUERIES=300 ROUNDS=40 CLIENTS=32 RATE=20000 DELAY_MS=150 RELEARN_S=5
#   DELAY_SCOPE=all (spoof attacks: every upstream answer DELAY_MS late, an upstream that far
#     away) or slow (only the attacked names are late; health probes and the rest answered at
#     once, as a cluster DNS answers cached names at once and misses late)
#   BASELINE=5 DURATION=20 AFTER=10 SLOW_CONNS=100 TCP_CONNS=256 BIG_RATE=1024
#   BIG_SIZES="60000 4000" ALIAS_RATE=2000 BUDGET_MIB=32
#   REPEAT=1: each exhaustion attack this many times on the same process (is what stays after
#     one flood bounded, or does it add up?)
#   CONTROL=1: the spoof attacks also hit dnsmasq-fixedport (dnsmasq --query-port, one fixed
#     source port), a control showing the attacker poisons what it can; not a peer in the verdicts
#   SPLITDNS_BIN (default target/release/splitdns, not built here), SPLITDNS_EXTRA_ARGS
#   OUT (default target/security/<timestamp>)
#
# Output: $OUT/summary.md (one table per attack, rows splitdns / dnsmasq / unbound, met / missed),
# $OUT/raw/results.jsonl (one JSON object per attack and peer), the upstream's query log
# ($OUT/raw/upstream.jsonl), per-query spoof records, and every daemon's log ($OUT/logs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
HERE="$REPO/benches/security"

PEERS="${PEERS:-splitdns dnsmasq unbound}"
ATTACKS="${ATTACKS:-spoof spoofrelearn spoof32 slowloris tcplock bigudp aliasflood reflect}"
QUERIES="${QUERIES:-300}"
ROUNDS="${ROUNDS:-40}"
CLIENTS="${CLIENTS:-32}"
RATE="${RATE:-20000}"
DELAY_MS="${DELAY_MS:-150}"
DELAY_SCOPE="${DELAY_SCOPE:-all}"
RELEARN_S="${RELEARN_S:-5}"
BASELINE="${BASELINE:-5}"
DURATION="${DURATION:-20}"
AFTER="${AFTER:-10}"
SLOW_CONNS="${SLOW_CONNS:-100}"
TCP_CONNS="${TCP_CONNS:-256}"
BIG_RATE="${BIG_RATE:-1024}"
BIG_SIZES="${BIG_SIZES:-60000 4000}"
ALIAS_RATE="${ALIAS_RATE:-2000}"
BUDGET_MIB="${BUDGET_MIB:-32}"
CONTROL="${CONTROL:-1}"
REPEAT="${REPEAT:-1}"
SPLITDNS_BIN="${SPLITDNS_BIN:-target/release/splitdns}"
SPLITDNS_EXTRA_ARGS="${SPLITDNS_EXTRA_ARGS:-}"
OUT="${OUT:-$REPO/target/security/$(date +%Y%m%d-%H%M%S)}"

NS_P=sdsx-pod NS_U=sdsx-up NS_A=sdsx-atk
P0=10.98.0.1 U0=10.98.0.2 P1=10.98.0.5 A0=10.98.0.6
MAPPED=db-0.svc.sx.test
ADMIN="$P1:9253"

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 2; }

# ------------------------------------------------------------------ checks ----
[[ $EUID -eq 0 ]] || die "needs root (network namespaces, raw sockets)"
for t in ip python3 timeout; do command -v "$t" >/dev/null || die "missing $t (apt-get install iproute2 python3 coreutils)"; done
for p in $PEERS; do
  case $p in
    splitdns) [[ -x "$SPLITDNS_BIN" ]] || die "no splitdns binary at '$SPLITDNS_BIN' (cargo build --release, or set SPLITDNS_BIN)"
              SPLITDNS_BIN="$(realpath "$SPLITDNS_BIN")" ;;
    dnsmasq | unbound) command -v "$p" >/dev/null || die "missing $p (apt-get install $p)" ;;
    *) die "unknown peer '$p' (PEERS: splitdns dnsmasq unbound; the control dnsmasq-fixedport comes with CONTROL=1)" ;;
  esac
done
for a in $ATTACKS; do
  case $a in spoof | spoofrelearn | spoof32 | slowloris | tcplock | bigudp | aliasflood | reflect) ;;
    *) die "unknown attack '$a' (ATTACKS: spoof spoofrelearn spoof32 slowloris tcplock bigudp aliasflood reflect)" ;; esac
done
# The real interpreter, not a version-manager shim (it starts faster, and inside the namespaces).
PY="$(python3 -c 'import sys; print(sys.executable)')"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the source tree

exec 9>/run/splitdns-security.lock
flock -n 9 || die "another benches/security.sh is running (lock /run/splitdns-security.lock)"

mkdir -p "$OUT"/{conf,logs,pids,raw,run}
OUT="$(realpath "$OUT")"
PIDS="$OUT/pids"
RESULTS="$OUT/raw/results.jsonl"
UPLOG="$OUT/raw/upstream.jsonl"
: >"$RESULTS"
log "results in $OUT"

nsp() { ip netns exec "$NS_P" "$@"; }

# --------------------------------------------------------------- processes ----
# shellcheck source=benches/netns-procs.sh
STOP_WAIT_TENTHS=80
source "$REPO/benches/netns-procs.sh"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_all
  remove_ns "$NS_P"
  remove_ns "$NS_U"
  remove_ns "$NS_A"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- topology ----
remove_ns "$NS_P"; remove_ns "$NS_U"; remove_ns "$NS_A" # leftovers of a killed run
ip netns add "$NS_P"
ip netns add "$NS_U"
ip netns add "$NS_A"
ip link add sxp0 netns "$NS_P" type veth peer name sxu0 netns "$NS_U"
ip link add sxp1 netns "$NS_P" type veth peer name sxa0 netns "$NS_A"
for ns in "$NS_P" "$NS_U" "$NS_A"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true
  ip -n "$ns" link set lo up
done
ip -n "$NS_P" addr add "$P0/30" dev sxp0
ip -n "$NS_P" addr add "$P1/30" dev sxp1
ip -n "$NS_U" addr add "$U0/30" dev sxu0
ip -n "$NS_A" addr add "$A0/30" dev sxa0
ip -n "$NS_P" link set sxp0 up
ip -n "$NS_P" link set sxp1 up
ip -n "$NS_U" link set sxu0 up
ip -n "$NS_A" link set sxa0 up
nsp sysctl -qw net.ipv4.ip_forward=0 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
  net.ipv4.conf.sxp1.rp_filter=0 net.ipv4.conf.sxp0.rp_filter=0
# The attacker reaches the pod's upstream-side address (10.98.0.1) through its own veth.
ip -n "$NS_A" route add "$P0/32" via "$P1" dev sxa0
log "namespaces $NS_P ($P0, $P1), $NS_U ($U0), $NS_A ($A0) up"

# ---------------------------------------------------------------- upstream ----
UP_SCOPE=
upstream_start() { # SCOPE: all (every answer DELAY_MS late: an upstream that far) or slow (only *.slow)
  [[ $1 == "$UP_SCOPE" ]] && return 0
  stop upstream
  local all=()
  [[ $1 == all ]] && all=(--delay-all)
  spawn upstream "$OUT/logs/upstream.log" ip netns exec "$NS_U" "$PY" "$HERE/upstream.py" \
    --listen "$U0:53" --delay "$DELAY_MS" "${all[@]}" --log "$UPLOG"
  nsp "$PY" "$HERE/reflect.py" probe --server "$U0:53" --name www.example.net --deadline 10 ||
    die "the upstream does not answer over the veth (see $OUT/logs/upstream.log)"
  UP_SCOPE=$1
  log "upstream up on $U0:53 ($1 answers delayed $DELAY_MS ms)"
}
upstream_start "$DELAY_SCOPE"

# ----------------------------------------------------------------- sidecars ----
cat >"$OUT/conf/mapping.yaml" <<EOF
ttl: 5
hosts:
  $MAPPED: 10.42.0.10
rules:
  - host: 'pod-(\d+)\.db\.example\.com'
    regex: true
    result: 'host-\${1}.example.net'
  - host: 'dead-(\d+)\.db\.example\.com'
    regex: true
    result: 'host-\${1}.silent.example.net'
EOF
printf '10.42.0.10 %s\n' "$MAPPED" >"$OUT/conf/hosts"

peer_start() { # PEER POSITION(pod|wide) TAG: the sidecar in the pod, on loopback or on every address
  local peer=$1 pos=$2 tag=$3 logf="$OUT/logs/$3.log" listen=127.0.0.1
  [[ $pos == wide ]] && listen=0.0.0.0
  case $peer in
    splitdns)
      # shellcheck disable=SC2086
      spawn peer "$logf" ip netns exec "$NS_P" "$SPLITDNS_BIN" --listen "$listen:53" \
        --mapping "$OUT/conf/mapping.yaml" --upstream "$U0:53" --admin "$ADMIN" $SPLITDNS_EXTRA_ARGS
      ;;
    dnsmasq | dnsmasq-fixedport) # its defaults but for the names it serves; "wide": no interface options
      local where=(--listen-address=127.0.0.1 --bind-interfaces) fixed=()
      [[ $pos == wide ]] && where=()
      # The control: one fixed source port for every upstream query (as resolvers were before
      # 2008), to show the spoofer does poison what it can (about RATE x DELAY / 65,536 a query).
      [[ $peer == dnsmasq-fixedport ]] && fixed=(--query-port=33333)
      spawn peer "$logf" ip netns exec "$NS_P" dnsmasq --keep-in-foreground --conf-file=/dev/null \
        --no-resolv --no-hosts --addn-hosts="$OUT/conf/hosts" --server="$U0" "${where[@]}" "${fixed[@]}" \
        --port=53 --user=root --pid-file= --log-facility=-
      ;;
    unbound) # its defaults (access-control: localhost only) but for the names it serves
      mkdir -p "$OUT/run/unbound"
      cat >"$OUT/conf/unbound-$tag.conf" <<EOF
server:
    interface: $listen
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
    local-data: "$MAPPED. 5 IN A 10.42.0.10"
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: $U0
EOF
      spawn peer "$logf" ip netns exec "$NS_P" unbound -d -c "$OUT/conf/unbound-$tag.conf"
      ;;
  esac
  if nsp "$PY" "$HERE/reflect.py" probe --server 127.0.0.1:53 --name www.example.net --deadline 10 &&
    nsp "$PY" "$HERE/reflect.py" probe --server 127.0.0.1:53 --name "$MAPPED" --deadline 5; then
    return 0
  fi
  log "$peer does not answer on 127.0.0.1:53; its log ($logf):"
  tail -n 20 "$logf" >&2
  return 1
}

record() { # ATTACK PEER JSON: one line of results.jsonl
  printf '{"attack":"%s","peer":"%s","result":%s}\n' "$1" "$2" "${3:-null}" >>"$RESULTS"
}

# ------------------------------------------------------------------ attacks ----
exhaust() { # ATTACK PEER ARGS...: exhaust.py against the running peer
  local attack=$1 peer=$2 out
  shift 2
  local admin=() i name=$attack
  [[ $peer == splitdns ]] && admin=(--admin "$ADMIN")
  for ((i = 1; i <= REPEAT; i++)); do # REPEAT > 1: the same attack again on the same process
    ((i > 1)) && name="$attack#$i"
    out=$(timeout $((BASELINE + DURATION + AFTER + 60)) ip netns exec "$NS_P" "$PY" "$HERE/exhaust.py" \
      --pid "$(<"$PIDS/peer.pid")" --canary-name "$MAPPED" --baseline "$BASELINE" --duration "$DURATION" \
      --after "$AFTER" --atk-ns "$NS_A" "${admin[@]}" "$@") || out=null
    record "$name" "$peer" "$out"
    log "$name $peer: $out"
  done
}

run_attack() { # ATTACK PEER
  local attack=$1 peer=$2 out pos=pod
  [[ $attack == reflect ]] && pos=wide
  if [[ $attack == slowloris && $peer != splitdns ]]; then
    record "$attack" "$peer" '{"na":"no HTTP endpoint"}'
    return 0
  fi
  if [[ $attack == spoof* ]]; then upstream_start "$DELAY_SCOPE"; else upstream_start slow; fi
  peer_start "$peer" "$pos" "$peer-$attack" || { record "$attack" "$peer" '{"error":"did not start"}'; stop peer; return 0; }
  case $attack in
    spoof | spoofrelearn | spoof32)
      local extra=(--learn first --clients 1 --queries "$QUERIES")
      [[ $attack == spoofrelearn ]] && extra=(--learn "every:$RELEARN_S" --clients 1 --queries "$QUERIES")
      [[ $attack == spoof32 ]] && extra=(--learn first --clients "$CLIENTS" --rounds "$ROUNDS")
      out=$(timeout $((QUERIES * 4 + ROUNDS * 4 + 60)) ip netns exec "$NS_P" "$PY" "$HERE/spoof.py" \
        --server 127.0.0.1:53 --atk-ns "$NS_A" --upstream-ip "$U0" --sidecar-ip "$P0" --uplog "$UPLOG" \
        --rate "$RATE" --delay "$DELAY_MS" --tag "$peer-$attack" --raw "$OUT/raw/$peer-$attack.jsonl" \
        "${extra[@]}") || out=null
      record "$attack" "$peer" "$out"
      log "$attack $peer: $out"
      ;;
    slowloris) exhaust slowloris "$peer" --mode slowloris --conns "$SLOW_CONNS" --drip 1 ;;
    tcplock) exhaust tcplock "$peer" --mode tcplock --conns "$TCP_CONNS" ;;
    bigudp)
      local size first=1
      for size in $BIG_SIZES; do
        if ((!first)); then stop peer; peer_start "$peer" pod "$peer-bigudp-$size" || continue; fi
        first=0
        exhaust "bigudp-$size" "$peer" --mode bigudp --rate "$BIG_RATE" --size "$size" --work-name www.example.net
      done
      ;;
    aliasflood)
      if [[ $peer == splitdns ]]; then
        exhaust aliasflood "$peer" --mode aliasflood --rate "$ALIAS_RATE" --work-name pod-7.db.example.com \
          --flood-template 'dead-{n}.db.example.com'
      else
        exhaust aliasflood "$peer" --mode aliasflood --rate "$ALIAS_RATE" --work-name www.example.net \
          --flood-template 'dead-{n}.silent.example.net'
      fi
      ;;
    reflect)
      local stranger local_
      stranger=$(timeout 120 ip netns exec "$NS_A" "$PY" "$HERE/reflect.py" measure --server "$P1:53" --mapped "$MAPPED") || stranger=null
      local_=$(timeout 120 ip netns exec "$NS_P" "$PY" "$HERE/reflect.py" measure --server "$P1:53" --mapped "$MAPPED") || local_=null
      record reflect "$peer" "{\"stranger\":$stranger,\"local\":$local_}"
      log "reflect $peer: stranger $stranger"
      ;;
  esac
  stop peer
}

for attack in $ATTACKS; do
  peers=$PEERS
  [[ $attack == spoof* && $CONTROL == 1 ]] && command -v dnsmasq >/dev/null && peers="$PEERS dnsmasq-fixedport"
  for peer in $peers; do
    log "--- $attack: $peer"
    run_attack "$attack" "$peer"
  done
done

{
  echo "splitdns=$( [[ " $PEERS " == *" splitdns "* ]] && "$SPLITDNS_BIN" --version 2>/dev/null | head -1)"
  echo "dnsmasq=$(command -v dnsmasq >/dev/null && dnsmasq --version 2>/dev/null | head -1)"
  echo "unbound=$(command -v unbound >/dev/null && unbound -V 2>/dev/null | head -1)"
  echo "kernel=$(uname -r)"
  echo "date=$(date -u +%FT%TZ)"
  echo "command=PEERS=\"$PEERS\" ATTACKS=\"$ATTACKS\" QUERIES=$QUERIES ROUNDS=$ROUNDS CLIENTS=$CLIENTS RATE=$RATE DELAY_MS=$DELAY_MS DELAY_SCOPE=$DELAY_SCOPE RELEARN_S=$RELEARN_S BASELINE=$BASELINE DURATION=$DURATION AFTER=$AFTER SLOW_CONNS=$SLOW_CONNS TCP_CONNS=$TCP_CONNS BIG_RATE=$BIG_RATE BIG_SIZES=\"$BIG_SIZES\" ALIAS_RATE=$ALIAS_RATE CONTROL=$CONTROL REPEAT=$REPEAT benches/security.sh"
} >"$OUT/versions.txt"
"$PY" "$HERE/summarize.py" --results "$RESULTS" --versions "$OUT/versions.txt" --budget-mib "$BUDGET_MIB" \
  >"$OUT/summary.md" || log "summarize.py failed"
cat "$OUT/summary.md"
log "done: $OUT"
