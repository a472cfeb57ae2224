#!/usr/bin/env python3
"""benches/security/summarize.py - results.jsonl of benches/security.sh -> Markdown tables.

One table per attack (rows: the peers), then the targets of issue 19 judged for splitdns:
met / missed, with the figure each judgement rests on. "near its baseline" is read as: RSS 10 s
after the attack at most NEAR_MIB above the median before it.
"""

import argparse
import json

NEAR_MIB = 2.0
CONTROL = "dnsmasq-fixedport"  # the control of the spoof attacks: not a peer to compare with


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.1f}"


def canary(c, phase="attack"):
    if not c or phase not in c:
        return "n/a"
    x = c[phase]
    s = f"{x['fail']}/{x['n']} failed"
    if "max_ms" in x:
        s += f", max {x['max_ms']:.0f} ms"
    if x.get("why"):
        s += " (" + ", ".join(f"{k} {v}" for k, v in x["why"].items()) + ")"
    return s


def attack_cell(att):
    parts = []
    if att.get("opened"):
        parts.append(f"{att['opened']} connections opened, {att['open_at_end']} open at the end")
    if att.get("octets"):
        parts.append(f"{att['octets'] / 2**20:.0f} MiB written")
    if att.get("sent"):
        parts.append(f"{att['sent']} queries sent")
    if att.get("send_errors"):
        parts.append(f"{att['send_errors']} send errors")
    return "; ".join(parts) or "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--versions")
    ap.add_argument("--budget-mib", type=float, default=32)
    args = ap.parse_args()
    rows = {}
    order = []
    with open(args.results) as f:
        for line in f:
            rec = json.loads(line)
            a = rec["attack"]
            if a not in rows:
                rows[a] = {}
                order.append(a)
            rows[a][rec["peer"]] = rec["result"]
    out = ["# benches/security.sh results", ""]
    if args.versions:
        out += ["```", open(args.versions).read().strip(), "```", ""]
    verdicts = []

    def verdict(target, ok, why):
        verdicts.append(f"| {target} | {'met' if ok else '**missed**'} | {why} |")

    for a in order:
        peers = rows[a]
        out.append(f"## {a}")
        out.append("")
        if a.startswith("spoof"):
            unit, one = ("rounds", "round") if a == "spoof32" else ("queries", "query")
            out.append(f"| peer | {unit} | poisoned | failed | clients poisoned | forged answers / {one} (achieved rate/s) "
                       "| ports aimed at | upstream packets per name (mean, max) | upstream packets | distinct source ports |")
            out.append("|---|---|---|---|---|---|---|---|---|---|")
            for p, r in peers.items():
                if not r or "poisoned" not in r:
                    out.append(f"| {p} | error: {r} |")
                    continue
                out.append(f"| {p}{' (control)' if p == CONTROL else ''} | {r['n']} | {r['poisoned']} | {r['failed']} | {r['clients_poisoned']} | "
                           f"{r['ids_per_query']} ({r['achieved_rate']}) | {r['ports_aimed']} | "
                           f"{r['upstream_per_name_mean']}, {r['upstream_per_name_max']} | {r['upstream_queries']} | "
                           f"{r['upstream_distinct_ports']} |")
            s = peers.get("splitdns")
            others = [r["poisoned"] for p, r in peers.items()
                      if p not in ("splitdns", CONTROL) and r and "poisoned" in r]
            if s and "poisoned" in s and others:
                best = min(others)
                verdict(f"{a}: poisoned no more often than the better peer (+1)", s["poisoned"] <= best + 1,
                        f"splitdns {s['poisoned']} of {s['n']}, better peer {best}")
            if s and "upstream_distinct_ports" in s and a == "spoof":
                verdict("spoof: the upstream sees splitdns's queries from many ports", s["upstream_distinct_ports"] >= min(32, s["upstream_queries"] / 2),
                        f"{s['upstream_distinct_ports']} distinct ports over {s['upstream_queries']} packets")
            if s and a == "spoof32" and "upstream_per_name_mean" in s:
                # Coalesced means: no more packets per name for 32 clients than for one client's
                # query (whose re-sends, if the upstream is slower than the retransmission timer,
                # are copies of one query, each with its own ID). Without the spoof row: max 1.
                one = (rows.get("spoof") or {}).get("splitdns") or {}
                ref = one.get("upstream_per_name_mean")
                ok = s["upstream_per_name_mean"] <= (ref if ref else 1.0) + 0.05
                verdict("spoof32: one upstream query per name (32 clients coalesced)", ok,
                        f"{s['upstream_per_name_mean']} packets per name (max {s['upstream_per_name_max']}) for "
                        f"{s['clients']} clients; one client's query: {ref if ref else 'not run'} "
                        "(a packet above 1 is a re-send of the query, not another query)")
        elif a == "reflect":
            out.append("| peer | client | mapped A | forwarded A | big TXT (EDNS 4096) | mapped ANY |")
            out.append("|---|---|---|---|---|---|")
            for p, r in peers.items():
                if not r or "stranger" not in r:
                    out.append(f"| {p} | error: {r} |")
                    continue
                for who in ("stranger", "local"):
                    x = r[who]
                    if not x:
                        out.append(f"| {p} | {who} | error |")
                        continue
                    cells = []
                    for q in ("mapped A", "forwarded A", "big TXT", "mapped ANY"):
                        y = x[q]
                        rc = ",".join(f"{'NOERROR' if k == '0' else 'REFUSED' if k == '5' else 'rcode ' + k} {v}"
                                      for k, v in y["rcodes"].items()) or "-"
                        cells.append(f"{y['heard']}/{y['sent']} heard ({rc}{', TC ' + str(y['tc']) if y['tc'] else ''}), "
                                     f"x{y['amplification']}")
                    out.append(f"| {p} | {who} | " + " | ".join(cells) + " |")
            s = peers.get("splitdns")
            if s and s.get("stranger"):
                heard = {q: y for q, y in s["stranger"].items()}
                ok = all(y["heard"] == 0 or set(y["rcodes"]) <= {"5"} for y in heard.values())
                amp = max(y["amplification"] or 0 for y in heard.values())
                verdict("reflect: a stranger gets nothing or REFUSED", ok, f"max amplification to the stranger x{amp}")
        else:
            out.append("| peer | /live probes failed (max in a row) | UDP canary | TCP canary (new client) | working name | "
                       "RSS MiB before / peak / 10 s after | children RSS peak MiB | attack |")
            out.append("|---|---|---|---|---|---|---|---|")
            for p, r in peers.items():
                if not r or "na" in (r or {}):
                    out.append(f"| {p} | n/a: {(r or {}).get('na', 'error')} |")
                    continue
                if "udp" not in r:
                    out.append(f"| {p} | error: {r} |")
                    continue
                live = r.get("live")
                lv = (f"{live['attack']['fail']}/{live['attack']['n']} ({live['attack']['max_consecutive_fail']})"
                      if live else "n/a")
                rss = r.get("rss_kib") or {}
                att = r.get("attack", {})
                out.append(f"| {p} | {lv} | {canary(r.get('udp'))} | {canary(r.get('tcp'))} | {canary(r.get('work'))} | "
                           f"{mib(rss.get('base'))} / {mib(rss.get('peak_attack'))} / {mib(rss.get('after_end'))} | "
                           f"{mib(rss.get('children_peak'))} | {attack_cell(att)} |")
            s = peers.get("splitdns")
            if s and "udp" in s:
                if s.get("live"):
                    worst = max(s["live"][ph]["max_consecutive_fail"] for ph in ("base", "attack", "after"))
                    verdict(f"{a}: /live never fails 3 probes in a row", worst < 3, f"at most {worst} in a row")
                uf, tf = s["udp"]["attack"]["fail"], s["tcp"]["attack"]["fail"]
                verdict(f"{a}: UDP and TCP DNS keep answering", uf == 0 and tf == 0,
                        f"UDP {canary(s['udp'])}; TCP {canary(s['tcp'])}")
                rss = s.get("rss_kib") or {}
                if rss.get("peak_attack") is not None:
                    verdict(f"{a}: RSS under {args.budget_mib:g} MiB", rss["peak_attack"] / 1024 < args.budget_mib,
                            f"peak {mib(rss['peak_attack'])} MiB (VmHWM {mib(rss.get('hwm_end'))})")
                    if rss.get("after_end") is not None and rss.get("base") is not None:
                        d = (rss["after_end"] - rss["base"]) / 1024
                        verdict(f"{a}: RSS back near its baseline after", d <= NEAR_MIB,
                                f"{mib(rss['base'])} -> {mib(rss['after_end'])} MiB ({d:+.1f})")
                if s.get("work") and a == "aliasflood":
                    verdict(f"{a}: the working name keeps being answered", s["work"]["attack"]["fail"] == 0,
                            canary(s["work"]))
        out.append("")
    out += ["## Targets (splitdns)", "", "| target | | figure |", "|---|---|---|"] + verdicts + [""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
