#!/usr/bin/env bash
# benches/footprint.sh - what splitdns costs when it sits idle in every database pod, next to
# dnsmasq and unbound serving the same 300-name mapping (issue 12).
#
#   benches/footprint.sh [idle]     idle footprint of every config, then start to first answer
#   benches/footprint.sh load       idle as above, plus a dnsperf burst per target and the memory
#                                   after it ("after the harness run" numbers)
#   benches/footprint.sh cpulimit   a 2,000-query burst in one second under cgroup CPU limits
#                                   (none, 100m, 50m) with --workers 1 and 2, and what
#                                   --workers defaults to when a quota is set (needs root and
#                                   the cgroup v1 cpu controller)
#   benches/footprint.sh all        idle + load + cpulimit
#
# Per target (idle): threads, VmRSS, VmRSS minus the pages of mapped shared libraries, PSS,
# wake-ups per second and CPU seconds per idle hour over an IDLE-second window, start to first
# answer of a mapped name. Definitions: benches/footprint/probe.py; results and advice for
# operators: benches/footprint/RESULTS.md.
#
# Environment (defaults):
#   SPLITDNS_BIN=target/release/splitdns    the dynamic release build (not rebuilt here)
#   SPLITDNS_STATIC_BIN=                    also measure this static build (as the image ships it)
#   WORKERS="default 1 2 8 64"              splitdns configs ("default" = no --workers flag)
#   PEERS="dnsmasq unbound"                 comparison peers, started by benches/dnsperf/peers.sh
#   IDLE=60                                 seconds of the idle window (all targets at once)
#   FIRST_RUNS=10                           starts per target for start to first answer
#   LOAD_DURATION=5                         load: seconds of local, then of forwarded names
#   CPU_LIMITS="none 100m 50m"              cpulimit: cgroup CPU limits (millicores)
#   CPULIMIT_WORKERS="1 2"                  cpulimit: --workers of the burst runs
#   CPULIMIT_BIN=${SPLITDNS_STATIC_BIN:-$SPLITDNS_BIN}  cpulimit: binary of the burst runs
#   BURST_COUNT=2000 BURST_SECONDS=1 BURST_WAIT=5 BURST_ROUNDS=3
#   QUOTA_LIMITS="none 2000m 1500m 1000m 500m 100m 50m"  cpulimit: default-workers probe
#   WORK=target/footprint  OUT=$WORK/results-<timestamp>   (the harness state: $WORK/bench)
#   CLIENT_CPU=0 SERVER_CPU=1               load generator / servers pinned like the harness
#   PORT_BASE=15400                         splitdns ports PORT_BASE.., admin PORT_BASE+50..,
#                                           peers PORT_BASE+40.. (loopback only)
#
# Everything listens on 127.0.0.1 high ports, every wait is bounded, only processes this script
# started are signalled (by PID, checked against the executable), and the EXIT trap stops them
# and removes the cgroup. A full default run (idle) takes about 2.5 minutes; load adds about
# 2.5 minutes and cpulimit about 2.5 minutes. Needs (Debian): dnsmasq unbound knot dnsperf
# bind9-dnsutils (dig), python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd -P)"
HERE="$REPO/benches/footprint"
MODE="${1:-idle}"

