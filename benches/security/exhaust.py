#!/usr/bin/env python3
"""benches/security/exhaust.py - one exhaustion attack on a sidecar, with canaries (issue 19).

Runs in the pod's namespace. Three phases: --baseline s quiet, --duration s under attack,
--after s quiet again. Throughout:
  - a UDP canary and a TCP canary (a new connection each time: "a new client") ask the mapped
    name every 0.5 s, 1 s timeout each;
  - optionally a third canary (--work-name, UDP, 1 s timeout, every 0.5 s): a working alias name
    (or, for peers without alias rules, a forwarded name) that must keep being answered;
  - with --admin, kubelet-style probes: GET /live every 1 s, 1 s timeout (connect + answer);
  - VmRSS and VmHWM of --pid every 0.5 s (and the RSS of its child processes: dnsmasq forks one
    per TCP connection).
Attacks (--mode):
  slowloris   --conns connections from --atk-ns to --admin, each sending its request headers one
              octet every --drip s and never finishing them; every closed one is reopened
  tcplock     --conns connections to --server that pipeline queries for the mapped name until
              their socket blocks, never read a reply, keep writing what the socket takes; every
              closed one is reopened
  bigudp      --rate forwarded UDP queries a second of --size octets (EDNS padding, RFC 7830),
              each a new name under silent.example.net (the upstream never answers)
  aliasflood  --rate UDP queries a second, each a new name from --flood-template ({n}: a counter)
Prints one JSON object with per-phase figures.
"""

import argparse
import errno
import json
import os
import random
import select
import socket
import statistics
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import dnslib  # noqa: E402

T0 = time.monotonic()
STOP = threading.Event()


def now():
    return time.monotonic() - T0


class Phases:
    def __init__(self, baseline, duration):
        self.a, self.b = baseline, baseline + duration

    def of(self, t):
        return "base" if t < self.a else ("attack" if t < self.b else "after")


