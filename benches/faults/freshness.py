#!/usr/bin/env python3
"""benches/faults/freshness.py - how fast an alias target's new address reaches the clients, and
how often the sidecar asks the upstream for a name its clients ask all the time (issue 18).

  freshness.py run   --server 127.0.0.1:53 --names pod-7.db.example.com,... --owners host-7,...
                     --addrs 198.18.0.1,198.18.0.2 --rate 10 --duration 40 --change-every 7.3
                     --knotc "ip netns exec sdfz-up knotc -s SOCK" --zone example.net
                     --sniff "ip netns exec sdfz-up PYTHON freshness.py sniff --iface fzu0"
                     --cap 5 --out PREFIX
  freshness.py sniff --iface fzu0 --duration 45 --out FILE      (root: a raw packet socket)

`run` (in the client's namespace, python3 stdlib only):
- asks every name of --names at --rate queries per second each (evenly spread, one socket and a
  random ID per query, no retry, 2 s timeout, A), for --duration seconds: a steady load of the
  same few alias names, as a database asks its peers;
- every --change-every seconds (first after one interval, none in the last cap + 1 s) changes
  the address of every target (--owners, in --zone) in the upstream, alternating between the two
  --addrs, in one knot transaction (`knotc zone-begin / zone-unset / zone-set / zone-commit`: an atomic change with a
  known instant; the records keep the TTL --target-ttl);
- meanwhile --sniff runs in the upstream's namespace and records every DNS query that reaches the
  upstream (name, time).

Written: PREFIX.jsonl (one line per client query: name, t sent, t_recv, outcome, ttl, addr),
PREFIX.changes.jsonl (per change: t = when the commit was started, addr), PREFIX.upstream.jsonl
(the sniffer's lines) and PREFIX.summary.json, the figures:
- delay per change and name: from the start of the commit to the first reply carrying the new
  address after which no reply carries the old one (so a stale cache entry served later counts);
  max and median over every change and name, against the target cap + 0.5 s;
- upstream queries per hot name per cap interval: queries for the targets that reached the
  upstream, per name, divided by duration / cap (target: about one, not one per client query),
  and the time between two of them for one name (median, min, max);
- client-seen TTL (max; never more than the cap) and latency (p50 / p99 / max) of the answers.

`sniff`: an AF_PACKET socket on --iface; for each UDP datagram to port 53 that arrives (not the
ones the host sends), one JSON line {t, qname (lower-cased), qtype}. Stops after --duration.
"""
import argparse
import json
import os
import random
import select
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def read_name(data, i):
    """(lower-cased dotted name, offset after it) of an uncompressed question name."""
    labels = []
    while True:
        ln = data[i]
        if ln == 0:
            return ".".join(labels).lower(), i + 1
        if ln & 0xC0:
            raise ValueError("compressed question name")
        labels.append(data[i + 1:i + 1 + ln].decode("ascii", "replace"))
        i += 1 + ln


def sniff(args):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((args.iface, 0))
    s.settimeout(0.2)
    end = time.monotonic() + args.duration
    out = open(args.out, "w")
    n = 0
    while time.monotonic() < end:
        try:
            frame, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        t = time.time()
        if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8 + 12:
            continue
        if struct.unpack("!H", frame[12:14])[0] != 0x0800:  # IPv4 only (the namespaces have no v6)
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        udp = ip[ihl:]
        if struct.unpack("!H", udp[2:4])[0] != args.port:
            continue
        dns = udp[8:]
        if len(dns) < 12 or dns[2] & 0x80:  # responses are not queries
            continue
        try:
            qname, i = read_name(dns, 12)
            qtype = struct.unpack("!H", dns[i:i + 2])[0]
        except (ValueError, IndexError, struct.error):
            continue
        out.write(json.dumps({"t": round(t, 6), "qname": qname, "qtype": qtype}) + "\n")
        n += 1
    out.close()
    print("sniff: %d queries to port %d on %s" % (n, args.port, args.iface), file=sys.stderr)
    return 0


def knot_change(knotc, zone, owners, ttl, addr):
    """One transaction: every owner's A record becomes addr. Returns (t_start, t_end) or raises."""
    cmds = [["zone-begin", zone]]
    for o in owners:
        cmds.append(["zone-unset", zone, o, "A"])
        cmds.append(["zone-set", zone, o, str(ttl), "A", addr])
    t0 = None
    for c in cmds:
        subprocess.run(knotc + c, check=True, stdout=subprocess.DEVNULL, timeout=10)
    t0 = time.time()
    subprocess.run(knotc + ["zone-commit", zone], check=True, stdout=subprocess.DEVNULL, timeout=10)
    return t0, time.time()