SPLITDNS_BIN="${SPLITDNS_BIN:-$REPO/target/release/splitdns}"
SPLITDNS_STATIC_BIN="${SPLITDNS_STATIC_BIN:-}"
WORKERS="${WORKERS:-default 1 2 8 64}"
PEERS="${PEERS-dnsmasq unbound}"
IDLE="${IDLE:-60}"
SETTLE="${SETTLE:-3}"
FIRST_RUNS="${FIRST_RUNS:-10}"
LOAD_DURATION="${LOAD_DURATION:-5}"
CPU_LIMITS="${CPU_LIMITS:-none 100m 50m}"
CPULIMIT_WORKERS="${CPULIMIT_WORKERS:-1 2}"
CPULIMIT_BIN="${CPULIMIT_BIN:-${SPLITDNS_STATIC_BIN:-$SPLITDNS_BIN}}"
BURST_COUNT="${BURST_COUNT:-2000}"
BURST_SECONDS="${BURST_SECONDS:-1}"
BURST_WAIT="${BURST_WAIT:-5}"
BURST_ROUNDS="${BURST_ROUNDS:-3}"
QUOTA_LIMITS="${QUOTA_LIMITS:-none 2000m 1500m 1000m 500m 100m 50m}"
CFS_PERIOD_US="${CFS_PERIOD_US:-100000}"
# The side-by-side harness (its peers.sh starts the upstream and the peers), in the repository.
HARNESS="$REPO/benches/dnsperf"
WORK="${WORK:-$REPO/target/footprint}"
OUT="${OUT:-$WORK/results-$(date +%Y%m%d-%H%M%S)}"
CLIENT_CPU="${CLIENT_CPU:-0}"
SERVER_CPU="${SERVER_CPU:-1}"
PORT_BASE="${PORT_BASE:-15400}"

# The harness's peers on our own ports, so that a concurrent benches/dnsperf.sh cannot collide.
export BIND_ADDR=127.0.0.1 CLIENT_CPU SERVER_CPU UPSTREAM_CPU="${UPSTREAM_CPU:-$SERVER_CPU}"
export UPSTREAM_PORT=$((PORT_BASE + 40)) DNSMASQ_PORT=$((PORT_BASE + 41)) DNSMASQ_CACHE_PORT=$((PORT_BASE + 42))
export UNBOUND_PORT=$((PORT_BASE + 43)) HICKORY_PORT=$((PORT_BASE + 44)) HICKORY_NOCACHE_PORT=$((PORT_BASE + 45))
FA_PORT=$((PORT_BASE + 39))     # start to first answer (one daemon at a time)
FA_ADMIN=$((PORT_BASE + 89))
CL_PORT=$((PORT_BASE + 38))     # cpulimit daemon
CL_ADMIN=$((PORT_BASE + 88))
MAP1=kurrentdb-0.kurrentdb.example.com  # a mapped name (probe, first answer)
FWD1=host-7.example.net                  # a forwarded name (the upstream's zone)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { echo "footprint.sh: $*" >&2; exit 2; }

case "$MODE" in idle | load | cpulimit | all) ;; *) sed -n '2,41p' "$0"; exit 2 ;; esac
for tool in dig python3 taskset knotd; do command -v "$tool" >/dev/null || die "missing $tool"; done
[[ "$MODE" == idle || "$MODE" == cpulimit ]] || command -v dnsperf >/dev/null || die "missing dnsperf"
for p in $PEERS; do
  case "$p" in
    dnsmasq | dnsmasq-cache) command -v dnsmasq >/dev/null || die "missing dnsmasq (or PEERS=...)" ;;
    unbound) command -v unbound >/dev/null || die "missing unbound (or PEERS=...)" ;;
    *) die "PEERS: only dnsmasq dnsmasq-cache unbound are supported (they serve the mapping)" ;;
  esac
done
[[ -x "$SPLITDNS_BIN" ]] || die "SPLITDNS_BIN=$SPLITDNS_BIN is not executable (cargo build --release first)"
[[ -z "$SPLITDNS_STATIC_BIN" || -x "$SPLITDNS_STATIC_BIN" ]] || die "SPLITDNS_STATIC_BIN=$SPLITDNS_STATIC_BIN is not executable"

# ----------------------------------------------------------------- setup ----
mkdir -p "$WORK" "$OUT"
WORK="$(cd "$WORK" && pwd -P)"
rm -rf "$WORK/bench" "$WORK/bin" "$WORK/logs" "$WORK/run"
mkdir -p "$WORK/bin" "$WORK/logs" "$WORK/run"
# The harness writes its state (data, configs, pid files, logs) here, not next to itself.
BENCH="$WORK/bench"
export STATE_DIR="$BENCH"
peers() { "$HARNESS/peers.sh" "$@"; }
DATA="$BENCH/data"
RES="$OUT/results.jsonl"
: > "$RES"
peers gen 2>/dev/null

