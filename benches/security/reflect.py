#!/usr/bin/env python3
"""benches/security/reflect.py - is the sidecar an open reflector? (issue 19), stdlib only.

  reflect.py measure --server IP:53 [--count 10]   from wherever it runs (the harness runs it in
                                                   the attacker's namespace, and in the pod's)
  reflect.py probe --server IP:53 --name NAME --deadline S   exit 0 once NAME gets an answer

measure: for each question (a mapped name A, a forwarded name A, big.example.net TXT whose answer
is about 3,900 octets, the mapped name ANY), --count queries with EDNS (UDP size 4096), each
waiting up to 1 s for its reply. Reports per question the replies heard, their rcodes and TC
flags, and the amplification: reply octets / query octets (all replies heard / all queries sent).
"""

import argparse
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import dnslib  # noqa: E402

ANY = 255


def one(server, q, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(q, server)
        t = time.monotonic()
        while True:
            left = timeout - (time.monotonic() - t)
            if left <= 0:
                return None
            s.settimeout(left)
            try:
                msg = s.recv(65536)
            except socket.timeout:
                return None
            if msg[:2] == q[:2]:
                return msg
    finally:
        s.close()


def measure(args, server):
    out = {}
    for label, name, qtype in (("mapped A", args.mapped, dnslib.A), ("forwarded A", "www.example.net", dnslib.A),
                               ("big TXT", "big.example.net", dnslib.TXT), ("mapped ANY", args.mapped, ANY)):
        qbytes = rbytes = heard = tc = 0
        rcodes = {}
        for _ in range(args.count):
            q = dnslib.query(name, qtype, edns=4096)
            qbytes += len(q)
            msg = one(server, q, 1.0)
            if msg is None:
                continue
            heard += 1
            rbytes += len(msg)
            try:
                r = dnslib.parse(msg)
                rcodes[r["rcode"]] = rcodes.get(r["rcode"], 0) + 1
                tc += r["tc"]
            except (ValueError, struct.error, IndexError):
                rcodes["unreadable"] = rcodes.get("unreadable", 0) + 1
        out[label] = {"sent": args.count, "heard": heard, "rcodes": rcodes, "tc": tc,
                      "query_octets": qbytes, "reply_octets": rbytes,
                      "amplification": round(rbytes / qbytes, 2) if qbytes else None}
    print(json.dumps(out))


def probe(args, server):
    end = time.monotonic() + args.deadline
    while time.monotonic() < end:
        msg = one(server, dnslib.query(args.name), 0.5)
        if msg is not None:
            try:
                r = dnslib.parse(msg)
            except (ValueError, struct.error, IndexError):
                r = None
            if r and r["rcode"] == 0 and r["answers_a"]:
                return 0
        time.sleep(0.1)
    return 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["measure", "probe"])
    ap.add_argument("--server", required=True)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--mapped", default="db-0.svc.sx.test")
    ap.add_argument("--name", default="www.example.net")
    ap.add_argument("--deadline", type=float, default=10)
    args = ap.parse_args()
    host, port = args.server.rsplit(":", 1)
    server = (host, int(port))
    if args.what == "probe":
        return probe(args, server)
    measure(args, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