def parse_a(data, qid, question):
    """(rcode, ttl, first A address) of a matching reply, or None when it does not match."""
    if len(data) < 12 + len(question):
        return None
    rid, flags, qd, an = struct.unpack("!HHHH", data[:8])
    if rid != qid or not flags & 0x8000 or qd != 1:
        return None
    if data[12:12 + len(question)].lower() != question.lower():
        return None
    rcode = flags & 0x0F
    i = 12 + len(question)
    for _ in range(an):
        try:
            while True:
                ln = data[i]
                if ln & 0xC0 == 0xC0:
                    i += 2
                    break
                i += 1 + ln
                if ln == 0:
                    break
            rtype, _cls, ttl, rdlen = struct.unpack("!HHIH", data[i:i + 10])
            rdata = data[i + 10:i + 10 + rdlen]
            i += 10 + rdlen
        except (IndexError, struct.error):
            break
        if rtype == 1 and rdlen == 4:
            return rcode, ttl, socket.inet_ntoa(rdata)
    return rcode, None, None


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))]


def run(args):
    server = args.server.rpartition(":")
    server = (server[0], int(server[2]))
    names = args.names.split(",")
    owners = args.owners.split(",")
    addrs = args.addrs.split(",")
    knotc = shlex.split(args.knotc)
    prefix = args.out
    # The sniffer first, so that it sees every upstream query of the run.
    sniff_out = prefix + ".upstream.jsonl"
    sniffer = subprocess.Popen(shlex.split(args.sniff) + ["--duration", str(args.duration + 4),
                                                          "--out", sniff_out])
    time.sleep(1.0)
    # The targets start at the first address (whatever the zone file said).
    knot_change(knotc, args.zone, owners, args.target_ttl, addrs[0])
    changes = [{"t": time.time(), "addr": addrs[0], "initial": True}]
    time.sleep(0.5)

    rnd = random.Random()
    period = 1.0 / (args.rate * len(names))
    poller = select.epoll()
    pending = {}
    recs = []
    t0 = time.monotonic()
    wall0 = time.time() - (time.monotonic() - t0)
    k = 0
    next_change = t0 + args.change_every
    n_change = 1
    stop_send = t0 + args.duration
    while time.monotonic() < stop_send or pending:
        now = time.monotonic()
        # no change later than cap + 1 s before the load ends: each one gets its full window
        if now >= next_change and now < stop_send - (args.cap + 1):
            addr = addrs[n_change % len(addrs)]
            try:
                ts, te = knot_change(knotc, args.zone, owners, args.target_ttl, addr)
                changes.append({"t": ts, "t_end": te, "addr": addr})
            except (subprocess.SubprocessError, OSError) as e:
                print("freshness: change failed: %s" % e, file=sys.stderr)
            n_change += 1
            next_change += args.change_every
        while now < stop_send and t0 + k * period <= now:
            name = names[k % len(names)]
            k += 1
            qid = rnd.getrandbits(16)
            question = encode_name(name) + struct.pack("!HH", 1, 1)
            wire = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            sent = time.monotonic()
            try:
                s.sendto(wire, server)
            except OSError:
                s.close()
                recs.append({"name": name, "t": wall0 + (sent - t0), "outcome": "neterr"})
                continue
            pending[s.fileno()] = (s, name, qid, question, sent)
            poller.register(s.fileno(), select.EPOLLIN)
        now = time.monotonic()
        for fd in [fd for fd, p in pending.items() if now - p[4] >= 2.0]:
            s, name, _qid, _q, sent = pending.pop(fd)
            poller.unregister(fd)
            s.close()
            recs.append({"name": name, "t": wall0 + (sent - t0), "outcome": "timeout"})
        wait = max(0.0, min(t0 + k * period, next_change) - time.monotonic())
        for fd, _ev in poller.poll(min(wait, 0.02)):
            p = pending.get(fd)
            if p is None:
                continue
            s, name, qid, question, sent = p
            try:
                data = s.recv(4096)
            except OSError:
                continue
            got = parse_a(data, qid, question)
            if got is None:
                continue
            recv = time.monotonic()
            pending.pop(fd)
            poller.unregister(fd)
            s.close()
            rcode, ttl, addr = got
            recs.append({"name": name, "t": round(wall0 + (sent - t0), 6),
                         "t_recv": round(wall0 + (recv - t0), 6), "ms": round((recv - sent) * 1000, 3),
                         "outcome": {0: "ok", 2: "servfail", 3: "nxdomain"}.get(rcode, "rcode%d" % rcode),
                         "ttl": ttl, "addr": addr})
        if time.monotonic() > stop_send + 5:
            break
    t_end = wall0 + args.duration
    try:
        sniffer.wait(timeout=args.duration + 30)
    except subprocess.TimeoutExpired:
        sniffer.kill()
    with open(prefix + ".jsonl", "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    with open(prefix + ".changes.jsonl", "w") as f:
        for c in changes:
            f.write(json.dumps(c) + "\n")
    summary = analyse(args, names, owners, recs, changes, sniff_out, wall0, t_end)
    with open(prefix + ".summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    print("freshness: %d queries, %d changes; delay max %s s; upstream queries per name per %g s: %s"
          % (len(recs), len(changes) - 1, summary.get("delay_max"), args.cap,
             summary.get("upstream_per_name_per_cap")), file=sys.stderr)
    return 0


def analyse(args, names, owners, recs, changes, sniff_out, wall0, t_end):
    by_name = {n: sorted((r for r in recs if r["name"] == n and r.get("addr")), key=lambda r: r["t_recv"])
               for n in names}
    delays = []
    per_change = []
    real = [c for c in changes if not c.get("initial")]
    for ci, c in enumerate(real):
        t_next = real[ci + 1]["t"] if ci + 1 < len(real) else t_end + 10
        ds = []
        for n in names:
            rs = [r for r in by_name[n] if c["t"] <= r["t_recv"] < t_next]
            # the first reply after which every reply (until the next change) has the new address
            first_new = None
            for r in rs:
                if r["addr"] == c["addr"]:
                    if first_new is None:
                        first_new = r
                else:
                    first_new = None
            if first_new is not None:
                ds.append(first_new["t_recv"] - c["t"])
            else:
                ds.append(None)
        per_change.append({"t": round(c["t"] - wall0, 3), "addr": c["addr"],
                           "delays": [None if d is None else round(d, 3) for d in ds]})
        delays += ds
    ok = [d for d in delays if d is not None]
    up = []
    if os.path.exists(sniff_out):
        with open(sniff_out) as f:
            up = [json.loads(l) for l in f if l.strip()]
    targets = {"%s.%s" % (o.lower(), args.zone.lower()) for o in owners}
    win = [u for u in up if u["qname"] in targets and wall0 <= u["t"] <= t_end]
    per_name = {t: sum(1 for u in win if u["qname"] == t) for t in sorted(targets)}
    # the time between two upstream queries for one name (the first is the miss that fills it)
    gaps = []
    for t in targets:
        ts = sorted(u["t"] for u in win if u["qname"] == t)
        gaps += [b - a for a, b in zip(ts, ts[1:])]
    intervals = args.duration / args.cap
    lat = [r["ms"] for r in recs if r.get("ms") is not None and r["outcome"] == "ok"]
    ttls = [r["ttl"] for r in recs if r.get("ttl") is not None]
    bad = sum(1 for r in recs if r["outcome"] != "ok")
    return {
        "names": len(names), "rate_per_name": args.rate, "duration": args.duration, "cap": args.cap,
        "target_ttl": args.target_ttl, "changes": len(real), "queries": len(recs), "not_ok": bad,
        "delay_max": round(max(ok), 3) if ok else None,
        "delay_median": round(statistics.median(ok), 3) if ok else None,
        "delay_never": sum(1 for d in delays if d is None),
        "delay_target": args.cap + 0.5,
        "per_change": per_change,
        "upstream_queries": per_name,
        "upstream_per_name_per_cap": round(statistics.mean(per_name.values()) / intervals, 2)
        if per_name else None,
        "upstream_gap_median": round(statistics.median(gaps), 2) if gaps else None,
        "upstream_gap_min": round(min(gaps), 2) if gaps else None,
        "upstream_gap_max": round(max(gaps), 2) if gaps else None,
        "client_queries_per_name_per_cap": round(args.rate * args.cap, 1),
        "ttl_max": max(ttls) if ttls else None,
        "lat_p50": pct(lat, 50), "lat_p99": pct(lat, 99), "lat_max": max(lat) if lat else None,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["run", "sniff"])
    p.add_argument("--server", default="127.0.0.1:53")
    p.add_argument("--names", default="")
    p.add_argument("--owners", default="", help="the targets' owner names in --zone (relative)")
    p.add_argument("--addrs", default="198.18.0.1,198.18.0.2")
    p.add_argument("--zone", default="example.net")
    p.add_argument("--rate", type=float, default=10, help="queries per second per name")
    p.add_argument("--duration", type=float, default=40)
    p.add_argument("--change-every", type=float, default=5.3)
    p.add_argument("--target-ttl", type=int, default=30)
    p.add_argument("--cap", type=float, default=5)
    p.add_argument("--knotc", default="knotc")
    p.add_argument("--sniff", default="")
    p.add_argument("--iface", default="fzu0")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--out", default="freshness")
    args = p.parse_args()
    sys.exit(run(args) if args.mode == "run" else sniff(args))


if __name__ == "__main__":
    main()