def udp_ask(server, name, timeout):
    """Latency (s) of a NOERROR answer with an A record, or an error string."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        q = dnslib.query(name)
        t = time.monotonic()
        s.sendto(q, server)
        while True:
            left = timeout - (time.monotonic() - t)
            if left <= 0:
                return "timeout"
            s.settimeout(left)
            try:
                msg = s.recv(4096)
            except socket.timeout:
                return "timeout"
            r = dnslib.parse(msg)
            if r["id"] != struct.unpack(">H", q[:2])[0]:
                continue
            if r["rcode"] == 0 and r["answers_a"]:
                return time.monotonic() - t
            return "rcode%d" % r["rcode"]
    except (OSError, ValueError, struct.error) as e:
        return type(e).__name__
    finally:
        s.close()


def tcp_ask(server, name, timeout):
    t = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(server)
        q = dnslib.query(name)
        s.sendall(struct.pack(">H", len(q)) + q)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
            left = timeout - (time.monotonic() - t)
            if left <= 0:
                return "timeout"
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                return "closed"
            buf += chunk
        r = dnslib.parse(buf[2:])
        if r["rcode"] == 0 and r["answers_a"]:
            return time.monotonic() - t
        return "rcode%d" % r["rcode"]
    except socket.timeout:
        return "timeout"
    except (OSError, ValueError, struct.error) as e:
        return type(e).__name__
    finally:
        s.close()


def live_probe(addr, timeout):
    t = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(addr)
        s.sendall(b"GET /live HTTP/1.1\r\nHost: probe\r\nUser-Agent: kube-probe/1.31\r\nConnection: close\r\n\r\n")
        buf = b""
        while b"\r\n" not in buf:
            left = timeout - (time.monotonic() - t)
            if left <= 0:
                return "timeout"
            s.settimeout(left)
            chunk = s.recv(1024)
            if not chunk:
                return "closed"
            buf += chunk
        if buf.split(b"\r\n", 1)[0].split()[1:2] == [b"200"]:
            return time.monotonic() - t
        return "status " + buf.split(b"\r\n", 1)[0].decode("ascii", "replace")
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()


def every(period, fn):
    """Calls fn() every PERIOD s (from a fixed schedule) until STOP."""
    nxt = time.monotonic()
    while not STOP.is_set():
        fn()
        nxt += period
        d = nxt - time.monotonic()
        if d > 0:
            STOP.wait(d)
        else:
            nxt = time.monotonic()


def rss_kib(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    kids = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for c in f.read().split():
                    with open(f"/proc/{c}/status") as g:
                        for line in g:
                            if line.startswith("VmRSS:"):
                                kids += int(line.split()[1])
    except OSError:
        pass
    out["children"] = kids
    return out


# ----------------------------------------------------------------- attacks ----
class Attack:
    def __init__(self, args):
        self.args = args
        # sent: queries (bigudp, aliasflood); octets: what the connections' send() took, most
        # of it only into our own kernel send buffers (tcplock, slowloris)
        self.stats = {"opened": 0, "reopened": 0, "sent": 0, "octets": 0, "send_errors": 0, "open_at_end": 0}

    # slowloris and tcplock: a set of non-blocking connections kept open and fed
    def conn(self, target):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(target)
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            return None
        self.stats["opened"] += 1
        return s

    def keep(self, target, feed, period):
        socks = [self.conn(target) for _ in range(self.args.conns)]
        first = [True] * len(socks)
        while not STOP.is_set() and now() < self.args.baseline + self.args.duration:
            for i, s in enumerate(socks):
                dead = s is None
                if not dead:
                    try:
                        if self.args.mode == "slowloris":
                            r, _, _ = select.select([s], [], [], 0)
                            if r:  # an answer (408, 431) or a close: either way our request is over
                                s.recv(65536)
                                dead = True
                        if not dead:
                            n = feed(s, first[i])
                            first[i] = False
                            self.stats["octets"] += n
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError as e:
                        if e.errno in (errno.ENOTCONN,):
                            pass  # still connecting
                        else:
                            dead = True
                if dead:
                    if s is not None:
                        s.close()
                    socks[i] = self.conn(target)
                    first[i] = True
                    self.stats["reopened"] += 1
            time.sleep(period)
        self.stats["open_at_end"] = sum(1 for s in socks if s is not None)
        for s in socks:
            if s is not None:
                s.close()

    def slowloris(self):
        dnslib.setns(self.args.atk_ns)  # this thread only: the attacker is another pod
        host, port = self.args.admin.rsplit(":", 1)
        head = b"GET /live HTTP/1.1\r\nHost: x\r\n"

        def feed(s, first):
            return s.send(head if first else b"X")  # a header that never ends

        self.keep((host, int(port)), feed, self.args.drip)

    def tcplock(self):
        host, port = self.args.server
        q = dnslib.query(self.args.canary_name)
        burst = (struct.pack(">H", len(q)) + q) * 64

        def feed(s, first):
            n = 0
            while True:  # until the socket takes no more
                try:
                    n += s.send(burst)
                except BlockingIOError:
                    return n

        self.keep((host, port), feed, 0.2)

    def paced(self, make):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # replies are not read
        s.setblocking(False)
        start = time.monotonic()
        n = 0
        while not STOP.is_set() and now() < self.args.baseline + self.args.duration:
            due = int((time.monotonic() - start) * self.args.rate) + 1
            while n < due:
                try:
                    s.sendto(make(n), self.args.server)
                    self.stats["sent"] += 1
                except (BlockingIOError, OSError):
                    self.stats["send_errors"] += 1
                n += 1
            time.sleep(0.001)
        s.close()

    def bigudp(self):
        tag = random.randrange(1 << 30)
        self.paced(lambda n: dnslib.query(f"b{n}-{tag:x}.silent.example.net", edns=1232, size=self.args.size))

    def aliasflood(self):
        tag = random.randrange(1 << 20)
        self.paced(lambda n: dnslib.query(self.args.flood_template.format(n=n + (tag << 20))))

    def run(self):
        wait = self.args.baseline - now()
        if wait > 0:
            time.sleep(wait)
        getattr(self, self.args.mode)()


# ----------------------------------------------------------------- summary ----
def canary_summary(recs, phase):
    rs = [r for t, r in recs if phase is None or phases.of(t) == phase]
    lat = sorted(r for r in rs if isinstance(r, float))
    fails = [r for r in rs if not isinstance(r, float)]
    out = {"n": len(rs), "fail": len(fails)}
    if lat:
        out["p50_ms"] = round(statistics.median(lat) * 1000, 2)
        out["max_ms"] = round(lat[-1] * 1000, 1)
    if fails:
        kinds = {}
        for f in fails:
            kinds[f] = kinds.get(f, 0) + 1
        out["why"] = kinds
    run = best = 0
    for r in rs:
        run = run + 1 if not isinstance(r, float) else 0
        best = max(best, run)
    out["max_consecutive_fail"] = best
    return out


def main():
    global phases
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True, choices=["slowloris", "tcplock", "bigudp", "aliasflood", "none"])
    ap.add_argument("--server", default="127.0.0.1:53")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--canary-name", default="db-0.svc.sx.test")
    ap.add_argument("--work-name")
    ap.add_argument("--admin")
    ap.add_argument("--atk-ns", default="sdsx-atk")
    ap.add_argument("--baseline", type=float, default=5)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--after", type=float, default=10)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--drip", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=1024)
    ap.add_argument("--size", type=int, default=60000)
    ap.add_argument("--flood-template", default="dead-{n}.db.example.com")
    args = ap.parse_args()
    host, port = args.server.rsplit(":", 1)
    args.server = (host, int(port))
    phases = Phases(args.baseline, args.duration)
    end = args.baseline + args.duration + args.after

    udp, tcp, work, live, rss = [], [], [], [], []
    threads = [
        threading.Thread(target=every, args=(0.5, lambda: udp.append((now(), udp_ask(args.server, args.canary_name, 1.0))))),
        threading.Thread(target=every, args=(0.5, lambda: tcp.append((now(), tcp_ask(args.server, args.canary_name, 1.0))))),
        threading.Thread(target=every, args=(0.5, lambda: rss.append((now(), rss_kib(args.pid))))),
    ]
    if args.work_name:
        threads.append(threading.Thread(target=every, args=(0.5, lambda: work.append((now(), udp_ask(args.server, args.work_name, 1.0))))))
    if args.admin:
        ah, ap_ = args.admin.rsplit(":", 1)
        threads.append(threading.Thread(target=every, args=(1.0, lambda: live.append((now(), live_probe((ah, int(ap_)), 1.0))))))
    attack = Attack(args)
    if args.mode != "none":
        threads.append(threading.Thread(target=attack.run))
    for t in threads:
        t.daemon = True
        t.start()
    time.sleep(max(0.0, end - now()))
    STOP.set()
    for t in threads:
        t.join(timeout=5)

    out = {"mode": args.mode, "attack": attack.stats}
    for key, recs in (("udp", udp), ("tcp", tcp), ("work", work), ("live", live)):
        if recs:
            out[key] = {ph: canary_summary(recs, ph) for ph in ("base", "attack", "after")}
    samples = [(t, r) for t, r in rss if r]
    if samples:
        base = [r["VmRSS"] for t, r in samples if phases.of(t) == "base"]
        att = [r for t, r in samples if phases.of(t) == "attack"]
        aft = [r["VmRSS"] for t, r in samples if phases.of(t) == "after"]
        out["rss_kib"] = {
            "base": int(statistics.median(base)) if base else None,
            "peak_attack": max((r["VmRSS"] for r in att), default=None),
            "after_end": aft[-1] if aft else None,
            "hwm_end": samples[-1][1].get("VmHWM"),
            # Of VmRSS: the heap and stacks (RssAnon), and pages of the binary (RssFile: code the
            # attack ran, faulted in from the page cache; clean, the kernel reclaims it at will).
            "anon_base": int(statistics.median(r.get("RssAnon", 0) for t, r in samples if phases.of(t) == "base"))
            if base
            else None,
            "anon_after_end": [r.get("RssAnon") for t, r in samples if phases.of(t) == "after"][-1] if aft else None,
            "file_after_end": [r.get("RssFile") for t, r in samples if phases.of(t) == "after"][-1] if aft else None,
            "children_peak": max((r["children"] for r in att), default=0),
        }
    else:
        out["rss_kib"] = None
        out["note"] = "process gone"
    if rss and rss[-1][1] is None:
        out["died"] = True
    print(json.dumps(out))


if __name__ == "__main__":
    main()
