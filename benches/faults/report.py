#!/usr/bin/env python3
"""benches/faults/report.py OUTDIR - the Markdown summary of one benches/faults.sh run.

Reads OUTDIR/runs.tsv (fault, peer, status) and, per run, OUTDIR/raw/FAULT-PEER.{udp.jsonl,
glibc.jsonl,events,icmp-before.txt,icmp-after.txt,ss.txt}; prints the tables on stdout.

Definitions:
- answered: a reply with the query's ID and question and rcode NOERROR or NXDOMAIN;
  SERVFAIL and timeout (no matching reply within 2 s; the client never retries) are counted apart,
  `other` is any other rcode (REFUSED...) or a send error.
- p50/p99/max: latency of the answered forwarded queries, in ms (timeouts are not in it).
- mapped: the names the sidecar answers itself; `slow` = answered in 10 ms or more, `fail` = not
  answered (NOERROR) at all.
- window: restart = knotd stopped .. answering again; blackhole = hole on .. off;
  twoup = first upstream black-holed .. end. `in window` counts queries SENT in it.
- client sees (blackhole): what the queries sent in the hole got: SERVFAIL, silence (no reply
  within 2 s), REFUSED... with counts.
- first answer after: seconds from the end of the window to the first answered forwarded query
  (reply received after the end; the query may have been sent before).
- glibc: getaddrinfo(AF_UNSPEC) lookups; fail = any error; EAI_NODATA = "No address associated
  with hostname" (a name that HAS addresses reported as having none); partial = a name with A and
  AAAA for which only one family came back.
- splitdns-alias: the same binary with an alias rule; its forwarded stream asks alias names (each
  once, so each is an upstream lookup of the rule's target). `hot alias names`: the few names it
  also asks again and again (answered from the cache; `stale` = answered with TTL 30, the sidecar's
  stale answer while the upstream is unreachable).
- freshness (splitdns-alias only): see benches/faults/freshness.py.
- targets: the issue 10 / 18 targets, per splitdns row (met / MISSED and the measured value).
"""
import json
import os
import re
import statistics
import sys
from collections import Counter

FAULT_TITLES = {
    "none": "no fault (baseline)",
    "loss1": "1 % loss per direction",
    "loss5": "5 % loss per direction",
    "loss20": "20 % loss per direction",
    "restart": "upstream restarted (knotd stopped 3 s, then started again)",
    "blackhole": "10 s black hole, then back",
    "twoup": "two upstreams, the first black-holed from 2 s on",
    "freshness": "alias target changes its address (no fault)",
}
ANSWERED = ("ok", "nxdomain")


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def fmt_ms(x):
    if x is None:
        return "-"
    return "%.1f" % x if x < 100 else "%.0f" % x


