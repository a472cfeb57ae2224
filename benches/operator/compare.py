#!/usr/bin/env python3
"""benches/operator/compare.py - the KurrentDB operator's DNS sidecar (kurrent-io/dns-sidecar, "the
incumbent") and splitdns, side by side in one run, with the same operator JSON rules (issue 17).

Both daemons get a config file written here with the same rules, each its own loopback listen
address, and the same upstream: a knotd started here serving the targets (cluster.local, TTL 5)
and the public names (my-domain.com, my-domain). Every row is measured with real queries (raw
sockets, dnspython for encoding and decoding); nothing is assumed. See README.md beside this file.

    INCUMBENT=/path/to/dns SPLITDNS=target/release/splitdns benches/operator/compare.py

Environment (defaults):
    INCUMBENT       the incumbent's binary; unset or empty: its column is skipped
    SPLITDNS        splitdns binary ($CARGO_TARGET_DIR or target/)/release/splitdns; "none": skipped
    SPLITDNS_FORMAT json (splitdns PATH-TO-JSON, the operator's file) or yaml (the YAML mapping
                    with the same rules, --listen/--upstream flags; for builds before the JSON mode)
    POD_RESOLV      1 (default when root): run both daemons in a private mount namespace whose
                    /etc/resolv.conf is shaped like a pod's (sidecar first, cluster DNS second,
                    search list, ndots:5); the incumbent's Go resolver reads it. 0: the host's file
    OUT             also write the Markdown report to this file
    LAT_N           queries per latency round, default 500
    LAT_ROUNDS      latency rounds, default 5 (the median round is shown)
    OUTAGE_WAIT     how long a client waits while the upstream is down, default 120 s
    PORT53          1 (default when root and free): everything on port 53 (glibc client rows)

Every wait is bounded; only processes started here are signalled, by PID; all listen on 127.0.0.x.
"""

import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

KNOT_ADDR = "127.0.0.53"
INCUMBENT_ADDR = "127.0.0.21"
SPLITDNS_ADDR = "127.0.0.22"
LAT_N = int(os.environ.get("LAT_N", "500"))
LAT_ROUNDS = int(os.environ.get("LAT_ROUNDS", "5"))
GLIBC = False           # set in main(): the glibc rows need port 53 and a mount namespace
OUTAGE_WAIT = float(os.environ.get("OUTAGE_WAIT", "120"))     # client wait during an outage
POINTER_WAIT = 30                                            # watch after the pointer-loop packet

# --- the rules: the incumbent's own test (dns/dns_test.go) plus operator-typical ones -----------

# The operator escapes the FQDN template `x\({podName}|y.another-{podName}.{domain}` into these
# regexes (Go raw strings in dns_test.go; json.dumps escapes them for the file as Go's encoder does).
RULES = [
    {"host": r"x\\\(kdb-([0-9]+)\|y\.another-kdb-([0-9]+)\.my-domain",
     "result": "kdb-${1}.kdb.ns.svc.cluster.local", "regex": True},
    {"host": r"x\\\(kdb-replica-([0-9]+)\|y\.another-kdb-replica-([0-9]+)\.my-domain",
     "result": "kdb-replica-${1}.kdb-replica.ns.svc.cluster.local", "regex": True},
    # what the operator writes for a plain FQDN template `{podName}.{domain}`
    {"host": r"kdb-([0-9]+)\.my-domain\.com",
     "result": "kdb-${1}.kdb.ns.svc.cluster.local", "regex": True},
    # the same for a template `{podName}.{name}.{domain}` (the issue's `KDB-2.Kdb.My-Domain.com`)
    {"host": r"kdb-([0-9]+)\.kdb\.my-domain\.com",
     "result": "kdb-${1}.kdb.ns.svc.cluster.local", "regex": True},
    # splitDNSExtraRules: host -> IP
    {"host": "far-0.my-domain.com", "result": "10.1.2.3"},
    {"host": "far-1.my-domain.com.", "result": "10.1.2.4"},         # written with a trailing dot
    {"host": "far-6.my-domain.com", "result": "fd00::6"},
    # a result written with a trailing dot
    {"host": r"dot-([0-9]+)\.my-domain\.com",
     "result": "kdb-${1}.kdb.ns.svc.cluster.local.", "regex": True},
]
FAR0 = next(r for r in RULES if r["host"] == "far-0.my-domain.com")
# The rules after the change written while running (rows "rule changed in the file").
RULES_CHANGED = [dict(r) for r in RULES]
next(r for r in RULES_CHANGED if r["host"] == "far-0.my-domain.com")["result"] = "10.1.2.99"
RULES_CHANGED.append({"host": "new-0.my-domain.com", "result": "10.1.2.50"})

# The incumbent's test FQDNs, as labels (the first label holds `\`, `(` and `|`).
TEST_FQDN = dns.name.Name([b"x\\(kdb-0|y", b"another-kdb-0", b"my-domain", b""])
TEST_FQDN_REPLICA = dns.name.Name([b"x\\(kdb-replica-1|y", b"another-kdb-replica-1", b"my-domain", b""])
TEST_BAD_FQDN = dns.name.Name([b"x\\(kdb-|y", b"another-kdb-", b"my-domain", b""])

CLUSTER_ZONE = """$TTL 5
@ SOA ns.cluster.local. hostmaster.cluster.local. 1 3600 600 86400 5
@ NS ns
ns A 127.0.0.53
kdb-0.kdb.ns.svc A 10.42.0.10
kdb-1.kdb.ns.svc A 10.42.0.11
kdb-2.kdb.ns.svc A 10.42.0.12
kdb-3.kdb.ns.svc A 10.42.0.13
kdb-3.kdb.ns.svc AAAA fd00::13
kdb-replica-1.kdb-replica.ns.svc A 10.42.1.11
""" + "".join(f"kdb-{i}.kdb.ns.svc A 10.43.{i // 256}.{i % 256}\n" for i in range(1000, 10000))

