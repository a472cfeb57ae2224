#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/ (deterministic; stdlib only).

Run from anywhere: `python3 fuzz/make_seeds.py`. It only adds or overwrites its own files
(named after what they hold), so inputs the fuzzer merged in are kept.
"""

import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

LONG = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
MAPPED = {
    "db0": "db-0.db.example.com",
    "db1": "db-1.db.example.com",
    "v6": "v6.db.example.com",
    "a": "a",
    "many": "many.db.example.com",
    "huge": "huge.db.example.com",
    "long": LONG,
}
RULES = {
    "legacy": "legacy.example.com",
    "v6rule": "v6-7.example.com",
    "replica": "db-3.db-replica.example.com",
    "pods": "web-1.pods.example.com",
    "ttl30": "ttl30.db.example.com",
    "db0alias": "db-0-alias.db.example.com",
}
V6_13 = ".".join(reversed("fd00000000000000000000000000" "0013")) + ".ip6.arpa"
REVERSE = {
    "rev_db0": "12.0.42.10.in-addr.arpa",
    "rev_db1": "13.0.42.10.in-addr.arpa",
    "rev_v6_db1": V6_13,
    "rev_unmapped": "4.3.2.1.in-addr.arpa",
    "rev_leading_zero": "012.0.42.10.in-addr.arpa",
    "rev_partial": "0.42.10.in-addr.arpa",
    "rev_v6_short": V6_13[2:],
}
UNMAPPED = {"org": "example.org", "www": "www.example.com", "db0sub": "x.db-0.db.example.com", "root": ""}

A, NS, SOA, PTR, MX, TXT, AAAA, OPT, TSIG, IXFR, AXFR, ANY = 1, 2, 6, 12, 15, 16, 28, 41, 250, 251, 252, 255


def name(text):
    out = b""
    for label in text.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def header(id_=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


def opt(size=1232, ext=0, version=0, do=False, options=b""):
    return b"\x00" + struct.pack(">HHBBHH", OPT, size, ext, version, 0x8000 if do else 0, len(options)) + options


def option(code, data):
    return struct.pack(">HH", code, len(data)) + data


def tsig(key=b"\x03key\x00", oid=0x1234, algorithm=b"\x0bhmac-sha256\x00", mac=b"\xab" * 32,
         rclass=255, other=b""):
    """A TSIG record (RFC 8945 §4.2): `key` in wire form (may be compressed)."""
    rdata = algorithm + struct.pack(">HIH", 0, 0x65000000, 300) + struct.pack(">H", len(mac)) + mac
    rdata += struct.pack(">HHH", oid, 0, len(other)) + other
    return key + struct.pack(">HHIH", TSIG, rclass, 0, len(rdata)) + rdata


COOKIE = option(10, bytes(range(8)))
ECS = option(8, b"\x00\x01\x18\x00\xc0\x00\x02")
PADDING = option(12, b"\x00" * 16)


def query(qname, qtype=A, qclass=1, edns=None, flags=0x0100, id_=0x1234, extra=b"", counts=None):
    ar = 1 if edns is not None else 0
    qd, an, ns = 1, 0, 0
    if counts:
        qd, an, ns, ar = counts
    msg = header(id_, flags, qd, an, ns, ar) + name(qname) + struct.pack(">HH", qtype, qclass)
    return msg + (edns or b"") + extra


def mixed(text):
    return "".join(c.upper() if i % 2 else c for i, c in enumerate(text))


def query_path_seeds():
    s = {}
    types = {"a": A, "aaaa": AAAA, "any": ANY, "mx": MX, "txt": TXT, "soa": SOA}
    for key, qname in {**MAPPED, **UNMAPPED}.items():
        for tname, t in types.items():
            s[f"{key}_{tname}"] = query(qname, t)
            s[f"{key}_{tname}_edns"] = query(qname, t, edns=opt())
        s[f"{key}_a_mixedcase"] = query(mixed(qname), A)
    for key in ["db0", "db1", "many", "huge", "long"]:
        q = MAPPED[key]
        for size in [0, 512, 600, 1000, 1232, 1400, 4096, 65535]:
            s[f"{key}_any_edns{size}"] = query(q, ANY, edns=opt(size))
            s[f"{key}_a_edns{size}"] = query(q, A, edns=opt(size))
        s[f"{key}_aaaa_edns_do_cookie"] = query(q, AAAA, edns=opt(1232, do=True, options=COOKIE))
        s[f"{key}_a_edns_ecs_padding"] = query(q, A, edns=opt(1232, options=ECS + PADDING))
    for key, qname in {**RULES, **REVERSE}.items():
        for tname, t in {"a": A, "aaaa": AAAA, "any": ANY, "ptr": PTR, "mx": MX}.items():
            s[f"{key}_{tname}"] = query(qname, t)
        s[f"{key}_ptr_edns_do"] = query(mixed(qname), PTR, edns=opt(1232, do=True))
        s[f"{key}_any_edns512"] = query(qname, ANY, edns=opt(512))
    db0 = MAPPED["db0"]
    s["db0_a_edns_version1"] = query(db0, A, edns=opt(version=1))
    s["org_a_edns_version1"] = query("example.org", A, edns=opt(version=1))
    s["db0_a_class_ch"] = query(db0, A, qclass=3)
    s["db0_a_class_any"] = query(db0, A, qclass=255)
    s["db0_axfr"] = query(db0, AXFR)
    s["db0_ixfr"] = query(db0, IXFR)
    s["db0_ptr"] = query(db0, PTR)
    s["db0_a_cd_ad"] = query(db0, A, flags=0x0130)
    s["db0_a_notify"] = query(db0, SOA, flags=0x2000)
    s["db0_a_update"] = query(db0, SOA, flags=0x2800)
    s["db0_a_response"] = query(db0, A, flags=0x8180)
    s["db0_a_qd0"] = header(qd=0)
    s["db0_a_qd2"] = query(db0, A, counts=(2, 0, 0, 0)) + name(db0) + struct.pack(">HH", A, 1)
    s["db0_a_two_opts"] = query(db0, A, edns=opt() + opt(), counts=(1, 0, 0, 2))
    s["db0_a_opt_in_answer"] = query(db0, A, edns=opt(), counts=(1, 1, 0, 0))
    s["db0_a_opt_not_root"] = query(db0, A, extra=b"\xc0\x0c" + opt()[1:], counts=(1, 0, 0, 1))
    s["db0_a_opt_bad_option_len"] = query(db0, A, edns=opt(options=b"\x00\x0a\x00\x20abc"))
    s["db0_a_opt_truncated"] = query(db0, A, edns=opt()[:7])
    s["db0_a_arcount_no_opt"] = query(db0, A, counts=(1, 0, 0, 1))
    s["db0_a_with_answer_rr"] = query(
        db0, A, edns=opt(), counts=(1, 1, 0, 1),
        extra=b"",
    )[: -len(opt())] + b"\xc0\x0c" + struct.pack(">HHIH", A, 1, 60, 4) + b"\x0a\x00\x00\x01" + opt()
    s["db0_a_trailing_garbage"] = query(db0, A) + b"\xde\xad\xbe\xef"
    s["ptr_in_question"] = header() + b"\xc0\x0c" + struct.pack(">HH", A, 1)
    s["ptr_after_label"] = header() + b"\x04db-0\xc0\x0c" + struct.pack(">HH", A, 1)
    s["label_64"] = header() + b"\x40" + b"x" * 64 + b"\x00" + struct.pack(">HH", A, 1)
    s["label_type_01"] = header() + b"\x41" + b"x" * 1 + b"\x00" + struct.pack(">HH", A, 1)
    s["name_256"] = header() + (b"\x3f" + b"x" * 63) * 4 + b"\x00" + struct.pack(">HH", A, 1)
    s["label_with_dot"] = header() + b"\x0bexample.org\x00" + struct.pack(">HH", A, 1)
    s["binary_label"] = header() + b"\x03\x00\xff." + b"\x00" + struct.pack(">HH", A, 1)
    # EDNS in error replies: after the question, or right after the header with QDCOUNT 0.
    s["db0_a_notify_edns"] = query(db0, SOA, flags=0x2000, edns=opt(do=True))
    s["db0_a_update_edns"] = query(db0, SOA, flags=0x2800, edns=opt())
    s["qd0_edns"] = header(qd=0, ar=1) + opt(do=True)
    s["qd0_notify_edns"] = header(flags=0x2000, qd=0, ar=1) + opt()
    s["qd2_edns"] = query(db0, A, counts=(2, 0, 0, 1)) + name(db0) + struct.pack(">HH", A, 1) + opt()
    # TSIG-signed queries: NOTAUTH / BADKEY for our names, forwarded for the rest.
    s["db0_a_tsig"] = query(db0, A, counts=(1, 0, 0, 1)) + tsig()
    s["db0_a_edns_tsig"] = query(db0, A, edns=opt(do=True) + tsig(), counts=(1, 0, 0, 2))
    s["db0_a_tsig_key_compressed"] = query(db0, A, counts=(1, 0, 0, 1)) + tsig(key=b"\x03key\xc0\x0c")
    s["db0_a_tsig_key_forward_ptr"] = query(db0, A, counts=(1, 0, 0, 1)) + tsig(key=b"\xc0\x40")
    s["db0_a_tsig_alg_compressed"] = query(db0, A, counts=(1, 0, 0, 1)) + tsig(algorithm=b"\xc0\x0c")
    s["db0_a_tsig_then_opt"] = query(db0, A, edns=tsig() + opt(), counts=(1, 0, 0, 2))
    s["db0_a_two_tsig"] = query(db0, A, edns=opt() + tsig() + tsig(), counts=(1, 0, 0, 3))
    s["db0_a_tsig_in_authority"] = query(db0, A, edns=tsig() + opt(), counts=(1, 0, 1, 1))
    s["db0_a_tsig_class_in"] = query(db0, A, edns=opt() + tsig(rclass=1), counts=(1, 0, 0, 2))
    s["db0_a_tsig_other"] = query(db0, A, counts=(1, 0, 0, 1)) + tsig(other=b"\x00" * 6, mac=b"")
    s["db0_a_tsig_short"] = (query(db0, A, counts=(1, 0, 0, 1)) + tsig())[:-3]
    s["long_a_tsig_long_key"] = query(LONG, A, counts=(1, 0, 0, 1)) + tsig(key=(b"\x3d" + b"k" * 61) * 4 + b"\x00")
    s["pods_a_edns_tsig"] = query(RULES["pods"], A, edns=opt() + tsig(), counts=(1, 0, 0, 2))
    s["org_a_tsig"] = query("example.org", A, counts=(1, 0, 0, 1)) + tsig()
    full = query(db0, A, edns=opt(options=COOKIE))
    for cut in [0, 1, 11, 12, 13, 20, 32, 33, 34, 36, 40, len(full) - 1]:
        s[f"db0_a_edns_cut{cut}"] = full[:cut]
    return s


def wire_seeds():
    s = {}
    for key, qname in [("db0", MAPPED["db0"]), ("org", "example.org"), ("long", LONG)]:
        q = query(qname, A, edns=opt(options=COOKIE))
        r = bytearray(query(mixed(qname), A, flags=0x8180, counts=(1, 1, 0, 0)))
        r += b"\xc0\x0c" + struct.pack(">HHIH", A, 1, 60, 4) + b"\x0a\x00\x00\x01"
        split = struct.pack(">H", len(q))
        end = 12 + len(name(qname)) + 4
        s[f"{key}_pair"] = split + bytes([end % 256]) + q + bytes(r)
        s[f"{key}_pair_badsplit"] = struct.pack(">H", len(q) - 3) + bytes([20]) + q + bytes(r)
        s[f"{key}_pair_qd2"] = split + bytes([end % 256]) + q + bytes(r[:4]) + b"\x00\x02" + bytes(r[6:])
    q = query("example.org", A, edns=opt() + opt(), counts=(1, 0, 0, 2))
    s["two_opts"] = struct.pack(">H", len(q)) + b"\x00" + q + q
    q = query("example.org", A, edns=opt(options=b"\x00\x0a\x00\x05ab"))
    s["bad_option"] = struct.pack(">H", len(q)) + b"\x1d" + q + q
    q = header(an=1, ar=1) + name("x") + struct.pack(">HH", A, 1) + b"\xc0\x0c" + struct.pack(">HHIH", OPT, 512, 0, 0)
    s["opt_in_answer"] = struct.pack(">H", len(q)) + b"\x00" + q
    s["ptr_question"] = b"\x00\x20\x0c" + header() + b"\xc0\x0c\x00\x01\x00\x01" + header(flags=0x8000)
    s["short"] = b"\x00\x05\x00" + header()[:5]
    q = query("x", A, counts=(1, 0, 0, 2)) + opt() + tsig(key=b"\x03key\xc0\x0c")
    s["opt_tsig"] = struct.pack(">H", len(q)) + bytes([12 + 3 + 4]) + q + q
    q = header(qd=0, ar=1) + opt()
    s["qd0_opt"] = struct.pack(">H", len(q)) + b"\x0c" + q + q
    return s


MAPPINGS = {
    "readme": "ttl: 5\nhosts:\n  db-0.db.example.com: 10.42.0.12\n  db-1.db.example.com: [10.42.0.13, \"fd00::13\"]\n",
    "no_ttl": "hosts:\n  db-0.db.example.com: 10.42.0.12\n",
    "empty_hosts": "hosts:\n",
    "empty_hosts_flow": "hosts: {}\n",
    "trailing_dot_mixed_case": "hosts:\n  DB-0.Db.Example.COM.: 10.42.0.12\n",
    "block_list": "ttl: 30\nhosts:\n  db-0.db.example.com:\n    - 10.42.0.12\n    - \"fd00::12\"\n    - 10.42.0.12\n",
    "flow_mapping": "{ttl: 1, hosts: {a.b: 1.2.3.4, c.d: [\"::1\", 5.6.7.8]}}\n",
    "quoted": "'ttl': 2\n\"hosts\":\n  'x_srv.example': ' 10.0.0.1 '\n",
    "comments": "# mapping\nttl: 5 # seconds\nhosts: # none yet\n  # db-0: 1.2.3.4\n",
    "anchors": "hosts:\n  a.example: &ip 10.0.0.1\n  b.example: *ip\n  c.example: &l [10.0.0.2, \"::2\"]\n  d.example: *l\n",
    "doc_markers": "---\nhosts:\n  a.example: 10.0.0.1\n...\n",
    "crlf": "ttl: 5\r\nhosts:\r\n  a.example: 10.0.0.1\r\n",
    "ipv4_mapped_v6": "hosts:\n  a.example: \"::ffff:10.0.0.1\"\n  b.example: \"fe80::1%eth0\"\n",
    "ttl_max": "ttl: 2147483647\nhosts:\n  a: 1.1.1.1\n",
    "per_name_ttl": "ttl: 5\nhosts:\n  db-0.db.example.com: 10.42.0.12\n  db-1.db.example.com: { addresses: [10.42.0.13], ttl: 30 }\n",
    "rules_readme": "hosts:\n  db-0.db.example.com: 10.42.0.12\nrules:\n  - host: legacy.example.com\n    result: 10.1.2.3\n"
    "  - host: 'db-(\\d+)\\.db-replica\\.example\\.com'\n    regex: true\n"
    "    result: 'db-replica-${1}.db-replica.prod.svc.cluster.local'\n    ttl: 30\n",
    "rules_named_group": "hosts: {}\nrules:\n  - host: '(?P<pod>[a-z0-9-]+)\\.pods\\.example\\.com'\n    regex: true\n    result: '${pod}.db.example.com'\n",
    "rules_flow": "hosts: {}\nrules: [{host: a.example, result: \"fd00::1\"}, {host: 'x(.*)', regex: true, result: 'y$1.z', ttl: 3}]\n",
    "rules_only": "rules:\n  - host: legacy.example.com\n    result: 10.1.2.3\n",
    "rules_only_ttl_after": "rules:\n  - host: a.example\n    result: 10.1.2.3\nttl: 9\n",
    "rules_null": "ttl: 5\nrules:\n",
    "shared_address": "hosts:\n  a.example: 10.0.0.1\n  b.example: [10.0.0.1, \"::1\"]\n  c.example: \"::1\"\n",
    "err_rule_bad_regex": "hosts: {}\nrules:\n  - host: 'db-(\\d+'\n    regex: true\n    result: 10.0.0.1\n",
    "err_rule_bad_group": "hosts: {}\nrules:\n  - host: 'db-(\\d+)'\n    regex: true\n    result: 'x-${2}.example'\n",
    "err_rule_unclosed_group": "hosts: {}\nrules:\n  - host: 'db-(\\d+)'\n    regex: true\n    result: 'x-${1.example'\n",
    "err_rule_bad_result": "hosts: {}\nrules:\n  - host: a.example\n    result: 'not a name!'\n",
    "err_rule_no_result": "hosts: {}\nrules:\n  - host: a.example\n",
    "err_rule_unknown_key": "hosts: {}\nrules:\n  - host: a.example\n    result: 1.2.3.4\n    weight: 3\n",
    "err_rule_huge_regex": "hosts: {}\nrules:\n  - host: '(a{1000}){1000}'\n    regex: true\n    result: 1.2.3.4\n",
    "err_per_name_ttl_big": "hosts:\n  a.example: { addresses: [1.2.3.4], ttl: 4294967295 }\n",
    "err_per_name_no_addresses": "hosts:\n  a.example: { ttl: 3 }\n",
    # Invalid ones: each is an error naming file, line and column.
    "err_empty": "",
    "err_comments_only": "# nothing\n\n",
    "err_bad_ip": "hosts:\n  db-1.db.example.com: 10.42.0.999\n",
    "err_duplicate": "hosts:\n  db-0.db.example.com: 10.42.0.12\n  DB-0.db.example.com.: 10.42.0.13\n",
    "err_unknown_key": "ttl: 5\nhost:\n  a: 1.1.1.1\n",
    "err_extra_key": "hosts: {}\nzones: []\n",
    "err_no_hosts": "ttl: 5\n",
    "err_ttl_big": "ttl: 2147483648\nhosts: {}\n",
    "err_ttl_negative": "ttl: -1\nhosts: {}\n",
    "err_ttl_string": "ttl: 5s\nhosts: {}\n",
    "err_empty_list": "hosts:\n  a.example: []\n",
    "err_nested_map": "hosts:\n  a.example: {ip: 1.2.3.4}\n",
    "err_number_addr": "hosts:\n  a.example: 12\n",
    "err_null_addr": "hosts:\n  a.example:\n",
    "err_bad_name_space": "hosts:\n  a b.example: 1.2.3.4\n",
    "err_bad_name_dots": "hosts:\n  a..example: 1.2.3.4\n",
    "err_label_64": "hosts:\n  " + "x" * 64 + ".example: 1.2.3.4\n",
    "err_name_254": "hosts:\n  " + ".".join(["abcdefghi"] * 25) + ".abcd: 1.2.3.4\n",
    "ok_name_253": "hosts:\n  " + LONG + ": 1.2.3.4\n",
    "err_non_ascii_name": "hosts:\n  d\u00e9j\u00e0.example: 1.2.3.4\n",
    "err_unquoted_v6_flow": "hosts:\n  a.example: [fd00::1]\n",
    "err_tab_indent": "hosts:\n\ta.example: 1.2.3.4\n",
    "err_unclosed_flow": "hosts: {a.example: [1.2.3.4\n",
    "err_hosts_list": "hosts:\n  - a.example\n",
    "err_top_list": "- hosts\n",
    "err_scalar": "hosts\n",
    "err_two_docs": "hosts: {}\n---\nhosts: {}\n",
    "err_unknown_alias": "hosts:\n  a.example: *nope\n",
    "err_merge_key": "base: &b\n  a.example: 1.1.1.1\nhosts:\n  <<: *b\n",
    "err_tagged": "hosts:\n  a.example: !!binary aGVsbG8=\n",
    "err_dup_yaml_key": "hosts: {}\nhosts: {}\n",
}


def main():
    for target, seeds in [("query_path", query_path_seeds()), ("wire", wire_seeds()),
                          ("mapping_parse", {k: v.encode() for k, v in MAPPINGS.items()})]:
        d = os.path.join(ROOT, target)
        os.makedirs(d, exist_ok=True)
        for key, data in seeds.items():
            with open(os.path.join(d, key), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