def load_jsonl(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def load_events(path):
    ev = {}
    if os.path.exists(path):
        for line in open(path):
            parts = line.split()
            if len(parts) == 2:
                ev.setdefault(parts[0], float(parts[1]))
    return ev


def load_nstat(path):
    """{namespace: {counter: value}} from the `# NS` + `nstat -asz` snapshots."""
    out, cur = {}, None
    if not os.path.exists(path):
        return out
    for line in open(path):
        if line.startswith("# "):
            cur = line[2:].strip()
            out[cur] = {}
        elif cur is not None:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                out[cur][parts[0]] = int(parts[1])
    return out


def nstat_delta(before, after, ns, key):
    a = after.get(ns, {}).get(key)
    b = before.get(ns, {}).get(key, 0)
    return None if a is None else a - b


def udp_sockets(path):
    """How the sidecar talks to the upstream, from `ss -uanp` taken 1.5 s after knotd stopped."""
    if not os.path.exists(path):
        return "-"
    connected, unconnected = 0, 0
    for line in open(path):
        if "python" in line or not line.strip() or line.startswith("State"):
            continue
        cols = line.split()
        if len(cols) < 5:
            continue
        local, peer = cols[3], cols[4]
        if re.match(r"10\.99\.0\.[26]:53$", peer):
            connected += 1
        elif not local.endswith(":53") and peer in ("*:*", "0.0.0.0:*"):
            unconnected += 1
    if connected:
        return "connected (%d)" % connected
    if unconnected:
        return "unconnected (%d)" % unconnected
    return "none seen"


class Run:
    def __init__(self, out, fault, peer, status):
        self.fault, self.peer, self.status = fault, peer, status
        base = os.path.join(out, "raw", "%s-%s" % (fault, peer))
        self.udp = load_jsonl(base + ".udp.jsonl") or []
        self.glibc = load_jsonl(base + ".glibc.jsonl")
        self.ev = load_events(base + ".events")
        self.icmp_b = load_nstat(base + ".icmp-before.txt")
        self.icmp_a = load_nstat(base + ".icmp-after.txt")
        self.sockets = udp_sockets(base + ".ss.txt")
        self.fwd = [q for q in self.udp if q["kind"] == "fwd"]
        self.mapped = [q for q in self.udp if q["kind"] == "mapped"]
        self.hot = [q for q in self.udp if q["kind"] == "hot"]
        self.fresh = None
        if fault == "freshness":
            path = base + ".summary.json"
            if os.path.exists(path):
                with open(path) as f:
                    self.fresh = json.load(f)
        self.w0 = self.ev.get("window_start")
        self.w1 = self.ev.get("window_end")

    def ok(self):
        if self.fault == "freshness":
            return self.status == "ok" and self.fresh is not None
        return self.status == "ok" and bool(self.udp)


def stats(queries):
    n = len(queries)
    c = Counter(q["outcome"] for q in queries)
    ans = [q for q in queries if q["outcome"] in ANSWERED]
    lat = [q["ms"] for q in ans]
    other = n - len(ans) - c["servfail"] - c["timeout"]
    return {"n": n, "answered": len(ans), "pct": 100.0 * len(ans) / n if n else float("nan"),
            "servfail": c["servfail"], "timeout": c["timeout"], "other": other,
            "other_kinds": ", ".join("%s %d" % (k, v) for k, v in c.items()
                                     if k not in ANSWERED + ("servfail", "timeout")),
            "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat) if lat else None,
            "sf_ms": statistics.median([q["ms"] for q in queries if q["outcome"] == "servfail"])
            if c["servfail"] else None}


def glibc_stats(recs):
    if recs is None:
        return None
    c = Counter(r["result"] for r in recs)
    fails = [r for r in recs if r["result"] != "ok"]
    partial = sum(1 for r in recs if r["result"] == "ok" and r["dual"] and r.get("families") != "46")
    lat = [r["ms"] for r in recs if r["ms"] is not None]
    kinds = ", ".join("%s %d" % (k.replace("EAI_", ""), v) for k, v in sorted(c.items()) if k != "ok")
    return {"n": len(recs), "fail": len(fails), "nodata": c["EAI_NODATA"], "partial": partial,
            "kinds": kinds, "p99": pct(lat, 99), "max": max(lat) if lat else None}


def mapped_cell(r):
    m = r.mapped
    lat = [q["ms"] for q in m if q["outcome"] == "ok"]
    slow = sum(1 for x in lat if x >= 10)
    fail = sum(1 for q in m if q["outcome"] != "ok")
    return ("%s / %s / %s" % (fmt_ms(pct(lat, 50)), fmt_ms(pct(lat, 99)), fmt_ms(max(lat) if lat else None)),
            "%d / %d of %d" % (slow, fail, len(m)))


def fault_table(fault, runs):
    lines = ["### %s" % FAULT_TITLES.get(fault, fault), "",
             "| peer | answered | SERVFAIL | timeout | other | p50 ms | p99 ms | max ms "
             "| mapped p50/p99/max ms | mapped slow/fail | glibc fail | EAI_NODATA | glibc partial | glibc p99/max ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        if not r.ok():
            lines.append("| %s | run failed (see logs/%s-%s.log) |" % (r.peer, fault, r.peer) + " |" * 12)
            continue
        s = stats(r.fwd)
        mc, ms = mapped_cell(r)
        g = glibc_stats(r.glibc)
        if g:
            gf = "%d of %d" % (g["fail"], g["n"]) + (" (%s)" % g["kinds"] if g["kinds"] else "")
            gcells = [gf, str(g["nodata"]), str(g["partial"]), "%s / %s" % (fmt_ms(g["p99"]), fmt_ms(g["max"]))]
        else:
            gcells = ["-", "-", "-", "-"]
        other = str(s["other"]) + (" (%s)" % s["other_kinds"] if s["other"] else "")
        lines.append("| %s | %.1f %% (%d/%d) | %d | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            r.peer, s["pct"], s["answered"], s["n"], s["servfail"], s["timeout"], other,
            fmt_ms(s["p50"]), fmt_ms(s["p99"]), fmt_ms(s["max"]), mc, ms, " | ".join(gcells)))
    lines.append("")
    for r in runs:
        if r.ok() and r.hot:
            lines += [hot_line(r), ""]
    if fault in ("restart", "blackhole", "twoup"):
        lines += window_table(fault, runs)
    return lines


def hot_line(r):
    """The cached alias names of a splitdns-alias run, in one sentence."""
    s = stats(r.hot)
    names = len({q["qname"] for q in r.hot})
    stale = sum(1 for q in r.hot if q["outcome"] == "ok" and q.get("ttl") == 30)
    line = ("%s, hot alias names (%d names asked again and again, from the cache): answered %.1f %% "
            "(%d/%d), of which stale (TTL 30) %d; SERVFAIL %d, timeout %d; p50 / p99 / max %s / %s / %s ms"
            % (r.peer, names, s["pct"], s["answered"], s["n"], stale, s["servfail"], s["timeout"],
               fmt_ms(s["p50"]), fmt_ms(s["p99"]), fmt_ms(s["max"])))
    if r.w0 is not None:
        w1 = r.w1 if r.w1 is not None else r.ev.get("end", r.w0)
        inw = [q for q in r.hot if r.w0 <= q["t"] < w1]
        si = stats(inw)
        st = sum(1 for q in inw if q["outcome"] == "ok" and q.get("ttl") == 30)
        line += ("; sent in the window: answered %d of %d (stale %d), SERVFAIL %d, silence %d"
                 % (si["answered"], si["n"], st, si["servfail"], si["timeout"]))
    return line


def freshness_table(runs):
    lines = ["### %s" % FAULT_TITLES["freshness"], ""]
    for r in runs:
        if not r.ok():
            lines += ["%s: run failed (see logs/freshness-%s.client.log)" % (r.peer, r.peer), ""]
            continue
        f = r.fresh
        lines += [
            "%d alias names asked %g times a second each for %g s; every target's address changed in "
            "knot %d times (one transaction each); target TTL %d s, cap %g s." % (
                f["names"], f["rate_per_name"], f["duration"], f["changes"], f["target_ttl"], f["cap"]), "",
            "| peer | new address served after (max / median s) | never | target | upstream queries per "
            "hot name per cap interval | s between two (median / min / max) | client queries per name "
            "per cap interval | client TTL max | p50 / p99 / max ms | not answered |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            "| %s | %s / %s | %d | <= %g s | %s (%s) | %s / %s / %s | %s | %s | %s / %s / %s | %d of %d |" % (
                r.peer, f["delay_max"], f["delay_median"], f["delay_never"], f["delay_target"],
                f["upstream_per_name_per_cap"],
                ", ".join("%s %d" % (k.split(".")[0], v) for k, v in f["upstream_queries"].items()),
                f.get("upstream_gap_median"), f.get("upstream_gap_min"), f.get("upstream_gap_max"),
                f["client_queries_per_name_per_cap"], f["ttl_max"], fmt_ms(f["lat_p50"]),
                fmt_ms(f["lat_p99"]), fmt_ms(f["lat_max"]), f["not_ok"], f["queries"]), "",
            "Per change (seconds into the run: delay per name, s): " + "; ".join(
                "%.1f: %s" % (c["t"], " ".join("-" if d is None else "%.2f" % d for d in c["delays"]))
                for c in f["per_change"]), ""]
    return lines


