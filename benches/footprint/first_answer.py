#!/usr/bin/env python3
"""first_answer.py - start to first answer of a DNS daemon (python3 standard library only).

  first_answer.py LABEL PORT NAME RUNS OUT.jsonl -- CMD ARGS...

For each run: take the time, start CMD (fork + exec), send an A query for NAME to
127.0.0.1:PORT every 2 ms until a NOERROR answer with at least one answer record
arrives, take the time again, SIGTERM the daemon (SIGKILL after 5 s). Any daemon; an
RCODE other than NOERROR, or an empty answer, does not count as an answer. A run that gets
no answer in 10 s counts as a failure. Appends one JSON line: median / min / max in ms.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import time


def query(qid, name):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split("."))
    return q + b"\x00\x00\x01\x00\x01"


def good(r, qid):
    if len(r) < 12:
        return False
    rid, flags, _qd, an = struct.unpack(">HHHH", r[:8])
    return rid == qid and flags & 0x8000 and flags & 0x000F == 0 and an >= 1


def one_run(cmd, port, name, qid):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.002)
    q = query(qid, name)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ms = None
    try:
        deadline = t0 + 10
        while time.perf_counter() < deadline:
            try:
                s.sendto(q, ("127.0.0.1", port))
                r = s.recv(1500)
                if good(r, qid):
                    ms = (time.perf_counter() - t0) * 1000
                    break
            except OSError:
                pass
            if p.poll() is not None:
                break  # the daemon exited
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        s.close()
    return ms


def main():
    if len(sys.argv) < 8 or sys.argv[6] != "--":
        sys.exit(__doc__)
    label, port, name, runs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    cmd = sys.argv[7:]
    res, failed = [], 0
    for i in range(runs):
        ms = one_run(cmd, port, name, 0x1200 + i)
        if ms is None:
            failed += 1
        else:
            res.append(ms)
        time.sleep(0.05)
    res.sort()
    rec = {"phase": "first_answer", "label": label, "runs": runs, "failed": failed}
    if res:
        rec.update(median_ms=round(res[len(res) // 2], 1), min_ms=round(res[0], 1), max_ms=round(res[-1], 1))
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"{label}: start to first answer median {rec.get('median_ms')} ms, max {rec.get('max_ms')} ms, "
          f"{failed} failed", file=sys.stderr)


if __name__ == "__main__":
    main()
