#!/usr/bin/env python3
"""benches/faults/client.py - the paced UDP client of benches/faults.sh (python3 stdlib only).

  client.py run   --server 127.0.0.1:53 --duration 20 --rate 50 --mapped-rate 10 --out q.jsonl
  client.py probe --server 127.0.0.1:53 --name www.example.net --deadline 10

`run` sends queries at a fixed pace for --duration seconds: --rate forwarded queries per second,
each for a name never asked before (unique label under the zone's wildcards, so no cache helps),
and --mapped-rate queries per second for the names the sidecar answers itself. Every query gets
its own socket (so its own source port) and a random ID, is sent once (NO retry) and waits
--timeout seconds. One JSON line per query: kind (fwd|mapped|hot), qname, qtype, t (wall-clock
send time), outcome (ok|nxdomain|servfail|refused|rcodeN|timeout|neterr), ms (latency, null on
timeout), ttl (of the first answer record, null without one).

Alias rules: with --fwd-template (e.g. "pod-{n}.db.example.com") the forwarded stream asks names
made from it instead, n = --fwd-base + 2 * sequence number, plus 1 for the kinds that have only an
A record (the zone gives host-n an AAAA only for even n), so every one is still asked once and
each one is a cache miss in the sidecar: an upstream lookup. --hot NAME/TYPE,... with --hot-rate
adds a stream of the same few names again and again (kind hot), which the sidecar answers from
its cache (and, while the upstream is unreachable, stale: TTL 30).
A reply counts only with the right ID, the QR bit and the same question; anything else arriving
on the socket is ignored (and counted in the summary line as `bogus`).

`probe` asks one name every 20 ms until a NOERROR answer with data arrives, or --deadline passes
(exit 1). Used to wait until a sidecar (or the upstream) is serving.

Everything is bounded in time: `run` stops sending at --duration and gives up on the last query
--timeout seconds later.
"""
import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import time

QTYPES = {"A": 1, "AAAA": 28, "NS": 2, "SOA": 6}
RCODES = {0: "ok", 2: "servfail", 3: "nxdomain", 5: "refused"}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def make_query(qid, name, qtype):
    question = encode_name(name) + struct.pack("!HH", QTYPES[qtype], 1)
    # RD set, like a stub resolver; no EDNS.
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question, question


def parse_reply(data, qid, question):
    """rcode and answer count of a matching reply, or None when it does not match the query."""
    if len(data) < 12 + len(question):
        return None
    rid, flags, qd, an = struct.unpack("!HHHH", data[:8])
    if rid != qid or not flags & 0x8000 or qd != 1:
        return None
    if data[12:12 + len(question)].lower() != question.lower():
        return None
    return flags & 0x000F, an


def first_answer(data, question):
    """(TTL, RDATA) of the first answer record of a matching reply, or None."""
    i = 12 + len(question)
    try:
        # owner name: labels ending in a zero octet or a compression pointer (RFC 1035 §4.1.4)
        while True:
            ln = data[i]
            if ln & 0xC0 == 0xC0:
                i += 2
                break
            i += 1 + ln
            if ln == 0:
                break
        _rtype, _rclass, ttl, rdlen = struct.unpack("!HHIH", data[i:i + 10])
        rdata = data[i + 10:i + 10 + rdlen]
        return (ttl, rdata) if len(rdata) == rdlen else None
    except (IndexError, struct.error):
        return None