def verdict(ok, text):
    return ("met" if ok else "**MISSED**") + " (" + text + ")"


def targets_table(runs):
    """The targets of issues 10 and 18, for every splitdns row."""
    peers = [p for p in dict.fromkeys(r.peer for r in runs) if p.startswith("splitdns")]
    if not peers:
        return []
    find = {(r.fault, r.peer): r for r in runs}
    lines = ["### targets", "",
             "| target | " + " | ".join(peers) + " |", "|---|" + "---|" * len(peers)]

    def row(name, fn):
        cells = []
        for p in peers:
            cells.append(fn(p))
        if any(c != "-" for c in cells):
            lines.append("| %s | %s |" % (name, " | ".join(cells)))

    def loss(fault, pct_min, p99_max):
        def f(p):
            r = find.get((fault, p))
            if not r or not r.ok():
                return "-"
            s = stats(r.fwd)
            return verdict(s["pct"] >= pct_min and s["p99"] is not None and s["p99"] <= p99_max,
                           "%.1f %%, p99 %s ms" % (s["pct"], fmt_ms(s["p99"])))
        return f

    def hole_silence(p):
        r = find.get(("blackhole", p))
        if not r or not r.ok() or r.w0 is None or r.w1 is None:
            return "-"
        inw = [q for q in r.fwd + r.hot if r.w0 <= q["t"] < r.w1]
        c = Counter(q["outcome"] for q in inw)
        sf = [q["ms"] for q in inw if q["outcome"] == "servfail"]
        return verdict(c["timeout"] == 0, "SERVFAIL %d (median %s ms), answered %d, silence %d of %d" % (
            c["servfail"], fmt_ms(statistics.median(sf)) if sf else "-",
            sum(c[k] for k in ANSWERED), c["timeout"], len(inw)))

    def first_after(p):
        r = find.get(("blackhole", p))
        if not r or not r.ok() or r.w1 is None:
            return "-"
        recv = [q["t"] + q["ms"] / 1000.0 for q in r.fwd if q["outcome"] in ANSWERED
                and q["t"] + q["ms"] / 1000.0 >= r.w1]
        if not recv:
            return verdict(False, "none")
        d = min(recv) - r.w1
        return verdict(d <= 0.1, "%.2f s" % d)

    def restart_glibc(p):
        r = find.get(("restart", p))
        if not r or not r.ok() or r.glibc is None:
            return "-"
        g = glibc_stats(r.glibc)
        return verdict(g["fail"] == 0, "%d of %d failed" % (g["fail"], g["n"]))

    def fresh_delay(p):
        r = find.get(("freshness", p))
        if not r or not r.ok():
            return "-"
        f = r.fresh
        return verdict(f["delay_max"] is not None and f["delay_never"] == 0 and f["delay_max"] <= f["delay_target"],
                       "max %s s" % f["delay_max"])

    def fresh_upstream(p):
        r = find.get(("freshness", p))
        if not r or not r.ok():
            return "-"
        f = r.fresh
        v = f["upstream_per_name_per_cap"]
        # "about one per cap interval, not one per client query": within 2x of one
        return verdict(v is not None and v <= 2, "%s per name per %g s, clients asked %s" % (
            v, f["cap"], f["client_queries_per_name_per_cap"]))

    row("5 % loss: >= 99.9 % answered, p99 <= 110 ms", loss("loss5", 99.9, 110))
    row("20 % loss: >= 99.7 % answered, p99 <= 350 ms", loss("loss20", 99.7, 350))
    row("black hole: SERVFAIL (or stale) before 2 s, never silence", hole_silence)
    row("black hole: first answer <= 100 ms after it", first_after)
    row("3 s restart: no glibc lookup fails", restart_glibc)
    row("freshness: new address within cap + 0.5 s", fresh_delay)
    row("freshness: about one upstream query per hot name per cap", fresh_upstream)
    lines.append("")
    return lines


