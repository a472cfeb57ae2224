"""benches/security/dnslib.py - the little DNS wire codec the security harness needs (stdlib only).

Only what the harness uses: build a query (optionally with EDNS and RFC 7830 padding to a given
size), read a message's header, question and A records, and switch the calling thread into a
named network namespace (setns(2): Python 3.11 has no os.setns, so ctypes).
"""

import ctypes
import os
import random
import struct

A, NS, SOA, TXT, OPT, HINFO = 1, 2, 6, 16, 41, 13
CLONE_NEWNET = 0x40000000


def encode_name(name):
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, qtype=A, qid=None, edns=None, size=0, rd=True):
    """A query; edns = advertised UDP size (adds an OPT); size pads it to that many octets with
    an EDNS Padding option (RFC 7830 §3), so a large query is still a well-formed one."""
    qid = random.randrange(65536) if qid is None else qid
    flags = 0x0100 if rd else 0
    body = encode_name(name) + struct.pack(">HH", qtype, 1)
    if edns is None and size == 0:
        return struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 0) + body
    msg = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1) + body
    opt_fixed = 11  # root name, type, class (= payload), ttl, rdlen
    pad = 0
    if size:
        pad = max(0, size - len(msg) - opt_fixed - 4)
        rdata = struct.pack(">HH", 12, pad) + b"\0" * pad
    else:
        rdata = b""
    msg += b"\0" + struct.pack(">HHIH", OPT, edns or 1232, 0, len(rdata)) + rdata
    return msg


def read_name(msg, at):
    """(name, offset after it); follows compression pointers (bounded)."""
    labels, jumps, end = [], 0, None
    while True:
        if at >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[at]
        if n & 0xC0 == 0xC0:
            if at + 1 >= len(msg):
                raise ValueError("bad pointer")
            if end is None:
                end = at + 2
            at = ((n & 0x3F) << 8) | msg[at + 1]
            jumps += 1
            if jumps > 64:
                raise ValueError("pointer loop")
            continue
        at += 1
        if n == 0:
            break
        labels.append(msg[at : at + n].decode("ascii", "replace"))
        at += n
    return ".".join(labels) + ".", (end if end is not None else at)


def parse(msg):
    """dict: id, flags, rcode, tc, qname (as sent), qtype, qbytes (question wire), answers_a
    (list of dotted quads), ancount. Raises ValueError on a short or broken message."""
    if len(msg) < 12:
        raise ValueError("short")
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    out = {"id": qid, "flags": flags, "rcode": flags & 0xF, "tc": bool(flags & 0x0200),
           "qr": bool(flags & 0x8000), "ancount": an, "qname": None, "qtype": None, "answers_a": []}
    at = 12
    if qd:
        qstart = at
        out["qname"], at = read_name(msg, at)
        out["qtype"] = struct.unpack(">H", msg[at : at + 2])[0]
        at += 4
        out["qbytes"] = msg[qstart:at]
    for _ in range(an):
        _, at = read_name(msg, at)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[at : at + 10])
        at += 10
        if rtype == A and rdlen == 4:
            out["answers_a"].append(".".join(str(b) for b in msg[at : at + 4]))
        at += rdlen
    return out


def has_opt(msg):
    """(udp size or None) of an OPT record in the additional section of a query."""
    try:
        qd, an, ns, ar = struct.unpack(">HHHH", msg[4:12])
        at = 12
        for _ in range(qd):
            _, at = read_name(msg, at)
            at += 4
        for _ in range(an + ns + ar):
            _, at = read_name(msg, at)
            rtype, rclass, _, rdlen = struct.unpack(">HHIH", msg[at : at + 10])
            if rtype == OPT:
                return rclass
            at += 10 + rdlen
    except (ValueError, struct.error, IndexError):
        return None
    return None


_libc = None


def setns(name):
    """Moves the calling thread into network namespace NAME (/run/netns/NAME). Sockets made
    afterwards by this thread live there; sockets made before stay where they were."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    path = name if name.startswith("/") else f"/run/netns/{name}"
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)