def parse_server(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def run(args):
    server = parse_server(args.server)
    rnd = random.Random()
    tag = "%x%x" % (os.getpid(), int(time.time()) & 0xFFFF)
    # Forwarded names: alternate between a name with A+AAAA (*.any) and one with only A (*.v4),
    # and between A and AAAA questions, so every reply kind the zone has is exercised.
    fwd_kinds = [("any", "A"), ("v4", "A"), ("any", "AAAA"), ("any", "A")]
    mapped = [(n, t) for n, t in (x.split("/") for x in args.mapped.split(","))] if args.mapped else []
    hot = [(n, t) for n, t in (x.split("/") for x in args.hot.split(","))] if args.hot else []

    schedule = []  # (offset, kind)
    if args.rate > 0:
        n = int(args.duration * args.rate)
        schedule += [(i / args.rate, "fwd") for i in range(n)]
    if args.mapped_rate > 0 and mapped:
        n = int(args.duration * args.mapped_rate)
        # Offset by half a period so the two streams interleave.
        schedule += [((i + 0.5) / args.mapped_rate, "mapped") for i in range(n)]
    if args.hot_rate > 0 and hot:
        n = int(args.duration * args.hot_rate)
        schedule += [((i + 0.25) / args.hot_rate, "hot") for i in range(n)]
    schedule.sort()

    out = open(args.out, "w")
    poller = select.epoll()
    pending = {}  # fd -> dict
    bogus = 0
    neterr = 0
    seq = 0
    t0 = time.monotonic() + 0.05
    wall0 = time.time() + (t0 - time.monotonic())
    idx = 0
    hard_stop = t0 + args.duration + args.timeout + 5

    def finish(fd, outcome, ms, ttl=None):
        q = pending.pop(fd)
        try:
            poller.unregister(fd)
        except OSError:
            pass
        q["sock"].close()
        out.write(json.dumps({"kind": q["kind"], "qname": q["qname"], "qtype": q["qtype"],
                              "t": round(q["wall"], 6), "outcome": outcome,
                              "ms": None if ms is None else round(ms, 3), "ttl": ttl}) + "\n")

    hot_seq = 0

    while (idx < len(schedule) or pending) and time.monotonic() < hard_stop:
        now = time.monotonic()
        # Send everything that is due.
        while idx < len(schedule) and t0 + schedule[idx][0] <= now:
            kind = schedule[idx][1]
            idx += 1
            seq += 1
            if kind == "fwd":
                sub, qtype = fwd_kinds[seq % len(fwd_kinds)]
                if args.fwd_template:
                    n = args.fwd_base + 2 * seq + (1 if sub == "v4" else 0)
                    qname = args.fwd_template.format(n=n)
                else:
                    qname = "q%s-%d.%s.%s" % (tag, seq, sub, args.zone)
            elif kind == "hot":
                qname, qtype = hot[hot_seq % len(hot)]
                hot_seq += 1
            else:
                qname, qtype = mapped[seq % len(mapped)]
            qid = rnd.getrandbits(16)
            wire, question = make_query(qid, qname, qtype)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            q = {"kind": kind, "qname": qname, "qtype": qtype, "qid": qid, "question": question,
                 "sock": s, "sent": time.monotonic(), "wall": wall0 + (time.monotonic() - t0)}
            pending[s.fileno()] = q
            try:
                s.sendto(wire, server)
            except OSError:
                neterr += 1
                finish(s.fileno(), "neterr", None)
                continue
            poller.register(s.fileno(), select.EPOLLIN)
        # Expire what has waited long enough.
        now = time.monotonic()
        for fd in [fd for fd, q in pending.items() if now - q["sent"] >= args.timeout]:
            finish(fd, "timeout", None)
        # Wait for replies until the next send or the next expiry.
        nxt = [t0 + schedule[idx][0]] if idx < len(schedule) else []
        if pending:
            nxt.append(min(q["sent"] for q in pending.values()) + args.timeout)
        wait = max(0.0, min(nxt) - time.monotonic()) if nxt else 0.01
        for fd, _ev in poller.poll(min(wait, 0.05)):
            q = pending.get(fd)
            if q is None:
                continue
            while fd in pending:
                try:
                    data = q["sock"].recv(4096)
                except BlockingIOError:
                    break
                except OSError:  # ICMP error surfaced on the socket: keep waiting, like a stub
                    break
                got = parse_reply(data, q["qid"], q["question"])
                if got is None:
                    bogus += 1
                    continue
                rcode, an = got
                fa = first_answer(data, q["question"]) if an else None
                finish(fd, RCODES.get(rcode, "rcode%d" % rcode), (time.monotonic() - q["sent"]) * 1000,
                       fa[0] if fa else None)
    for fd in list(pending):
        finish(fd, "timeout", None)
    out.close()
    print("client: %d queries sent, %d bogus replies ignored, %d send errors" % (seq, bogus, neterr),
          file=sys.stderr)


def probe(args):
    server = parse_server(args.server)
    deadline = time.monotonic() + args.deadline
    rnd = random.Random()
    while time.monotonic() < deadline:
        qid = rnd.getrandbits(16)
        wire, question = make_query(qid, args.name, args.qtype)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.25)
        try:
            # Connected, so that ICMP port unreachable (nothing listening yet) ends the try at once.
            s.connect(server)
            s.send(wire)
            end = time.monotonic() + 0.25
            while time.monotonic() < end:
                data = s.recv(4096)
                got = parse_reply(data, qid, question)
                if got and got[0] == 0 and got[1] > 0:
                    return 0
                if got:
                    break
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.02)
    print("probe: no answer for %s from %s within %ss" % (args.name, args.server, args.deadline),
          file=sys.stderr)
    return 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["run", "probe"])
    p.add_argument("--server", default="127.0.0.1:53")
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--rate", type=float, default=50)
    p.add_argument("--mapped-rate", type=float, default=10)
    p.add_argument("--mapped", default="", help="NAME/TYPE,NAME/TYPE,... answered by the sidecar")
    p.add_argument("--fwd-template", default="", help="forwarded names from this, e.g. pod-{n}.db.example.com")
    p.add_argument("--fwd-base", type=int, default=0)
    p.add_argument("--hot", default="", help="NAME/TYPE,... asked again and again (kind hot)")
    p.add_argument("--hot-rate", type=float, default=0)
    p.add_argument("--zone", default="example.net")
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--out", default="/dev/stdout")
    p.add_argument("--name", default="www.example.net")
    p.add_argument("--qtype", default="A")
    p.add_argument("--deadline", type=float, default=10)
    args = p.parse_args()
    sys.exit(run(args) if args.mode == "run" else probe(args))


if __name__ == "__main__":
    main()
