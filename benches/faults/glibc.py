#!/usr/bin/env python3
"""benches/faults/glibc.py - what an application sees: glibc getaddrinfo() through the sidecar.

  glibc.py --duration 20 --rate 5 --zone example.net --out g.jsonl

Run inside the client namespace, where /etc/resolv.conf (bind-mounted by `ip netns exec` from
/etc/netns/NS/resolv.conf) names only the sidecar, with glibc's default options (timeout:5
attempts:2). Each lookup is socket.getaddrinfo(name, 80, AF_UNSPEC, SOCK_STREAM) in its own thread,
started at a fixed pace, so glibc sends A and AAAA in parallel on one socket, as applications do.
Names alternate between ones with A and AAAA (*.any) and ones with only A (*.v4), each never asked
before (with --template, e.g. "pod-{n}.db.example.com" for an alias rule, the names are made from
it: n = --base + 2 * i for a name with A and AAAA, + 1 for one with only A). One JSON line per
lookup: t (wall-clock start), name, dual (has AAAA), ms, result (ok | EAI_NODATA | EAI_AGAIN |
EAI_NONAME | EAI_FAIL | ... | hung), families (on ok: "4", "6", "46").
A lookup still running 30 s after the last one started is written as `hung`.
"""
import argparse
import json
import os
import socket
import sys
import threading
import time

EAI = {}
for _n in dir(socket):
    if _n.startswith("EAI_"):
        EAI.setdefault(getattr(socket, _n), _n)
EAI.setdefault(-5, "EAI_NODATA")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--rate", type=float, default=5)
    p.add_argument("--zone", default="example.net")
    p.add_argument("--out", default="/dev/stdout")
    p.add_argument("--template", default="")
    p.add_argument("--base", type=int, default=0)
    args = p.parse_args()

    tag = "g%x%x" % (os.getpid(), int(time.time()) & 0xFFFF)
    results = []
    lock = threading.Lock()

    def lookup(name, dual, wall):
        t = time.monotonic()
        rec = {"t": round(wall, 6), "name": name, "dual": dual}
        try:
            infos = socket.getaddrinfo(name, 80, socket.AF_UNSPEC, socket.SOCK_STREAM)
            fams = set()
            for fam, *_ in infos:
                fams.add("4" if fam == socket.AF_INET else "6")
            rec["result"] = "ok"
            rec["families"] = "".join(sorted(fams))
        except socket.gaierror as e:
            rec["result"] = EAI.get(e.errno, "EAI_%s" % e.errno)
        except OSError as e:
            rec["result"] = "oserror:%s" % e.errno
        rec["ms"] = round((time.monotonic() - t) * 1000, 3)
        with lock:
            results.append(rec)

    n = int(args.duration * args.rate)
    threads = []
    t0 = time.monotonic()
    wall0 = time.time()
    for i in range(n):
        due = t0 + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        dual = i % 2 == 0
        if args.template:
            name = args.template.format(n=args.base + 2 * i + (0 if dual else 1))
        else:
            name = "%s-%d.%s.%s" % (tag, i, "any" if dual else "v4", args.zone)
        th = threading.Thread(target=lookup, args=(name, dual, wall0 + (time.monotonic() - t0)),
                              daemon=True)
        th.start()
        threads.append((th, name, dual, wall0 + (time.monotonic() - t0)))
    deadline = time.monotonic() + 30
    for th, *_ in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    with lock:
        done = {r["name"] for r in results}
        for th, name, dual, wall in threads:
            if name not in done:
                results.append({"t": round(wall, 6), "name": name, "dual": dual, "result": "hung",
                                "ms": None})
        with open(args.out, "w") as f:
            for r in sorted(results, key=lambda r: r["t"]):
                f.write(json.dumps(r) + "\n")
    print("glibc: %d lookups" % n, file=sys.stderr)
    os._exit(0)  # never wait for a hung resolver thread


if __name__ == "__main__":
    main()