PUBLIC_ZONE = """$TTL 300
@ SOA ns.my-domain.com. hostmaster.my-domain.com. 1 3600 600 86400 300
@ NS ns
ns A 127.0.0.53
www A 203.0.113.80
kdb-0 A 203.0.113.10
kdb-0 MX 10 mail.my-domain.com.
kdb-0 TXT "public kdb-0"
kdb-1 A 203.0.113.11
kdb-2 A 203.0.113.12
kdb-3 A 203.0.113.13
kdb-2.kdb A 203.0.113.112
far-0 A 198.51.100.3
"""
TLD_ZONE = """$TTL 300
@ SOA ns.my-domain. hostmaster.my-domain. 1 3600 600 86400 300
@ NS ns
ns A 127.0.0.53
"""

POD_RESOLV_CONF = """nameserver 127.0.0.1
nameserver 10.96.0.10
search ns.svc.cluster.local svc.cluster.local cluster.local
options ndots:5
"""

STARTED = []            # every Popen started here, stopped at exit


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def port_free(addr, port):
    """Whether addr:port can be bound for UDP and TCP right now."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            u.bind((addr, port))
            t.bind((addr, port))
        return True
    except OSError:
        return False


def free_port(addr):
    """A port free for UDP and TCP on addr (bound, read, closed)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((addr, 0))
            port = u.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind((addr, port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


# --- queries -------------------------------------------------------------------------------------

class Reply:
    def __init__(self, msg=None, err=None, ms=0.0, raw=None):
        self.msg, self.err, self.ms, self.raw = msg, err, ms, raw

    @property
    def rcode(self):
        return dns.rcode.to_text(self.msg.rcode()) if self.msg else None

    def addresses(self):
        if not self.msg:
            return []
        return [rd.to_text() for rrset in self.msg.answer for rd in rrset
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)]


def make_query(qname, qtype, edns=False):
    if isinstance(qname, str):
        qname = dns.name.from_text(qname)
    q = dns.message.make_query(qname, qtype, use_edns=0 if edns else False, payload=1232)
    q.id = random.randrange(65536)
    return q


def ask(addr, qname, qtype="A", *, tcp=False, edns=False, timeout=3.0, wire=None):
    """One query over a fresh socket; the reply parsed, or what went wrong."""
    q = make_query(qname, qtype, edns) if wire is None else None
    data = q.to_wire() if wire is None else wire
    qid = struct.unpack("!H", data[:2])[0]
    t0 = time.monotonic()
    try:
        if tcp:
            with socket.create_connection(addr, timeout=timeout) as s:
                s.sendall(struct.pack("!H", len(data)) + data)
                head = _recv_exact(s, 2)
                raw = _recv_exact(s, struct.unpack("!H", head)[0])
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(addr)
                s.send(data)
                deadline = t0 + timeout
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout()
                    s.settimeout(left)
                    raw = s.recv(65535)
                    if len(raw) >= 2 and struct.unpack("!H", raw[:2])[0] == qid:
                        break
    except ConnectionRefusedError:
        return Reply(err="connection refused" if tcp else "ICMP port unreachable",
                     ms=(time.monotonic() - t0) * 1000)
    except (socket.timeout, TimeoutError):
        return Reply(err=f"no reply in {timeout:g} s", ms=(time.monotonic() - t0) * 1000)
    except OSError as e:
        return Reply(err=f"{type(e).__name__}: {e}", ms=(time.monotonic() - t0) * 1000)
    ms = (time.monotonic() - t0) * 1000
    try:
        msg = dns.message.from_wire(raw)
    except Exception as e:      # noqa: BLE001 - a reply we cannot read is itself a result
        return Reply(err=f"unreadable reply ({type(e).__name__})", ms=ms, raw=raw)
    return Reply(msg=msg, ms=ms, raw=raw)


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("closed")
        buf += chunk
    return buf


def describe(r, *, flags=True, timing=False, question=False):
    """A reply in one table cell: rcode, records with TTLs, SOA or not, AA, OPT, EDE."""
    if r.err:
        return r.err + (f" (after {r.ms / 1000:.2f} s)" if timing else "")
    m = r.msg
    parts = [r.rcode]
    recs = []
    for rrset in m.answer:
        for rd in rrset:
            recs.append(f"{dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()} TTL {rrset.ttl}")
    if recs:
        parts.append(", ".join(recs) if len(recs) <= 3 else f"{len(recs)} records: " + ", ".join(recs[:3]) + ", ...")
    else:
        parts.append("no answer")
        soa = [rs for rs in m.authority if rs.rdtype == dns.rdatatype.SOA]
        parts.append(f"SOA in authority (TTL {soa[0].ttl})" if soa else "no SOA")
    if flags:
        parts.append("AA" if m.flags & dns.flags.AA else "AA clear")
        parts.append("OPT" if m.edns >= 0 else "no OPT")
    ede = [o for o in m.options if o.otype == dns.edns.EDE]
    for o in ede:
        parts.append(f"EDE {o.code}")
    if question and m.question:
        parts.append(f"question echoed as `{m.question[0].name.to_text()}`")
    if timing:
        parts.append(f"after {r.ms / 1000:.2f} s" if r.ms >= 100 else f"after {r.ms:.1f} ms")
    return ", ".join(parts)


def latency_rounds(daemons, names_of_round):
    """latency_all() LAT_ROUNDS times; per daemon the round with the median p99, and every
    round's p99."""
    per = [[] for _ in daemons]
    for r in range(LAT_ROUNDS):
        for j, res in enumerate(latency_all(daemons, names_of_round(r), raw=True)):
            per[j].append(res)
    cells = []
    for runs in per:
        ok = [x for x in runs if x[0] is not None]
        if not ok:
            cells.append(runs[0][2])
            continue
        ok.sort(key=lambda x: x[1])
        med = ok[len(ok) // 2]
        cells.append(med[2] + (f"; p99 of the {len(runs)} rounds: "
                               + " / ".join(f"{x[1]:.2f}" for x in runs if x[1] is not None)
                               if len(runs) > 1 else ""))
    return cells


def latency_all(daemons, names, qtype="A", raw=False):
    """Sequential queries, each daemon in turn for every name (one connected socket each): p50 and
    p99 of every reply per daemon, and what the replies were."""
    socks = []
    for d in daemons:
        d.ensure()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(d.addr)
        socks.append(s)
    lat = [[] for _ in daemons]
    kinds = [{} for _ in daemons]
    lost = [0] * len(daemons)
    try:
        for i, n in enumerate(names):
            order = list(range(len(daemons)))
            if i % 2:
                order.reverse()         # neither always goes first
            for j in order:
                s = socks[j]
                wire = make_query(n, qtype).to_wire()
                t0 = time.monotonic()
                s.send(wire)
                s.settimeout(2.0)
                try:
                    while True:
                        raw = s.recv(65535)
                        if raw[:2] == wire[:2]:
                            break
                except OSError:             # timeout, ICMP port unreachable
                    lost[j] += 1
                    continue
                lat[j].append((time.monotonic() - t0) * 1000)
                ancount = struct.unpack("!H", raw[6:8])[0] if len(raw) >= 8 else 0
                kind = dns.rcode.to_text(raw[3] & 0x0F) if len(raw) >= 4 else "short"
                if kind == "NOERROR" and ancount == 0:
                    kind = "NODATA"
                kinds[j][kind] = kinds[j].get(kind, 0) + 1
    finally:
        for s in socks:
            s.close()
    cells = []
    for j in range(len(daemons)):
        if not lat[j]:
            cells.append((None, None, f"no reply to any of {len(names)}"))
            continue
        v = sorted(lat[j])
        p = lambda q: v[min(len(v) - 1, int(q * len(v)))]   # noqa: E731
        what = ", ".join(f"{c} {k}" for k, c in sorted(kinds[j].items(), key=lambda kv: -kv[1]))
        cells.append((p(0.50), p(0.99), f"p50 {p(0.50):.2f} ms, p99 {p(0.99):.2f} ms ({what}"
                      + (f", {lost[j]} unanswered" if lost[j] else "") + ")"))
    return cells if raw else [c[2] for c in cells]


# --- the upstream: knotd ---------------------------------------------------------------------------

class Knot:
    def __init__(self, work, port=None):
        self.dir = os.path.join(work, "knot")
        os.makedirs(self.dir)
        self.port = port or free_port(KNOT_ADDR)
        self.sock = os.path.join(self.dir, "knot.sock")
        for name, text in (("cluster.local.zone", CLUSTER_ZONE), ("my-domain.com.zone", PUBLIC_ZONE),
                           ("my-domain.zone", TLD_ZONE)):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        with open(os.path.join(self.dir, "knot.conf"), "w") as f:
            f.write(f"""server:
  rundir: {self.dir}
  listen: {KNOT_ADDR}@{self.port}
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
log:
  - target: stderr
    any: warning
mod-stats:
  - id: s
    query-type: on
template:
  - id: default
    storage: {self.dir}
    global-module: mod-stats/s
zone:
  - domain: cluster.local
    file: cluster.local.zone
  - domain: my-domain.com
    file: my-domain.com.zone
  - domain: my-domain
    file: my-domain.zone
""")
        self.proc = None
        self.base = {}          # counters of the knotd instances before the current one

    @property
    def addr(self):
        return (KNOT_ADDR, self.port)

    def start(self):
        logf = open(os.path.join(self.dir, "knotd.log"), "a")
        self.proc = subprocess.Popen(["knotd", "-c", os.path.join(self.dir, "knot.conf")],
                                     stdout=logf, stderr=subprocess.STDOUT)
        STARTED.append(self.proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = ask(self.addr, "kdb-0.kdb.ns.svc.cluster.local", timeout=0.3)
            if r.msg and r.addresses():
                return
            time.sleep(0.05)
        raise RuntimeError("knotd did not start: see " + logf.name)

    def stop(self):
        """Stop knotd for real (its port closes: ICMP port unreachable to whoever asks)."""
        # keep its counters: a new instance starts from zero
        cur = self.counters()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.base = cur

    def counters(self):
        """Queries received by qtype, summed over every knotd instance of this run."""
        out = subprocess.run(["knotc", "-s", self.sock, "stats"], capture_output=True,
                             text=True, timeout=10).stdout
        c = {}
        for line in out.splitlines():
            if line.startswith("mod-stats.query-type["):
                k = line.split("[", 1)[1].split("]", 1)[0]
                c[k] = int(line.rsplit("=", 1)[1])
        total = dict(self.base)
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
        return total


def delta(before, after):
    d = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    return {k: v for k, v in d.items() if v}


def fmt_counts(d):
    a = d.get("A", 0) + d.get("AAAA", 0)
    parts = [f"{d.get(k, 0)} {k}" for k in ("A", "AAAA") if d.get(k)]
    other = {k: v for k, v in d.items() if k not in ("A", "AAAA")}
    s = f"**{a}**" + (f" ({', '.join(parts)})" if parts else "")
    if other:
        s += "; besides: " + ", ".join(f"{v} {k}" for k, v in sorted(other.items()))
    return s


# --- the two daemons ---------------------------------------------------------------------------------

class Daemon:
    def __init__(self, kind, binary, work, knot, fmt="json", pod_resolv=None, port=None):
        self.kind, self.binary, self.knot, self.fmt = kind, binary, knot, fmt
        self.dir = os.path.join(work, kind)
        os.makedirs(self.dir)
        self.ip = INCUMBENT_ADDR if kind == "incumbent" else SPLITDNS_ADDR
        self.port = port or free_port(self.ip)
        self.admin_port = free_port("127.0.0.1") if kind == "splitdns" else None
        self.pod_resolv = pod_resolv
        # a ConfigMap volume's layout: config/dns.conf -> ..data/dns.conf, ..data -> ..<timestamp>
        self.cfgdir = os.path.join(self.dir, "config")
        os.makedirs(self.cfgdir)
        self.cfgname = "dns.conf" if fmt == "json" else "mapping.yaml"
        self.config = os.path.join(self.cfgdir, self.cfgname)
        self.logpath = os.path.join(self.dir, "stderr.log")
        self.proc = None
        self.starts = 0

    @property
    def addr(self):
        return (self.ip, self.port)

    def write_config(self, rules, text=None):
        """Write the config the way kubelet updates a ConfigMap volume (its AtomicWriter): a new
        hidden timestamped directory, then the `..data` symlink renamed over to point at it; the
        visible `dns.conf -> ..data/dns.conf` never changes."""
        if text is None:
            text = self.render(rules)
        data = os.path.join(self.cfgdir, "..data")
        old = os.readlink(data) if os.path.islink(data) else None
        ts = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{random.randrange(10**9)}"
        os.makedirs(os.path.join(self.cfgdir, ts))
        with open(os.path.join(self.cfgdir, ts, self.cfgname), "w") as f:
            f.write(text)
        tmp = os.path.join(self.cfgdir, "..data_tmp")
        os.symlink(ts, tmp)
        os.rename(tmp, data)
        if not os.path.islink(self.config):
            os.symlink(os.path.join("..data", self.cfgname), self.config)
        if old:
            shutil.rmtree(os.path.join(self.cfgdir, old), ignore_errors=True)

    def render(self, rules, listen=None, extra=None):
        listen = listen or f"{self.ip}:{self.port}"
        resolver = f"{KNOT_ADDR}:{self.knot.port}"
        if self.fmt == "json":
            doc = {"listen": listen, "resolver": resolver, "rules": rules}
            if extra:
                doc.update(extra)
            return json.dumps(doc, indent=2) + "\n"
        # YAML mapping with the same rules (splitdns before the JSON mode)
        lines = ["rules:"]
        for r in rules:
            lines.append(f"  - host: '{r['host']}'")
            lines.append(f"    result: '{r['result']}'")
            if r.get("regex"):
                lines.append("    regex: true")
        return "\n".join(lines) + "\n"

    def argv(self, config=None, listen=None):
        config = config or self.config
        if self.kind == "incumbent":
            return [self.binary, config]
        if self.fmt == "json":
            return [self.binary, config, "--admin", f"127.0.0.1:{self.admin_port}"]
        return [self.binary, "--mapping", config, "--listen", listen or f"{self.ip}:{self.port}",
                "--upstream", f"{KNOT_ADDR}:{self.knot.port}",
                "--admin", f"127.0.0.1:{self.admin_port}"]

    def spawn(self, argv, logpath):
        if self.pod_resolv:
            argv = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                    self.pod_resolv] + argv
        logf = open(logpath, "a")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        STARTED.append(p)
        return p

    def start(self, rules=RULES):
        if self.proc is None or not os.path.exists(self.config):
            self.write_config(rules)
        self.starts += 1
        with open(self.logpath, "a") as f:
            f.write(f"--- start {self.starts} ---\n")
        self.proc = self.spawn(self.argv(), self.logpath)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start ({self.proc.returncode}): see {self.logpath}")
            r = ask(self.addr, "far-0.my-domain.com", timeout=0.3)
            if r.msg:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not answer within 10 s: see {self.logpath}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ensure(self):
        """Restart after a row that killed it (noted by the row itself)."""
        if not self.alive():
            self.start()

    def stop(self, sig=signal.SIGTERM, wait=10):
        if not self.alive():
            return None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return f"still running after {wait} s (killed)"
        return rc, time.monotonic() - t0

    def log_tail(self, n=3, since=None):
        try:
            with open(self.logpath, errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        if since is not None:
            text = text[since:]
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("---")]
        return " / ".join(lines[:n])

    def log_size(self):
        try:
            return os.path.getsize(self.logpath)
        except OSError:
            return 0

    def status(self):
        out = {}
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    out[k] = v.strip()
        except OSError:
            pass
        return out

    def tcp_listeners(self):
        """TCP sockets this process listens on (its fds matched against /proc/net/tcp)."""
        inodes = set()
        try:
            for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
                try:
                    t = os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")
                except OSError:
                    continue
                if t.startswith("socket:["):
                    inodes.add(t[8:-1])
        except OSError:
            return None
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        c = line.split()
                        if c[3] == "0A" and c[9] in inodes:       # LISTEN
                            hexip, hexport = c[1].split(":")
                            port = int(hexport, 16)
                            if len(hexip) == 8:
                                ip = socket.inet_ntoa(struct.pack("<I", int(hexip, 16)))
                            else:
                                ip = "[v6]"
                            found.append(f"{ip}:{port}")
            except OSError:
                continue
        return sorted(set(found))


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return None, str(e)


# --- the rows ------------------------------------------------------------------------------------------

class Table:
    def __init__(self, daemons):
        self.daemons = daemons
        self.rows = []

    def add(self, label, cells):
        self.rows.append((label, cells))
        log(f"  {label}: " + " | ".join(cells))

    def each(self, label, fn, parallel=False):
        """One row: fn(daemon) -> cell, for every daemon (in threads when the row is slow)."""
        cells = [None] * len(self.daemons)

        def run(i, d):
            try:
                d.ensure()
                cells[i] = fn(d)
                if not d.alive() and "exit" not in cells[i]:
                    # a crash nobody asked for: say so here (the next row restarts it)
                    cells[i] += f" **[process exited, code {d.proc.returncode}]**"
            except Exception as e:      # noqa: BLE001 - a harness error is shown in the cell
                cells[i] = f"harness error: {type(e).__name__}: {e}"
        if parallel:
            ts = [threading.Thread(target=run, args=(i, d)) for i, d in enumerate(self.daemons)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(timeout=120)
        else:
            for i, d in enumerate(self.daemons):
                run(i, d)
        self.add(label, [c if c is not None else "harness: no result" for c in cells])

    def markdown(self):
        head = "| behaviour | " + " | ".join(d.kind for d in self.daemons) + " |"
        sep = "|---|" + "---|" * len(self.daemons)
        body = ["| " + lab + " | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
                for lab, cells in self.rows]
        return "\n".join([head, sep] + body)


def rows(t, knot):
    # ---------------------------------------------------------------- answers
    t.each("incumbent's test FQDN `x\\(kdb-0\\|y.another-kdb-0.my-domain` A",
           lambda d: describe(ask(d.addr, TEST_FQDN), question=True))
    t.each("its replica rule, `x\\(kdb-replica-1\\|y.another-kdb-replica-1.my-domain` A",
           lambda d: describe(ask(d.addr, TEST_FQDN_REPLICA)))
    t.each("its must-not-match FQDN `x\\(kdb-\\|y.another-kdb-.my-domain` A",
           lambda d: describe(ask(d.addr, TEST_BAD_FQDN)))
    t.each("regex alias `kdb-2.my-domain.com` A (target A 10.42.0.12, TTL 5)",
           lambda d: describe(ask(d.addr, "kdb-2.my-domain.com")))
    t.each("TTLs of `kdb-1.my-domain.com` A asked 3 times, 1 s apart (target TTL 5)",
           lambda d: _ttls(d, "kdb-1.my-domain.com"))
    t.each("regex alias AAAA, A-only target (`kdb-0.my-domain.com` AAAA)",
           lambda d: describe(ask(d.addr, "kdb-0.my-domain.com", "AAAA")))
    t.each("regex alias AAAA, dual-stack target (`kdb-3.my-domain.com` AAAA)",
           lambda d: describe(ask(d.addr, "kdb-3.my-domain.com", "AAAA")))
    t.each("literal IP rule `far-0.my-domain.com` A",
           lambda d: describe(ask(d.addr, "far-0.my-domain.com")))
    t.each("literal IP rule, other family (`far-0` AAAA)",
           lambda d: describe(ask(d.addr, "far-0.my-domain.com", "AAAA")))
    t.each("literal IPv6 rule `far-6.my-domain.com` AAAA",
           lambda d: describe(ask(d.addr, "far-6.my-domain.com", "AAAA")))
    t.each("regex alias `kdb-2.kdb.my-domain.com` A (rule `kdb-([0-9]+)\\.kdb\\.my-domain\\.com`)",
           lambda d: describe(ask(d.addr, "kdb-2.kdb.my-domain.com")))
    t.each("upper-case spelling `KDB-2.Kdb.My-Domain.com` A (public: 203.0.113.112)",
           lambda d: describe(ask(d.addr, "KDB-2.Kdb.My-Domain.com"), question=True))
    t.each("upper-case spelling `KDB-2.My-Domain.com` A",
           lambda d: describe(ask(d.addr, "KDB-2.My-Domain.com")))
    t.each("upper-case spelling of a literal rule `FAR-0.My-Domain.com` A",
           lambda d: describe(ask(d.addr, "FAR-0.My-Domain.com")))
    t.each("rule host written with a trailing dot (`far-1.my-domain.com.`), asked `far-1.my-domain.com` A",
           lambda d: describe(ask(d.addr, "far-1.my-domain.com")))
    t.each("rule result written with a trailing dot (`dot-2.my-domain.com` -> `kdb-2....cluster.local.`) A",
           lambda d: describe(ask(d.addr, "dot-2.my-domain.com")))
    t.each("regex matching only a suffix of the name (`a.kdb-2.my-domain.com` A; public: NXDOMAIN)",
           lambda d: describe(ask(d.addr, "a.kdb-2.my-domain.com")))
    t.each("name no rule matches (`www.my-domain.com` A; public: 203.0.113.80)",
           lambda d: describe(ask(d.addr, "www.my-domain.com", "A")))
    t.each("name no rule matches, over TCP",
           lambda d: describe(ask(d.addr, "www.my-domain.com", "A", tcp=True)))
    for qt in ("MX", "TXT", "SOA", "ANY"):
        t.each(f"mapped name, other type: `kdb-0.my-domain.com` {qt} (public has MX, TXT)",
               lambda d, qt=qt: describe(ask(d.addr, "kdb-0.my-domain.com", qt)))
    t.each("literal-rule name, other type: `far-0.my-domain.com` MX",
           lambda d: describe(ask(d.addr, "far-0.my-domain.com", "MX")))
    t.each("regex alias over TCP (`kdb-2.my-domain.com` A)",
           lambda d: describe(ask(d.addr, "kdb-2.my-domain.com", tcp=True)))
    t.each("EDNS query (payload 1232): regex alias A",
           lambda d: describe(ask(d.addr, "kdb-2.my-domain.com", edns=True)))
    t.each("EDNS query: literal rule AAAA (NODATA)",
           lambda d: describe(ask(d.addr, "far-0.my-domain.com", "AAAA", edns=True)))
    t.each("EDNS query: unmatched name (`www.my-domain.com` A)",
           lambda d: describe(ask(d.addr, "www.my-domain.com", edns=True)))

    # ---------------------------------------------------------------- a glibc client
    if GLIBC:
        for name in ("kdb-2.my-domain.com", "KDB-2.Kdb.My-Domain.com", "www.my-domain.com"):
            t.each(f"glibc client (`getent ahosts`), resolv.conf: sidecar, then upstream: `{name}`",
                   lambda d, name=name: glibc(d, name, [d.ip, KNOT_ADDR]))
        t.each("glibc client, resolv.conf: the sidecar only: `www.my-domain.com`",
               lambda d: glibc(d, "www.my-domain.com", [d.ip]))

    # ---------------------------------------------------------------- upstream use
    def nx_target(d):
        before = knot.counters()
        r = ask(d.addr, "kdb-9.my-domain.com", timeout=12)
        time.sleep(0.3)
        return describe(r, timing=True) + "; upstream queries: " + fmt_counts(delta(before, knot.counters()))
    t.each("target that does not exist (`kdb-9.my-domain.com` -> NXDOMAIN at the target) A", nx_target)

    def hundred(d, name, pace=0.0):
        before = knot.counters()
        ok = 0
        t0 = time.monotonic()
        for i in range(100):
            if pace:
                time.sleep(max(0.0, t0 + i * pace - time.monotonic()))
            r = ask(d.addr, name, timeout=3)
            ok += bool(r.addresses())
        took = time.monotonic() - t0
        time.sleep(0.3)
        return (f"{fmt_counts(delta(before, knot.counters()))} upstream queries "
                f"({ok}/100 answered, in {took:.2f} s)")
    t.each("upstream queries for 100 identical alias queries, back to back (`kdb-9980.my-domain.com` A, "
           "never asked before)", lambda d: hundred(d, "kdb-9980.my-domain.com"))
    t.each("upstream queries for 100 identical alias queries over 10 s (10/s; target TTL 5; `kdb-9981`)",
           lambda d: hundred(d, "kdb-9981.my-domain.com", pace=0.1))

    # ---------------------------------------------------------------- latency
    # every daemon in turn, query by query, so that they share whatever else the machine does;
    # LAT_ROUNDS rounds, the median round shown (a loaded 2-core machine gives any daemon a few
    # milliseconds of scheduling delay on 1 % of queries in some rounds and not in others)
    t.add(f"alias latency, one name repeated ({LAT_N} x `kdb-2.my-domain.com` A; cache warm)",
          latency_rounds(t.daemons, lambda r: ["kdb-2.my-domain.com"] * LAT_N))
    t.add(f"alias latency, {LAT_N} distinct names (`kdb-1000..` A; nothing cached)",
          latency_rounds(t.daemons, lambda r: [f"kdb-{1000 + r * LAT_N + i}.my-domain.com"
                                               for i in range(LAT_N)]))
    t.add(f"literal rule latency ({LAT_N} x `far-0.my-domain.com` A)",
          latency_rounds(t.daemons, lambda r: ["far-0.my-domain.com"] * LAT_N))
    t.add(f"unmatched name latency ({LAT_N} x `www.my-domain.com` A)",
          latency_rounds(t.daemons, lambda r: ["www.my-domain.com"] * LAT_N))

    # ---------------------------------------------------------------- reload
    def changed(d):
        d.write_config(RULES_CHANGED)
        t0 = time.monotonic()
        deadline = t0 + 7
        first = describe(ask(d.addr, "new-0.my-domain.com"), flags=False)
        while time.monotonic() < deadline:
            r = ask(d.addr, "new-0.my-domain.com", timeout=0.5)
            if r.addresses():
                far = ask(d.addr, "far-0.my-domain.com").addresses()
                return (f"**served after {time.monotonic() - t0:.2f} s** (new rule answers "
                        f"{', '.join(r.addresses())}; changed far-0 -> {', '.join(far) or 'nothing'})")
            time.sleep(0.1)
        far = ask(d.addr, "far-0.my-domain.com").addresses()
        return (f"not served after 7 s (new rule: {first}; changed far-0 still "
                f"{', '.join(far) or 'nothing'})")
    t.each("rule changed and a rule added in the file while running (kubelet's ConfigMap update: `..data` swapped)",
           changed, parallel=True)

    def bad_file(d):
        size = d.log_size()
        d.write_config(None, text='{"listen": "x", "rules": [ {"host": \n')
        time.sleep(2.5)
        alive = d.alive()
        r = ask(d.addr, "new-0.my-domain.com")
        msg = _msg(d.log_tail(1, since=size))
        d.write_config(RULES_CHANGED)
        return (("running" if alive else "**exited**") + "; still answers " + describe(r, flags=False)
                + (f"; logs `{msg[:260]}`" if msg else "; logs nothing"))
    t.each("an invalid file written while running (cut-short JSON), 2.5 s later",
           bad_file, parallel=True)

    def sighup(d):
        size = d.log_size()
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        if not d.alive():
            rc = d.proc.returncode
            return f"**process exits** ({'signal ' + str(-rc) if rc < 0 else 'code ' + str(rc)})"
        msg = _msg(d.log_tail(1, since=size))
        return "keeps running, answers " + describe(ask(d.addr, "new-0.my-domain.com"), flags=False) + \
            (f"; logs `{msg[:120]}`" if msg else "")
    t.each("SIGHUP", sighup)

    # ---------------------------------------------------------------- upstream down
    def outage(kind):
        # warm kdb-3 on both, then take the upstream away
        for d in t.daemons:
            d.ensure()
            ask(d.addr, "kdb-3.my-domain.com", edns=True)
        if kind == "closed":
            knot.stop()
        else:
            knot.proc.send_signal(signal.SIGSTOP)
        t_down = time.monotonic()
        label = ("upstream stopped (port closed)" if kind == "closed"
                 else "upstream silent (knotd SIGSTOP: black hole)")
        # every query of the outage at once (each daemon, each name), each waiting up to
        # OUTAGE_WAIT s, so that a daemon that answers late is timed without serialising the waits
        cold = "kdb-9990.my-domain.com" if kind == "closed" else "kdb-9991.my-domain.com"
        asks = [
            (f"{label}: alias asked within its TTL (`kdb-3`, asked just before; EDNS)",
             lambda d: ask(d.addr, "kdb-3.my-domain.com", edns=True, timeout=OUTAGE_WAIT)),
            (f"{label}: the same alias asked again 6 s later (its TTL over; EDNS)",
             lambda d: (time.sleep(6), ask(d.addr, "kdb-3.my-domain.com", edns=True,
                                           timeout=OUTAGE_WAIT))[1]),
            (f"{label}: alias never asked before (`{cold.split('.')[0]}`; EDNS)",
             lambda d: ask(d.addr, cold, edns=True, timeout=OUTAGE_WAIT)),
            (f"{label}: unmatched name (`www.my-domain.com`; EDNS)",
             lambda d: ask(d.addr, "www.my-domain.com", edns=True, timeout=OUTAGE_WAIT)),
            (f"{label}: literal rule (`far-0` A)",
             lambda d: ask(d.addr, "far-0.my-domain.com", timeout=5)),
        ]
        got = {}

        def one(i, j, fn, d):
            got[(i, j)] = fn(d)
        threads = [threading.Thread(target=one, args=(i, j, fn, d))
                   for i, (_, fn) in enumerate(asks) for j, d in enumerate(t.daemons)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=OUTAGE_WAIT + 10)
        for i, (lab, _) in enumerate(asks):
            t.add(lab, [describe(got[(i, j)], timing=True) if (i, j) in got else "harness: no result"
                        for j in range(len(t.daemons))])
        log(f"  (upstream down for {time.monotonic() - t_down:.1f} s)")
        if kind == "closed":
            knot.start()
        else:
            knot.proc.send_signal(signal.SIGCONT)
        t_up = time.monotonic()

        def back(d):
            i = 0
            while time.monotonic() - t_up < 30:
                i += 1
                r = ask(d.addr, f"kdb-{(9000 if kind == 'closed' else 9400) + i % 400}.my-domain.com",
                        timeout=0.5)
                if r.addresses():
                    return f"{time.monotonic() - t_up:.2f} s"
                time.sleep(0.05)
            return "none within 30 s"
        t.each(f"{label}, then back: first alias answer after it is back (new name every 50 ms)",
               back, parallel=True)

    outage("closed")
    outage("silent")

    # ---------------------------------------------------------------- health, metrics, footprint
    def endpoints(d):
        if d.kind == "incumbent":
            tcp = d.tcp_listeners()
            return ("none: no flag or config field for one; TCP sockets it listens on: "
                    + (", ".join(tcp) if tcp else "none") if tcp is not None else "none")
        out = []
        for path in ("/live", "/ready", "/metrics"):
            code, body = http_get(d.admin_port, path)
            if path == "/metrics" and code == 200:
                fams = sorted({ln.split()[2] for ln in body.splitlines() if ln.startswith("# TYPE")})
                out.append(f"`{path}` {code} ({len(fams)} metric families)")
            else:
                out.append(f"`{path}` {code}" + (f" ({body.strip()[:40]})" if body.strip() and code != 200 else ""))
        return ", ".join(out)
    t.each("health and metrics endpoints", endpoints)

    def metrics_sample(d):
        if d.kind == "incumbent":
            return "none"
        code, body = http_get(d.admin_port, "/metrics")
        if code != 200:
            return f"/metrics {code}"
        keep = [ln for ln in body.splitlines()
                if ln.startswith(("splitdns_queries_total", "splitdns_mapping_reload", "splitdns_upstream_healthy"))
                and not ln.endswith((" 0", " 0.0"))]
        return "; ".join(f"`{ln}`" for ln in keep[:12])
    t.each("what the metrics said after the rows above", metrics_sample)

    t.each("threads, VmRSS (of it anonymous) after the rows above",
           lambda d: (lambda s: f"{s.get('Threads', '?')} threads, {s.get('VmRSS', '?')} "
                                f"({s.get('RssAnon', '?')})")(d.status()))

    # ---------------------------------------------------------------- hostile packet, stop
    def pointer(d):
        size = d.log_size()
        wire = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01"
        r = ask(d.addr, None, wire=wire, timeout=1.0)
        during = ask(d.addr, "far-0.my-domain.com", timeout=1.0)
        # watch it for up to POINTER_WAIT s: RSS peak, exit
        t0, peak = time.monotonic(), 0
        while time.monotonic() - t0 < POINTER_WAIT and d.alive():
            rss = d.status().get("VmRSS", "0 kB").split()[0]
            peak = max(peak, int(rss) if rss.isdigit() else 0)
            time.sleep(0.05)
        if d.alive():
            after = ask(d.addr, "far-0.my-domain.com", timeout=2)
            return (f"survives; reply to it: {describe(r, flags=False)}; a query right after: "
                    f"{describe(during, flags=False)}; {POINTER_WAIT} s later: {describe(after, flags=False)}; "
                    f"RSS peak {peak / 1024:.0f} MiB")
        rc = d.proc.returncode
        first = d.log_tail(3, since=size)
        return (f"**process exits** (code {rc}, {time.monotonic() - t0 + 1:.1f} s after the packet, "
                f"RSS peak {peak / 1024:.0f} MiB: `{first[:110]}`); no reply to it, a query right after: "
                f"{describe(during, flags=False)}")
    t.each("16-byte query whose name is a compression pointer to itself", pointer)

    def sigterm(d):
        size = d.log_size()
        res = d.stop(signal.SIGTERM, wait=10)
        if isinstance(res, str):
            return res
        rc, took = res
        msg = d.log_tail(1, since=size)
        return f"exit code **{rc}** after {took:.2f} s" + (f" (`{msg[:100]}`)" if rc and msg else "")
    t.each("SIGTERM (what `podman stop` / kubelet send)", sigterm)


def glibc(d, name, servers):
    """getaddrinfo(AF_UNSPEC) as a pod's client does it (glibc, default options: timeout 5,
    attempts 2), through a resolv.conf listing `servers` (port 53: resolv.conf has no ports)."""
    rc = os.path.join(d.dir, "client-resolv.conf")
    with open(rc, "w") as f:
        f.write("".join(f"nameserver {s}\n" for s in servers))
    t0 = time.monotonic()
    p = subprocess.run(["unshare", "-m", "sh", "-c",
                        'mount --bind "$0" /etc/resolv.conf && exec getent ahosts "$1"', rc, name],
                       capture_output=True, text=True, timeout=60)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        return f"**fails** (getent exit {p.returncode}, after {dt:.2f} s)"
    addrs = []
    for line in p.stdout.splitlines():
        a = line.split()[0]
        if a not in addrs:
            addrs.append(a)
    return f"{', '.join(addrs)} (after {dt:.2f} s)"


def _ttls(d, name):
    out = []
    for i in range(3):
        if i:
            time.sleep(1)
        r = ask(d.addr, name)
        out.append(str(r.msg.answer[0].ttl) if r.msg and r.msg.answer else (r.err or r.rcode))
    return "TTL " + ", ".join(out)


def _msg(line):
    """A log line without splitdns's timestamp and level prefix (tracing's text format)."""
    parts = line.strip().split(None, 2)
    if len(parts) == 3 and parts[1] in ("ERROR", "WARN", "INFO") and parts[0][:2].isdigit():
        return parts[2]
    return line.strip()


def config_rows(t, daemons, work):
    """Start-up with broken or unusual files: exit code, first error line, or that it serves."""
    cases = [
        ("unknown fields in the file (top level and in a rule)",
         lambda d, p: d.render(RULES[:1] + [dict(FAR0, comment="x")], listen=f"{d.ip}:{p}",
                               extra={"baseResolver": "10.96.0.10", "future": {"a": 1}})),
        ("`resolver` missing", lambda d, p: json.dumps({"listen": f"{d.ip}:{p}", "rules": RULES[:1]})),
        ("invalid regex (`kdb-(`)", lambda d, p: json.dumps(
            {"listen": f"{d.ip}:{p}", "resolver": f"{KNOT_ADDR}:{d.knot.port}",
             "rules": [{"host": "kdb-(", "result": "x.cluster.local", "regex": True}]})),
        ("JSON syntax error (missing comma, line 3)", lambda d, p: (
            '{\n  "listen": "%s:%d",\n  "resolver": "%s:%d"\n  "rules": []\n}\n'
            % (d.ip, p, KNOT_ADDR, d.knot.port))),
        ("`listen` left out (default 127.0.0.1:53)", lambda d, p: json.dumps(
            {"resolver": f"{KNOT_ADDR}:{d.knot.port}", "rules": [FAR0]})),
        ("file missing", None),
    ]
    for label, make in cases:
        cells = []
        for d in daemons:
            if d.fmt != "json":
                cells.append("(YAML mode: not run)")
                continue
            port = free_port(d.ip)
            path = os.path.join(d.dir, "case.json")
            if os.path.exists(path):
                os.remove(path)
            if make is not None:
                with open(path, "w") as f:
                    f.write(make(d, port))
            logp = os.path.join(d.dir, "case.log")
            open(logp, "w").close()
            argv = [d.binary, path] + (["--admin", "off"] if d.kind == "splitdns" else [])
            p = d.spawn(argv, logp)
            answered = None
            where = ("127.0.0.1", 53) if label.startswith("`listen` left out") else (d.ip, port)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and p.poll() is None:
                r = ask(where, "far-0.my-domain.com", timeout=0.2)
                if r.msg:
                    answered = describe(r, flags=False)
                    break
                time.sleep(0.1)
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
                with open(logp, errors="replace") as f:
                    text = [_msg(ln) for ln in f.read().splitlines() if " WARN " in ln]
                cell = "starts" + (f", answers `far-0` on {where[0]}:{where[1]}: {answered}" if answered
                                   else f", no answer on {where[0]}:{where[1]}")
                if text:
                    cell += f"; warns `{text[0][:200]}`"
            else:
                with open(logp, errors="replace") as f:
                    lines = [_msg(ln) for ln in f.read().splitlines() if ln.strip()]
                cell = f"exit {p.returncode}: `{' / '.join(lines)[:260]}`"
            cells.append(cell)
        t.add("start-up: " + label, cells)


def private_copy(binary, work):
    """A copy of the binary in the work dir, so that a rebuild in a shared target dir during the
    run (it replaces the file) cannot change what the later rows start."""
    dst = os.path.join(work, "bin", os.path.basename(binary) + "-" + str(len(os.listdir(work))))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(binary, dst)
    ORIGIN[dst] = os.path.abspath(binary)
    return dst


ORIGIN = {}             # private copy -> the path given


def _head():
    r = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h %s"], capture_output=True,
                       text=True, timeout=10)
    return f"`{r.stdout.strip()[:60]}`" if r.returncode == 0 else "unknown commit"


def main():
    incumbent = os.environ.get("INCUMBENT", "")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    splitdns = os.environ.get("SPLITDNS", os.path.join(target, "release", "splitdns"))
    fmt = os.environ.get("SPLITDNS_FORMAT", "json")
    pod = os.environ.get("POD_RESOLV", "1" if os.geteuid() == 0 else "0") == "1"
    for tool in ("knotd", "knotc") + (("unshare",) if pod else ()):
        if not shutil.which(tool):
            sys.exit(f"missing {tool}: see benches/operator/README.md")

    # port 53 everywhere when it is free (a client's resolv.conf has no port numbers): the glibc
    # rows need it
    global GLIBC
    port53 = (os.environ.get("PORT53", "1" if os.geteuid() == 0 else "0") == "1"
              and all(port_free(a, 53) for a in (KNOT_ADDR, INCUMBENT_ADDR, SPLITDNS_ADDR)))
    GLIBC = port53 and pod and shutil.which("getent") is not None
    port = 53 if port53 else None
    work = tempfile.mkdtemp(prefix="splitdns-operator-")
    knot = Knot(work, port)
    pod_resolv = None
    if pod:
        pod_resolv = os.path.join(work, "resolv.conf")
        with open(pod_resolv, "w") as f:
            f.write(POD_RESOLV_CONF)
    daemons = []
    if incumbent:
        daemons.append(Daemon("incumbent", private_copy(incumbent, work), work, knot, "json", pod_resolv, port))
    if splitdns != "none":
        daemons.append(Daemon("splitdns", private_copy(splitdns, work), work, knot, fmt, pod_resolv, port))
    if not daemons:
        sys.exit("nothing to measure: set INCUMBENT and/or SPLITDNS")

    def cleanup(*_):
        for p in STARTED:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                    p.kill()
                    p.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
    signal.signal(signal.SIGTERM, lambda *a: (cleanup(), sys.exit(143)))

    t0 = time.monotonic()
    load0 = os.getloadavg()
    try:
        knot.start()
        for d in daemons:
            d.start()
        log(f"work dir {work}; knotd {knot.addr}; " + "; ".join(f"{d.kind} {d.addr}" for d in daemons))
        t = Table(daemons)
        rows(t, knot)
        config_rows(t, daemons, work)
    finally:
        cleanup()

    vers = []
    for d in daemons:
        v = subprocess.run([d.binary, "--version"], capture_output=True, text=True, timeout=5)
        vers.append(f"{d.kind}: `{ORIGIN.get(d.binary, d.binary)}`" + (f" ({v.stdout.strip()})" if d.kind == "splitdns" and v.returncode == 0 else ""))
    report = [
        f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {time.monotonic() - t0:.0f} s; "
        + "; ".join(vers) + f" (repository at {_head()}); splitdns config: {fmt}; load average {load0[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} CPUs).",
        "Upstream: knotd " + subprocess.run(["knotd", "--version"], capture_output=True, text=True).stdout.split("version")[-1].strip()
        + " on loopback (targets `*.kdb.ns.svc.cluster.local` TTL 5, public `my-domain.com` TTL 300); "
        + ("daemons see a pod-shaped /etc/resolv.conf (`nameserver 127.0.0.1`, `nameserver 10.96.0.10`, "
           "`search ns.svc.cluster.local svc.cluster.local cluster.local`, `options ndots:5`)."
           if pod else "daemons see the host's /etc/resolv.conf.")
        + (" Everything on port 53 (knotd 127.0.0.53, " + ", ".join(f"{d.kind} {d.ip}" for d in daemons) + ")."
           if port53 else ""),
        "",
        t.markdown(),
        "",
        f"Logs and config files: `{work}`.",
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if os.environ.get("OUT"):
        with open(os.environ["OUT"], "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
