# benches/netns-procs.sh - the process and namespace helpers of the namespace benches
# (benches/faults.sh, benches/security.sh), sourced by them. Needs `log` and `$PIDS` (a folder)
# set by the caller; STOP_WAIT_TENTHS (default 50) is how long `stop` waits after TERM.
#
# Every process a bench starts is recorded in $PIDS/NAME.pid and stopped by that id only.

spawn() { # NAME LOG CMD... (in the background; `ip netns exec` execs, so $! is the daemon)
  local name=$1 logf=$2
  shift 2
  "$@" >>"$logf" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}
stop() { # NAME
  local f="$PIDS/$1.pid" pid i
  [[ -f "$f" ]] || return 0
  pid=$(<"$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < ${STOP_WAIT_TENTHS:-50}; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "$1 (pid $pid) ignored TERM; KILL"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$f"
}
stop_all() { # every process still recorded in $PIDS
  local f
  for f in "$PIDS"/*.pid; do [[ -e "$f" ]] && stop "$(basename "$f" .pid)"; done
}
remove_ns() { # NS: stop what runs in it (all started by the bench), then delete it
  local ns=$1 pid
  ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || return 0
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true # takes its veths and iptables rules with it
}
