#!/usr/bin/env python3
"""benches/security/hits.py - which copy did each forged answer hit? (after a spoof run)

  hits.py RUN_DIR PEER-ATTACK [--rate 20000]     e.g. hits.py target/security/<ts> splitdns-spoof

Joins the spoofer's per-query records (raw/PEER-ATTACK.jsonl: the port aimed at, the ID sweep's
start, its length and start time) with the upstream's log (raw/upstream.jsonl: every copy of the
query the sidecar sent, its source port and ID). For each copy on the aimed port, the forged ID
equal to the copy's ID was sent at t_start + k / rate (k its place in the sweep): if that was after
the copy left, the copy could be hit. Prints the poisoned queries with their copies, the number
of queries with a copy on the aimed port, and the expected number of hits (each such copy counts
the share of the 65,536 IDs swept after it left, up to the end of the sweep).
"""

import argparse
import collections
import json
import os


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("which")
    ap.add_argument("--rate", type=float, default=20000)
    args = ap.parse_args()
    copies = collections.defaultdict(list)
    with open(os.path.join(args.run, "raw", "upstream.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "qname" in r and r.get("proto") == "udp":
                copies[r["qname"].lower().rstrip(".")].append(r)
    n = exposed = poisoned = explained = 0
    expected = 0.0
    with open(os.path.join(args.run, "raw", args.which + ".jsonl")) as f:
        for line in f:
            q = json.loads(line)
            n += 1
            cs = copies.get(q["name"].lower(), [])
            hit = "poisoned" in q["results"]
            poisoned += hit
            if "id_start" not in q:
                continue
            on_port = [c for c in cs if c["sport"] == q["port"]]
            exposed += bool(on_port)
            could = False
            for c in on_port:
                k = (c["id"] - q["id_start"]) % 65536
                sent_at = q["t_start"] + k / args.rate
                if k < q["forged"] and sent_at >= c["t"] - 0.002:
                    could = True
                left = max(0.0, q["t_start"] + q["forged"] / args.rate - c["t"])
                expected += min(q["forged"], left * args.rate) / 65536
            explained += hit and could
            if hit or could:
                t0 = cs[0]["t"] if cs else q["t_start"]
                print(json.dumps({"i": q["i"], "results": sorted(set(q["results"])), "aimed": q["port"],
                                  "copies": [(round(c["t"] - t0, 3), c["sport"], c["id"]) for c in cs],
                                  "forged_id_hit_possible": could}))
    print(json.dumps({"queries": n, "poisoned": poisoned, "with_a_copy_on_the_aimed_port": exposed,
                      "poisoned_explained_by_a_copy_on_the_aimed_port": explained,
                      "expected_hits": round(expected, 2)}))


if __name__ == "__main__":
    main()
