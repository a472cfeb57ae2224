#!/usr/bin/env python3
"""burst.py - an open-loop burst of DNS queries, latency and loss per query class
(python3 standard library only).

  burst.py PORT LOCAL_NAMES_FILE FWD_SALT COUNT SECONDS WAIT OUT.jsonl [KEY=VALUE ...]

Sends COUNT A queries to 127.0.0.1:PORT evenly paced over SECONDS (open loop: the send
times do not depend on the answers), alternating a mapped name (from LOCAL_NAMES_FILE, the
harness's data/local.txt, "name A" per line) and a forwarded name that no cache can have
seen ("f<FWD_SALT>-<i>.dyn.example.net", answered by the upstream's wildcard). Answers are
collected until WAIT seconds after the last send; a query without an answer by then is
lost (a stub resolver would have retried by then: glibc waits 5 s). One socket, one thread,
poll-driven, so a receive timestamp is taken when the answer is read (sub-ms accuracy).

Appends one JSON line: for "local" and "fwd": sent, noerror (NOERROR with an answer),
servfail, other (other RCODE or empty answer), lost, and the sorted latencies in ms of
everything answered; plus the KEY=VALUE pairs.
"""
import json
import os
import select
import socket
import struct
import sys
import time


def qname(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\x00"


def main():
    if len(sys.argv) < 8:
        sys.exit(__doc__)
    port = int(sys.argv[1])
    local = [l.split()[0] for l in open(sys.argv[2]) if l.strip()]
    salt = sys.argv[3]
    count, seconds, wait = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    out = sys.argv[7]
    meta = dict(a.split("=", 1) for a in sys.argv[8:])
    if count > 60000:
        sys.exit("COUNT must be <= 60000 (one DNS ID per query)")

    base = int.from_bytes(os.urandom(2), "big") & 0x0FFF
    pkts, kind = [], []
    for i in range(count):
        if i % 2 == 0:
            name, k = local[(i // 2) % len(local)], "local"
        else:
            name, k = f"f{salt}-{i}.dyn.example.net", "fwd"
        qid = (base + i) & 0xFFFF
        pkts.append(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname(name) + b"\x00\x01\x00\x01")
        kind.append(k)

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (33, socket.SO_RCVBUF):  # 33 = SO_RCVBUFFORCE (root), else capped by rmem_max
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
            break
        except OSError:
            pass
    s.setblocking(False)
    dst = ("127.0.0.1", port)
    t_send = [None] * count
    t_recv = [None] * count
    rcode = [None] * count
    interval = seconds / count
    start = time.perf_counter() + 0.01
    nxt = 0
    answered = 0
    deadline = None
    while True:
        now = time.perf_counter()
        while nxt < count and start + nxt * interval <= now:
            try:
                s.sendto(pkts[nxt], dst)
            except OSError:
                pass  # counted as lost
            t_send[nxt] = time.perf_counter()
            nxt += 1
            if nxt == count:
                deadline = t_send[-1] + wait
        if nxt == count and (answered == count or now >= deadline):
            break
        timeout = (start + nxt * interval - now) if nxt < count else (deadline - now)
        select.select([s], [], [], max(0.0, timeout))
        while True:
            try:
                r = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            t = time.perf_counter()
            if len(r) < 12:
                continue
            rid, flags, _qd, an = struct.unpack(">HHHH", r[:8])
            i = (rid - base) & 0xFFFF
            if i >= count or t_send[i] is None or t_recv[i] is not None:
                continue
            t_recv[i] = t
            rc = flags & 0x000F
            rcode[i] = "noerror" if rc == 0 and an >= 1 else ("servfail" if rc == 2 else "other")
            answered += 1
    s.close()

    rec = {"phase": "burst", "port": port, "count": count, "seconds": seconds, "wait": wait,
           "send_span_s": round(t_send[-1] - t_send[0], 3)}
    rec.update(meta)
    for k in ("local", "fwd"):
        idx = [i for i in range(count) if kind[i] == k]
        lat = sorted(round((t_recv[i] - t_send[i]) * 1000, 3) for i in idx if t_recv[i] is not None)
        rec[k] = {
            "sent": len(idx),
            "noerror": sum(1 for i in idx if rcode[i] == "noerror"),
            "servfail": sum(1 for i in idx if rcode[i] == "servfail"),
            "other": sum(1 for i in idx if rcode[i] == "other"),
            "lost": sum(1 for i in idx if t_recv[i] is None),
            "lat_ms": lat,
        }
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")

    def line(k):
        d = rec[k]
        lat = d["lat_ms"]
        p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
        return (f"{k} p50 {p(0.5):.1f} p99 {p(0.99):.1f} max {p(1):.0f} ms, "
                f"lost {d['lost']}/{d['sent']}, servfail {d['servfail']}")
    tag = " ".join(f"{k}={v}" for k, v in meta.items())
    print(f"  {tag}: {line('local')}; {line('fwd')}", file=sys.stderr)


if __name__ == "__main__":
    main()