OURS="$WORK/run/ours" # "PID EXE" of every daemon this script started itself
: > "$OURS"
CG="" # our cgroup, when cpulimit made one

# signal PID only if it is still the executable we started
stop_pid() {
  local pid=$1 exe=$2 i
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]] || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}
stop_ours() {
  local pid exe
  while read -r pid exe; do stop_pid "$pid" "$exe"; done < "$OURS"
  : > "$OURS"
}
cleanup() {
  set +e
  stop_ours
  peers stop >/dev/null 2>&1
  if [[ -n "$CG" && -d "$CG" ]]; then
    echo -1 > "$CG/cpu.cfs_quota_us" 2>/dev/null
    rmdir "$CG" 2>/dev/null || log "could not remove cgroup $CG (a task still in it?)"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

answers() { # answers PORT NAME: succeeds when PORT answers NAME with an A record
  dig +tries=1 +time=1 +noedns -p "$1" @127.0.0.1 "$2" A +short 2>/dev/null | grep -q '^[0-9]'
}
wait_answer() { # wait_answer PORT NAME PID: up to 10 s
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -d "/proc/$3" ]] || return 1
    answers "$1" "$2" && return 0
    sleep 0.1
  done
  return 1
}
port_free() { ! ss -Hlnu "sport = :$1" 2>/dev/null | grep -q . && ! ss -Hlnt "sport = :$1" 2>/dev/null | grep -q .; }

# sd_args PORT ADMIN WORKERS: the splitdns command line (defaults except addresses and workers)
sd_args() {
  local a=(--listen "127.0.0.1:$1" --mapping "$DATA/mapping.yaml" --upstream "127.0.0.1:$UPSTREAM_PORT" --admin "127.0.0.1:$2")
  [[ "$3" == default ]] || a+=(--workers "$3")
  printf '%s\n' "${a[@]}"
}

# start_sd LABEL EXE PORT ADMIN WORKERS [WRAPPER...]: start, wait for an answer, print the PID
start_sd() {
  local label=$1 exe=$2 port=$3 admin=$4 w=$5
  shift 5
  port_free "$port" && port_free "$admin" || { log "$label: port $port or $admin in use; not starting"; return 1; }
  local args
  mapfile -t args < <(sd_args "$port" "$admin" "$w")
  "$@" "$exe" "${args[@]}" </dev/null >"$WORK/logs/$label.log" 2>&1 &
  local pid=$!
  echo "$pid $exe" >> "$OURS"
  if ! wait_answer "$port" "$MAP1" "$pid"; then
    log "$label: no answer on port $port within 10 s; log:"
    tail -n 5 "$WORK/logs/$label.log" >&2
    return 1
  fi
  echo "$pid"
}