def window_table(fault, runs):
    what = {"restart": "while knotd is down (stop .. answering again)",
            "blackhole": "during the 10 s hole",
            "twoup": "while the first upstream is black-holed"}[fault]
    head = ["peer", "window s", "sent in window", "answered", "SERVFAIL", "timeout",
            "SERVFAIL after (median ms)"]
    if fault == "blackhole":
        head += ["client sees"]
    if fault in ("restart", "blackhole"):
        head += ["first answer after end s", "answered, sent after end"]
    if fault == "restart":
        head += ["ICMP unreach sent / rate-limited / reached client ns", "sidecar's upstream sockets"]
    if fault in ("restart", "blackhole"):
        head += ["glibc fail, overlapping window"]
    lines = ["%s, %s:" % ({"restart": "Restart", "blackhole": "Black hole", "twoup": "Two upstreams"}[fault], what), "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in runs:
        if not r.ok() or r.w0 is None:
            continue
        w1 = r.w1 if r.w1 is not None else r.ev.get("end", r.w0)
        inw = [q for q in r.fwd if r.w0 <= q["t"] < w1]
        s = stats(inw)
        row = [r.peer, "%.1f" % (w1 - r.w0), str(s["n"]),
               "%.1f %%" % s["pct"] if s["n"] else "-", str(s["servfail"]), str(s["timeout"]),
               fmt_ms(s["sf_ms"])]
        if fault == "blackhole":
            seen = Counter(q["outcome"] for q in inw if q["outcome"] not in ANSWERED)
            names = {"servfail": "SERVFAIL", "timeout": "silence", "refused": "REFUSED"}
            row.append(", ".join("%s %d" % (names.get(k, k), v) for k, v in seen.most_common()) or "-")
        if fault in ("restart", "blackhole"):
            recv = [q["t"] + q["ms"] / 1000.0 for q in r.fwd if q["outcome"] in ANSWERED
                    and q["t"] + q["ms"] / 1000.0 >= w1]
            row.append("%.2f" % (min(recv) - w1) if recv else "none")
            aft = [q for q in r.fwd if q["t"] >= w1]
            after = stats(aft)
            cell = "%.1f %% (%d/%d)" % (after["pct"], after["answered"], after["n"]) if after["n"] else "-"
            bad = [q["t"] for q in aft if q["outcome"] not in ANSWERED]
            if bad:
                cell += ", last failure sent +%.1f s" % (max(bad) - w1)
            row.append(cell)
        if fault == "restart":
            sent = nstat_delta(r.icmp_b, r.icmp_a, "sdfz-up", "IcmpOutDestUnreachs")
            limited = nstat_delta(r.icmp_b, r.icmp_a, "sdfz-up", "IcmpOutRateLimitHost")
            got = nstat_delta(r.icmp_b, r.icmp_a, "sdfz-cli", "IcmpInDestUnreachs")
            row.append(" / ".join("-" if x is None else str(x) for x in (sent, limited, got)))
            row.append(r.sockets)
        if fault in ("restart", "blackhole"):
            if r.glibc is None:
                row.append("-")
            else:
                ov = [g for g in r.glibc if g["ms"] is not None and g["t"] < w1 and g["t"] + g["ms"] / 1000.0 >= r.w0]
                gs = glibc_stats(ov)
                row.append("%d of %d" % (gs["fail"], gs["n"]) + (" (%s)" % gs["kinds"] if gs["kinds"] else ""))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def main():
    out = sys.argv[1]
    runs = []
    for line in open(os.path.join(out, "runs.tsv")):
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 3:
            runs.append(Run(out, parts[0], parts[1], parts[2]))
    faults = list(dict.fromkeys(r.fault for r in runs if r.fault != "freshness"))
    peers = list(dict.fromkeys(r.peer for r in runs))
    meta = open(os.path.join(out, "meta.txt")).read().strip().splitlines() if os.path.exists(
        os.path.join(out, "meta.txt")) else []
    lines = ["## benches/faults.sh", ""]
    lines += ["    " + m for m in meta] + [""]
    # Overview first: answered % of forwarded queries, peer x fault.
    lines += ["### overview: forwarded queries answered (NOERROR/NXDOMAIN within 2 s, one try)", "",
              "| peer | " + " | ".join(faults) + " |", "|---|" + "---:|" * len(faults)]
    for p in peers:
        cells = []
        for f in faults:
            r = next((x for x in runs if x.fault == f and x.peer == p), None)
            cells.append("%.1f %%" % stats(r.fwd)["pct"] if r and r.ok() else "failed" if r else "-")
        lines.append("| %s | %s |" % (p, " | ".join(cells)))
    lines.append("")
    lines += targets_table(runs)
    for f in faults:
        lines += fault_table(f, [r for r in runs if r.fault == f])
    fresh = [r for r in runs if r.fault == "freshness"]
    if fresh:
        lines += freshness_table(fresh)
    lines += ["Latencies are of answered queries only; timeouts are 2 s without a reply. "
              "`mapped slow/fail`: mapped-name answers that took 10 ms or more / that failed. "
              "Definitions: benches/faults/report.py.", ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
