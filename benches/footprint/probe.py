#!/usr/bin/env python3
"""probe.py - /proc measurements for benches/footprint.sh (python3 standard library only).

  probe.py idle SECONDS OUT.jsonl LABEL=PID ...   idle window: wake-ups/s and CPU per idle hour,
                                                  then the memory figures, one JSON line per target
  probe.py mem PHASE OUT.jsonl LABEL=PID ...      memory figures only (e.g. after the load burst)
  probe.py cpu PID                                 "ticks schedstat_ns" of a process (all threads)
  probe.py drops PID                               UDP drops summed over the process's sockets

Definitions (see benches/footprint/RESULTS.md):
  threads       Threads: in /proc/PID/status
  rss           VmRSS
  rss_noso      VmRSS minus the Rss of mappings whose path ends in .so or contains .so.
                (/proc/PID/smaps), i.e. what the process costs beyond shared libraries
  pss           Pss of /proc/PID/smaps_rollup
  wakeups       sum over /proc/PID/task/*/status of voluntary_ctxt_switches +
                nonvoluntary_ctxt_switches, delta over the window / seconds
  cpu_h         utime+stime of /proc/PID/stat, delta over the window, scaled to one hour
                (resolution: one clock tick, 1/CLK_TCK s, per window)
  cpu_h_sched   the same from /proc/PID/task/*/schedstat (nanoseconds on CPU): finer resolution
"""
import json
import os
import re
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def read(path):
    with open(path) as f:
        return f.read()


def tasks(pid):
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def thread_kind(comm):
    """'udp-12' -> 'udp-N', 'up-3-0' -> 'up-N-N': per-thread wake-ups grouped by role"""
    return re.sub(r"\d+", "N", comm.strip())


def snapshot(pid):
    """counters of one process: ctxt switches per task, ticks, schedstat ns"""
    per_kind = {}
    ctxt = 0
    sched_ns = 0
    for tid in tasks(pid):
        base = f"/proc/{pid}/task/{tid}"
        try:
            st = read(f"{base}/status")
            comm = read(f"{base}/comm")
            ss = read(f"{base}/schedstat").split()
        except OSError:
            continue  # thread exited between listdir and read
        n = 0
        for line in st.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                n += int(line.split()[1])
        ctxt += n
        sched_ns += int(ss[0])
        k = "main" if tid == str(pid) else thread_kind(comm)
        per_kind[k] = per_kind.get(k, 0) + n
    stat = read(f"/proc/{pid}/stat")
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # utime stime (fields 14, 15 of stat)
    return {"t": time.monotonic(), "ctxt": ctxt, "ticks": ticks, "sched_ns": sched_ns, "kinds": per_kind}


def memory(pid):
    st = read(f"/proc/{pid}/status")
    m = {}
    for line in st.splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            m[k] = int(v.split()[0])
        elif k == "Threads":
            m[k] = int(v)
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    so_kb = 0
    cur_is_so = False
    cat = "anon"
    by_cat = {}  # where the RSS is: exe (the binary's own pages), .so, [heap], [stack], anon, other
    for line in read(f"/proc/{pid}/smaps").splitlines():
        parts = line.split()
        if not parts:
            continue
        if re.match(r"^[0-9a-f]+-[0-9a-f]+$", parts[0]):
            path = " ".join(parts[5:]) if len(parts) >= 6 else ""
            cur_is_so = path.endswith(".so") or ".so." in path
            if cur_is_so:
                cat = ".so"
            elif exe and path == exe:
                cat = "exe"
            elif path in ("[heap]", "[stack]"):
                cat = path
            elif path == "":
                cat = "anon"
            else:
                cat = "other"
        elif parts[0] == "Rss:":
            kb = int(parts[1])
            by_cat[cat] = by_cat.get(cat, 0) + kb
            if cur_is_so:
                so_kb += kb
    pss = None
    for line in read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return {
        "threads": m.get("Threads"),
        "rss_kb": m.get("VmRSS"),
        "hwm_kb": m.get("VmHWM"),
        "rss_anon_kb": m.get("RssAnon"),
        "rss_file_kb": m.get("RssFile"),
        "so_kb": so_kb,
        "rss_noso_kb": m.get("VmRSS", 0) - so_kb,
        "pss_kb": pss,
        "rss_by_kind_kb": by_cat,
    }


def targets(args):
    out = []
    for a in args:
        label, _, pid = a.rpartition("=")
        out.append((label, int(pid)))
    return out


def alive(pid):
    return os.path.exists(f"/proc/{pid}/stat")


def cmd_idle(argv):
    seconds = float(argv[0])
    out = argv[1]
    tg = targets(argv[2:])
    s0 = {label: snapshot(pid) for label, pid in tg if alive(pid)}
    time.sleep(seconds)
    s1 = {label: snapshot(pid) for label, pid in tg if alive(pid)}
    with open(out, "a") as f:
        for label, pid in tg:
            if label not in s0 or label not in s1:
                rec = {"phase": "idle", "label": label, "pid": pid, "error": "process gone"}
            else:
                a, b = s0[label], s1[label]
                dt = b["t"] - a["t"]
                kinds = {k: round((v - a["kinds"].get(k, 0)) / dt, 2) for k, v in b["kinds"].items()}
                rec = {
                    "phase": "idle",
                    "label": label,
                    "pid": pid,
                    "idle_s": round(dt, 2),
                    "wakeups": round((b["ctxt"] - a["ctxt"]) / dt, 2),
                    "wakeups_by_thread": kinds,
                    "cpu_h": round((b["ticks"] - a["ticks"]) / CLK_TCK * 3600 / dt, 2),
                    "cpu_h_sched": round((b["sched_ns"] - a["sched_ns"]) / 1e9 * 3600 / dt, 3),
                    "tick_s": round(1 / CLK_TCK, 4),
                }
                rec.update(memory(pid))
            f.write(json.dumps(rec) + "\n")


def cmd_mem(argv):
    phase = argv[0]
    out = argv[1]
    with open(out, "a") as f:
        for label, pid in targets(argv[2:]):
            rec = {"phase": phase, "label": label, "pid": pid}
            if alive(pid):
                rec.update(memory(pid))
            else:
                rec["error"] = "process gone"
            f.write(json.dumps(rec) + "\n")


def cmd_cpu(argv):
    s = snapshot(int(argv[0]))
    print(s["ticks"], s["sched_ns"])


def cmd_drops(argv):
    """UDP drops (receive buffer full, ...) summed over the sockets the process holds"""
    pid = int(argv[0])
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = read(table).splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            p = line.split()
            if len(p) >= 13 and p[9] in inodes:
                drops += int(p[-1])
    print(drops)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    fn = {"idle": cmd_idle, "mem": cmd_mem, "cpu": cmd_cpu, "drops": cmd_drops}.get(cmd)
    if not fn:
        sys.exit(__doc__)
    fn(sys.argv[2:])


if __name__ == "__main__":
    main()