workers_of() { # workers_of LOGFILE PID: what the daemon says it started, else its udp-N threads
  local w
  w=$(grep -o 'workers=[0-9]*' "$1" 2>/dev/null | head -1 | cut -d= -f2)
  [[ -n "$w" ]] || w=$(cat /proc/"$2"/task/*/comm 2>/dev/null | grep -c '^udp-' || true)
  echo "${w:-?}"
}
threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
# busy_note WHEN: how busy the machine is (all CPUs, over 1 s), recorded with the results
busy_note() {
  local a b ab ai bb bi
  a=$(awk '$1 == "cpu" { printf "%.0f %.0f\n", $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat); sleep 1
  b=$(awk '$1 == "cpu" { printf "%.0f %.0f\n", $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
  read -r ab ai bb bi <<<"$a $b"
  local pct=$(( (bb - ab) * 100 / ((bb - ab) + (bi - ai) + 1) ))
  printf '{"phase":"busy","when":"%s","pct":%d,"loadavg":"%s"}\n' "$1" "$pct" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$RES"
  (( pct < 15 )) || log "WARNING: the machine is ${pct}% busy $1; latencies will be noisy"
}
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

{
  printf '{"phase":"meta","date":"%s","kernel":"%s","cpus":"%s","names":"%s","idle":"%s","mode":"%s",' \
    "$(date -Is)" "$(uname -r)" "$(nproc)" "$(grep -c ': ' "$DATA/mapping.yaml" | awk '{ print $1 - 1 }')" "$IDLE" "$MODE"
  printf '"splitdns_bin":%s,"splitdns_static_bin":%s,"peers_versions":%s}\n' \
    "$(json_str "$SPLITDNS_BIN ($(sha256sum "$SPLITDNS_BIN" | cut -c1-12), $(file -b "$SPLITDNS_BIN" | grep -o 'dynamically linked\|static-pie linked\|statically linked' | head -1))")" \
    "$(json_str "${SPLITDNS_STATIC_BIN:+$SPLITDNS_STATIC_BIN ($(sha256sum "$SPLITDNS_STATIC_BIN" | cut -c1-12), $(file -b "$SPLITDNS_STATIC_BIN" | grep -o 'dynamically linked\|static-pie linked\|statically linked' | head -1))}")" \
    "$(json_str "$( (dnsmasq --version 2>/dev/null | head -1 | awk '{ print "dnsmasq " $3 }'; unbound -V 2>/dev/null | head -1 | sed 's/Version/unbound/'; knotd --version 2>/dev/null | sed 's/.*version/knotd (upstream)/') | paste -sd, -)")"
} >> "$RES"

log "results -> $OUT"
peers start upstream >/dev/null 2>&1 || die "could not start the knot upstream (port $UPSTREAM_PORT)"

# ------------------------------------------------------- idle (and load) ----
declare -a T_LABEL T_PID T_PORT T_EXE T_FA  # targets of the idle run; T_FA = first-answer command
run_idle() {
  busy_note "before the idle run"
  local i=0 bin kind w label exe pid port
  for bin in "$SPLITDNS_BIN" ${SPLITDNS_STATIC_BIN:+"$SPLITDNS_STATIC_BIN"}; do
    if [[ "$bin" == "$SPLITDNS_BIN" ]]; then kind=splitdns-dynamic; else kind=splitdns-static; fi
    for w in $WORKERS; do
      label="${kind#splitdns-}/$([[ $w == default ]] && echo default || echo "w$w")"
      label="splitdns-$label"
      # one copy of the binary per instance: shared text pages would otherwise split PSS
      exe="$WORK/bin/${label//\//-}"
      cp "$bin" "$exe"
      port=$((PORT_BASE + i))
      pid=$(start_sd "${label//\//-}" "$exe" "$port" $((PORT_BASE + 50 + i)) "$w") || die "$label did not start"
      # pin every thread like the harness pins its peers (after start: the default worker
      # count is what the daemon picked with the whole machine available)
      taskset -a -pc "$SERVER_CPU" "$pid" >/dev/null
      T_LABEL+=("$label"); T_PID+=("$pid"); T_PORT+=("$port"); T_EXE+=("$exe")
      T_FA+=("splitdns $exe $w")
      printf '{"phase":"target","label":"%s","kind":"%s","workers_asked":"%s","workers":"%s","port":%d,"pid":%d}\n' \
        "$label" "$kind" "$w" "$(workers_of "$WORK/logs/${label//\//-}.log" "$pid")" "$port" "$pid" >> "$RES"
      i=$((i + 1))
    done
  done
  local p
  for p in $PEERS; do
    peers start "$p" >/dev/null 2>&1 || die "could not start $p"
    pid=$(awk '{ print $1 }' "$BENCH/run/$p.pid")
    case "$p" in dnsmasq) port=$DNSMASQ_PORT ;; dnsmasq-cache) port=$DNSMASQ_CACHE_PORT ;; unbound) port=$UNBOUND_PORT ;; esac
    # its exact command line, for start to first answer after it is stopped
    tr '\0' '\n' < "/proc/$pid/cmdline" > "$WORK/run/$p.cmdline"
    T_LABEL+=("$p"); T_PID+=("$pid"); T_PORT+=("$port"); T_EXE+=(""); T_FA+=("peer $p")
    printf '{"phase":"target","label":"%s","kind":"peer","workers_asked":"","workers":"1","port":%d,"pid":%d}\n' \
      "$p" "$port" "$pid" >> "$RES"
  done
  # every target answers one mapped and one forwarded name before the window
  local k
  for ((k = 0; k < ${#T_LABEL[@]}; k++)); do
    answers "${T_PORT[k]}" "$MAP1" || log "WARNING: ${T_LABEL[k]} does not answer $MAP1"
    answers "${T_PORT[k]}" "$FWD1" || log "WARNING: ${T_LABEL[k]} does not answer $FWD1 (forwarded)"
  done
  sleep "$SETTLE"
  log "idle window: ${IDLE}s, ${#T_LABEL[@]} targets at once"
  local specs=()
  for ((k = 0; k < ${#T_LABEL[@]}; k++)); do specs+=("${T_LABEL[k]}=${T_PID[k]}"); done
  timeout $((IDLE + 60)) python3 "$HERE/probe.py" idle "$IDLE" "$RES" "${specs[@]}"
}

dnsperf_summary() { # dnsperf_summary FILE -> "qps lost"
  awk '/Queries per second/ { q = $4 } /Queries lost/ { l = $3 } END { printf "%d %d\n", q, l }' "$1"
}
run_load() {
  local k f qps lost lq ll
  log "load: ${LOAD_DURATION}s local + ${LOAD_DURATION}s forwarded per target (dnsperf on cpu $CLIENT_CPU)"
  for ((k = 0; k < ${#T_LABEL[@]}; k++)); do
    for f in local forward; do
      timeout -k 5 $((LOAD_DURATION + 30)) taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "${T_PORT[k]}" \
        -d "$DATA/$f.txt" -l "$LOAD_DURATION" -c 4 -q 100 -T 1 -t 2 > "$WORK/logs/dnsperf-$k-$f.txt" 2>&1 || true
      read -r qps lost < <(dnsperf_summary "$WORK/logs/dnsperf-$k-$f.txt")
      if [[ $f == local ]]; then lq=$qps; ll=$lost; fi
      sleep 1
    done
    printf '{"phase":"load","label":"%s","local_qps":%d,"local_lost":%d,"fwd_qps":%d,"fwd_lost":%d}\n' \
      "${T_LABEL[k]}" "$lq" "$ll" "$qps" "$lost" >> "$RES"
    log "  ${T_LABEL[k]}: local $lq qps ($ll lost), forwarded $qps qps ($lost lost)"
  done
  sleep 2
  local specs=()
  for ((k = 0; k < ${#T_LABEL[@]}; k++)); do specs+=("${T_LABEL[k]}=${T_PID[k]}"); done
  python3 "$HERE/probe.py" mem after_load "$RES" "${specs[@]}"
}

run_first_answer() {
  local k kind exe w p args
  stop_ours
  for p in $PEERS; do peers stop "$p" >/dev/null 2>&1 || true; done
  log "start to first answer: $FIRST_RUNS starts per target"
  for ((k = 0; k < ${#T_LABEL[@]}; k++)); do
    read -r kind exe w <<<"${T_FA[k]}"
    if [[ $kind == splitdns ]]; then
      port_free "$FA_PORT" && port_free "$FA_ADMIN" || { log "port $FA_PORT/$FA_ADMIN in use; skipping"; continue; }
      mapfile -t args < <(sd_args "$FA_PORT" "$FA_ADMIN" "$w")
      timeout $((FIRST_RUNS * 20 + 30)) python3 "$HERE/first_answer.py" "${T_LABEL[k]}" "$FA_PORT" "$MAP1" \
        "$FIRST_RUNS" "$RES" -- "$exe" "${args[@]}" || log "first answer of ${T_LABEL[k]} failed"
    else
      mapfile -t args < "$WORK/run/$exe.cmdline"
      port_free "${T_PORT[k]}" || { log "port ${T_PORT[k]} in use; skipping"; continue; }
      (cd "$WORK/bench" && timeout $((FIRST_RUNS * 20 + 30)) python3 "$HERE/first_answer.py" "${T_LABEL[k]}" \
        "${T_PORT[k]}" "$MAP1" "$FIRST_RUNS" "$RES" -- "${args[@]}") || log "first answer of ${T_LABEL[k]} failed"
    fi
  done
}

# ------------------------------------------------------------- cpulimit ----
cg_setup() {
  local root d rel
  for d in /sys/fs/cgroup/cpu,cpuacct /sys/fs/cgroup/cpu; do
    [[ -f "$d/cpu.cfs_quota_us" ]] && { root=$d; break; }
  done
  [[ -n "${root:-}" ]] || die "cpulimit needs the cgroup v1 cpu controller (/sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
  rel=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { print $3; exit }' /proc/self/cgroup)
  CG="$root${rel%/}/splitdns-footprint-$$"
  mkdir "$CG" || die "cannot create $CG (root needed)"
  echo "$CFS_PERIOD_US" > "$CG/cpu.cfs_period_us"
  log "cgroup $CG"
}
cg_limit() { # cg_limit none|NNNm
  local q=-1
  [[ "$1" == none ]] || q=$(( ${1%m} * CFS_PERIOD_US / 1000 ))
  echo "$q" > "$CG/cpu.cfs_quota_us"
}
cg_stat() { # "nr_periods nr_throttled throttled_time_ns" (as strings: awk would print big numbers as 2.5e+09)
  local k v np=0 nt=0 tt=0
  while read -r k v; do
    case "$k" in nr_periods) np=$v ;; nr_throttled) nt=$v ;; throttled_time) tt=$v ;; esac
  done < "$CG/cpu.stat"
  echo "$np $nt $tt"
}
cg_move() { # cg_move PID: the whole thread group into our cgroup, and check every thread is there
  local pid=$1 n m
  echo "$pid" > "$CG/cgroup.procs"
  n=$(ls "/proc/$pid/task" | wc -l)
  m=$(grep -cx -f <(ls "/proc/$pid/task") "$CG/tasks" || true)
  [[ "$n" == "$m" ]] || die "only $m of $n threads of $pid moved into $CG"
}

run_cpulimit() {
  busy_note "before the cpulimit run"
  cg_setup
  local limit w r pid exe="$WORK/bin/splitdns-cpulimit" np0 nt0 tt0 np1 nt1 tt1 c0 c1 s0 s1 d0 d1 u0 u1 salt up_pid
  up_pid=$(awk '{ print $1 }' "$BENCH/run/upstream.pid")
  # A rename, not a copy over it: the previous run's daemon may still be exiting ("text file busy").
  cp "$CPULIMIT_BIN" "$exe.new" && mv -f "$exe.new" "$exe"
  log "cpulimit: $BURST_ROUNDS bursts of $BURST_COUNT queries in ${BURST_SECONDS}s per cell; binary $CPULIMIT_BIN"
  for limit in $CPU_LIMITS; do
    for w in $CPULIMIT_WORKERS; do
      cg_limit none # start-up is not what is measured
      pid=$(start_sd "cpulimit-$limit-w$w" "$exe" "$CL_PORT" "$CL_ADMIN" "$w") || die "cpulimit daemon did not start"
      cg_move "$pid"
      cg_limit "$limit"
      answers "$CL_PORT" "$MAP1" || log "WARNING: no local answer under $limit"
      answers "$CL_PORT" "$FWD1" || log "WARNING: no forwarded answer under $limit"
      sleep 1
      for ((r = 1; r <= BURST_ROUNDS; r++)); do
        read -r np0 nt0 tt0 < <(cg_stat)
        read -r c0 s0 < <(python3 "$HERE/probe.py" cpu "$pid")
        d0=$(python3 "$HERE/probe.py" drops "$pid")
        u0=$(python3 "$HERE/probe.py" drops "$up_pid")
        salt="$$${limit}w${w}r${r}"
        timeout -k 5 $((BURST_SECONDS + BURST_WAIT + 30)) taskset -c "$CLIENT_CPU" python3 "$HERE/burst.py" \
          "$CL_PORT" "$DATA/local.txt" "$salt" "$BURST_COUNT" "$BURST_SECONDS" "$BURST_WAIT" "$RES" \
          "limit=$limit" "workers=$w" "round=$r" || log "burst failed ($limit, w$w, round $r)"
        read -r np1 nt1 tt1 < <(cg_stat)
        read -r c1 s1 < <(python3 "$HERE/probe.py" cpu "$pid")
        d1=$(python3 "$HERE/probe.py" drops "$pid")
        u1=$(python3 "$HERE/probe.py" drops "$up_pid")
        printf '{"phase":"burst_cg","limit":"%s","workers":"%s","round":%d,"nr_periods":%d,"nr_throttled":%d,"throttled_ms":%.1f,"cpu_ms":%.2f,"drops":%d,"upstream_drops":%d}\n' \
          "$limit" "$w" "$r" $((np1 - np0)) $((nt1 - nt0)) "$(awk -v a="$tt0" -v b="$tt1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')" \
          "$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')" $((d1 - d0)) $((u1 - u0)) >> "$RES"
        log "    cgroup: throttled $((nt1 - nt0))/$((np1 - np0)) periods, $(( (tt1 - tt0) / 1000000 )) ms; daemon CPU $(( (s1 - s0) / 1000000 )) ms; socket drops $((d1 - d0)), upstream's $((u1 - u0))"
        sleep 2
      done
      stop_ours
    done
  done

  # what --workers defaults to, started inside the cgroup (the quota is visible from the first instruction)
  local bin label q cpus aff lf
  cg_limit none
  for bin in "$SPLITDNS_BIN" ${SPLITDNS_STATIC_BIN:+"$SPLITDNS_STATIC_BIN"}; do
    if [[ "$bin" == "$SPLITDNS_BIN" ]]; then label=dynamic; else label=static; fi
    cp "$bin" "$exe.new" && mv -f "$exe.new" "$exe"
    for q in $QUOTA_LIMITS taskset; do
      aff="all ($(nproc --all))"
      if [[ $q == taskset ]]; then
        cg_limit none; aff="taskset -c $SERVER_CPU"; cpus="-"
      else
        cg_limit "$q"
        cpus=$([[ $q == none ]] && echo "-" || awk -v m="${q%m}" 'BEGIN { print m / 1000 }')
      fi
      lf="$WORK/logs/default-workers-$label-$q.log"
      if [[ $q == taskset ]]; then
        pid=$(start_sd "default-workers-$label-$q" "$exe" "$CL_PORT" "$CL_ADMIN" default \
          sh -c 'echo $$ > "$0/cgroup.procs" && c=$1 && shift && exec taskset -c "$c" "$@"' "$CG" "$SERVER_CPU") || { stop_ours; continue; }
      else
        pid=$(start_sd "default-workers-$label-$q" "$exe" "$CL_PORT" "$CL_ADMIN" default \
          sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG") || { stop_ours; continue; }
      fi
      printf '{"phase":"default_workers","binary":"%s","limit":"%s","quota_cpus":"%s","affinity":"%s","workers":"%s","threads":"%s"}\n' \
        "$label" "$([[ $q == taskset ]] && echo none || echo "$q")" "$cpus" "$aff" "$(workers_of "$lf" "$pid")" "$(threads_of "$pid")" >> "$RES"
      stop_ours
    done
  done
  cg_limit none
  local want got
  want=$(( $(wc -w <<<"$CPU_LIMITS") * $(wc -w <<<"$CPULIMIT_WORKERS") * BURST_ROUNDS ))
  got=$(grep -c '"phase": "burst"' "$RES" || true)
  [[ "$got" == "$want" ]] || log "WARNING: $got of $want bursts recorded"
}

# ------------------------------------------------------------------ main ----
case "$MODE" in
  idle) run_idle; run_first_answer ;;
  load) run_idle; run_load; run_first_answer ;;
  cpulimit) run_cpulimit ;;
  all) run_idle; run_load; run_first_answer; run_cpulimit ;;
esac

python3 "$HERE/report.py" "$RES" | tee "$OUT/tables.md"
log "done: $OUT/tables.md"
