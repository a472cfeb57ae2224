#!/usr/bin/env python3
"""report.py - markdown tables from the results.jsonl of benches/footprint.sh
(python3 standard library only).

  report.py RESULTS.jsonl
"""
import json
import math
import sys
from collections import OrderedDict, defaultdict

GOAL_DYN_NOSO_MIB = 2.5   # dynamic build: VmRSS minus shared-library pages, 300 names
GOAL_STATIC_RSS_MIB = 4.0  # static build (the image): VmRSS


def mib(kb):
    return "-" if kb is None else f"{kb / 1024:.2f}"


def pct(vals, q):
    """nearest-rank percentile of a sorted list"""
    if not vals:
        return None
    k = max(0, min(len(vals) - 1, math.ceil(q * len(vals)) - 1))
    return vals[k]


def ms(v):
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.0f}"


def table(head, rows, align=None):
    out = ["| " + " | ".join(head) + " |"]
    out.append("|" + "|".join(align or ["---"] + ["---:"] * (len(head) - 1)) + "|")
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def main():
    recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    targets = OrderedDict((r["label"], r) for r in recs if r["phase"] == "target")
    by = defaultdict(dict)
    for r in recs:
        if r["phase"] in ("idle", "after_load", "first_answer", "load"):
            by[r["phase"]][r["label"]] = r
    meta = [r for r in recs if r["phase"] == "meta"]
    if meta:
        m = meta[0]
        print(f"_{m.get('date', '')}; kernel {m.get('kernel', '')}; {m.get('cpus', '')} CPUs; "
              f"{m.get('names', '')} mapped names; idle window {m.get('idle', '')} s_\n")
        for k in ("splitdns_bin", "splitdns_static_bin", "peers_versions"):
            if m.get(k):
                print(f"- {k}: `{m[k]}`")
        for b in (r for r in recs if r["phase"] == "busy"):
            print(f"- machine {b['pct']}% busy (all CPUs, 1 s) {b['when']}; load average {b['loadavg']}")
        print()

    if by["idle"]:
        print("### Idle footprint (after one local and one forwarded query, then an idle window)\n")
        rows = []
        for label, t in targets.items():
            i = by["idle"].get(label)
            if not i:
                continue
            fa = by["first_answer"].get(label, {})
            if "error" in i:
                rows.append([label, t.get("workers_asked", ""), "gone"] + [""] * 8)  # 11 columns
                continue
            goal = ""
            if t.get("kind") == "splitdns-dynamic":
                goal = ("yes" if i["rss_noso_kb"] / 1024 <= GOAL_DYN_NOSO_MIB else "NO") + f" (excl .so <= {GOAL_DYN_NOSO_MIB})"
            elif t.get("kind") == "splitdns-static":
                goal = ("yes" if i["rss_kb"] / 1024 <= GOAL_STATIC_RSS_MIB else "NO") + f" (VmRSS <= {GOAL_STATIC_RSS_MIB:g})"
            fa_s = "-" if "median_ms" not in fa else f"{fa['median_ms']} / {fa['max_ms']}" + (
                f" ({fa['failed']} failed)" if fa.get("failed") else "")
            rows.append([
                label, t.get("workers", "-"), i["threads"], mib(i["rss_kb"]), mib(i["rss_noso_kb"]),
                mib(i["pss_kb"]), f"{i['wakeups']:.1f}", f"{i['cpu_h']:.2f}", f"{i['cpu_h_sched']:.3f}",
                fa_s, goal,
            ])
        print(table(["target", "workers", "threads", "VmRSS MiB", "RSS excl .so MiB", "PSS MiB",
                     "wake-ups/s", "CPU s/idle h (stat)", "CPU s/idle h (schedstat)",
                     "first answer ms (median / max)", "goal met"], rows,
                    ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---"]))
        tick = next((i.get("tick_s") for i in by["idle"].values() if "tick_s" in i), 0.01)
        idle = next((i.get("idle_s") for i in by["idle"].values() if "idle_s" in i), 60)
        print(f"\nCPU s/idle h (stat) has a resolution of one clock tick per window: "
              f"{tick} s x 3600 / {idle:g} s = {tick * 3600 / idle:.2f} s/h; the schedstat column is exact.\n")

        print("Wake-ups per second by thread (digits in thread names replaced by N; summed over the threads of a kind):\n")
        rows = []
        for label, t in targets.items():
            i = by["idle"].get(label)
            if not i or "wakeups_by_thread" not in i:
                continue
            kinds = sorted(i["wakeups_by_thread"].items(), key=lambda kv: -kv[1])
            rows.append([label, ", ".join(f"{k} {v:g}" for k, v in kinds if v > 0) or "none"])
        print(table(["target", "wake-ups/s by thread kind"], rows, ["---", "---"]))
        print()

        rows = []
        for label, t in targets.items():
            i = by["idle"].get(label)
            if not i or "rss_by_kind_kb" not in i:
                continue
            k = i["rss_by_kind_kb"]
            rows.append([label, i["threads"], mib(i["rss_kb"])] +
                        [mib(k.get(c, 0)) for c in ("exe", ".so", "[heap]", "anon", "[stack]", "other")])
        if rows:
            print("Where the idle VmRSS is (Rss summed by mapping, /proc/PID/smaps; exe = the binary's own file pages, "
                  "anon = anonymous mappings other than [heap]: thread stacks, allocator arenas, mmap'd tables):\n")
            print(table(["target", "threads", "VmRSS MiB", "exe", ".so", "[heap]", "anon", "[stack]", "other"], rows))
            print()

    if by["after_load"]:
        print("### After the load burst (dnsperf, local names then forwarded names, each for the load duration)\n")
        rows = []
        for label, t in targets.items():
            a = by["after_load"].get(label)
            if not a:
                continue
            if "error" in a:
                rows.append([label, "gone"] + [""] * 10)  # 12 columns
                continue
            i = by["idle"].get(label, {})
            l = by["load"].get(label, {})
            rows.append([
                label, t.get("workers", "-"), a["threads"], mib(a["rss_kb"]), mib(i.get("rss_kb")),
                mib(a["rss_noso_kb"]), mib(a["pss_kb"]), mib(a["hwm_kb"]),
                l.get("local_qps", "-"), l.get("local_lost", "-"), l.get("fwd_qps", "-"), l.get("fwd_lost", "-"),
            ])
        print(table(["target", "workers", "threads", "VmRSS MiB", "(idle VmRSS)", "RSS excl .so MiB", "PSS MiB",
                     "VmHWM MiB", "local QPS", "local lost", "fwd QPS", "fwd lost"], rows,
                    ["---"] + ["---:"] * 11))
        print()

    bursts = [r for r in recs if r["phase"] == "burst"]
    cgs = {(str(r["limit"]), str(r["workers"]), str(r["round"])): r for r in recs if r["phase"] == "burst_cg"}
    if bursts:
        b0 = bursts[0]
        print(f"### A burst of {b0['count']} queries in {b0['seconds']:g} s under a CPU limit "
              f"(half mapped names, half forwarded; answers awaited {b0['wait']:g} s after the last send)\n")
        cells = OrderedDict()
        for b in bursts:
            cells.setdefault((b["limit"], b["workers"]), []).append(b)
        rows = []
        for (limit, workers), bs in cells.items():
            row = [limit, workers, len(bs)]
            for k in ("local", "fwd"):
                lat = sorted(x for b in bs for x in b[k]["lat_ms"])
                sent = sum(b[k]["sent"] for b in bs)
                lost = sum(b[k]["lost"] for b in bs)
                sf = sum(b[k]["servfail"] + b[k]["other"] for b in bs)
                row += [ms(pct(lat, 0.5)), ms(pct(lat, 0.99)), ms(lat[-1] if lat else None),
                        f"{lost}/{sent}" + (f" (+{sf} SERVFAIL)" if sf else "")]
            cg = [cgs.get((str(limit), str(workers), str(b["round"]))) for b in bs]
            cg = [c for c in cg if c]
            if cg:
                n = len(cg)
                row += [
                    f"{sum(c['nr_throttled'] for c in cg) / n:.0f}/{sum(c['nr_periods'] for c in cg) / n:.0f}",
                    f"{sum(c['throttled_ms'] for c in cg) / n:.0f}",
                    f"{sum(c['cpu_ms'] for c in cg) / n:.1f}",
                    f"{sum(c['cpu_ms'] for c in cg) / n * 1000 / b0['count']:.1f}",
                    f"{sum(c['drops'] for c in cg) / n:.0f}",
                    f"{sum(c.get('upstream_drops', 0) for c in cg) / n:.0f}",
                ]
            rows.append(row)
        print(table(["CPU limit", "workers", "bursts", "local p50 ms", "local p99 ms", "local max ms", "local lost",
                     "fwd p50 ms", "fwd p99 ms", "fwd max ms", "fwd lost",
                     "throttled/periods per burst", "throttled ms per burst", "daemon CPU ms per burst",
                     "CPU us/query", "socket drops per burst", "upstream socket drops per burst"], rows,
                    ["---"] + ["---:"] * 16))
        print("\nLatencies are pooled over the bursts of a row; lost = no answer at all; "
              "throttled/periods and throttled ms are deltas of the cgroup's cpu.stat over one burst (mean); "
              "socket drops = the drops column of /proc/net/udp summed over the daemon's sockets "
              "(upstream: over the knot upstream's sockets); SERVFAIL answers are counted next to the lost ones.\n")

    dw = [r for r in recs if r["phase"] == "default_workers"]
    if dw:
        print("### What `--workers` defaults to under a CPU quota (daemon started inside the cgroup)\n")
        rows = [[r["binary"], r["limit"], r["quota_cpus"], r["affinity"], r["workers"], r["threads"]] for r in dw]
        print(table(["binary", "cgroup limit", "quota in CPUs", "CPU affinity", "workers picked", "threads"], rows,
                    ["---", "---", "---:", "---", "---:", "---:"]))
        print()


if __name__ == "__main__":
    main()
