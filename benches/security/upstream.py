#!/usr/bin/env python3
"""benches/security/upstream.py - the scripted upstream of the security harness (stdlib only).

Serves UDP and TCP on --listen and answers by name (case-insensitively; the question is echoed
byte for byte, 0x20 case included, as RFC 5452 §9 resolvers expect):

  . NS / . SOA                 answered at once (the sidecars' health probes)
  *.slow.example.net A         192.0.2.1 after --delay ms (the window the spoofer aims at); with
                               --delay-all every answer waits --delay ms (an upstream that far)
  *.silent.example.net         never answered (memory and alias floods: the sidecar holds them)
  big.example.net TXT          about 3,900 octets of TXT (amplification); TC when the client's
                               UDP size is smaller
  host-N.example.net A         198.18.x.y (targets of the harness's alias rule), TTL 5
  anything else, A             192.0.2.2, TTL 5; other types: NODATA
  *.invalid                    NXDOMAIN (the sidecars' loop checks)

Every query but those under "silent" is logged as one JSON line (t, proto, src, sport, id,
qname, qtype) to --log, flushed at once: the harness counts upstream queries per name and the
distinct source ports, and the spoofer learns the sidecar's source port from it, the way a leaked
query log would give it. Silent names are only counted (in the final "silent" line at exit).
"""

import argparse
import asyncio
import json
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
import dnslib  # noqa: E402

BIG_TXT = [bytes([65 + i % 26]) * 250 for i in range(15)]  # 15 strings of 250 = ~3,800 octets


class Upstream:
    def __init__(self, args):
        self.delay = args.delay / 1000.0
        self.delay_all = args.delay_all
        self.log = open(args.log, "a", buffering=1)
        self.silent = 0

    def record(self, proto, src, msg, q):
        self.log.write(json.dumps({"t": round(time.time(), 4), "proto": proto, "src": src[0],
                                   "sport": src[1], "id": q["id"], "qname": q["qname"],
                                   "qtype": q["qtype"], "len": len(msg)}) + "\n")

    def answer(self, msg, q, udp):
        """(delay seconds, reply bytes) or None for silence."""
        name = q["qname"].lower()
        qtype = q["qtype"]
        edns = dnslib.has_opt(msg)
        limit = 65535 if not udp else max(512, edns or 512)
        rcode, answers, delay, ttl = 0, [], 0.0, 5
        if name.endswith(".silent.example.net."):
            return None
        if name.endswith(".invalid."):
            rcode = 3
        elif name == ".":
            if qtype == dnslib.NS:
                answers.append((dnslib.NS, dnslib.encode_name("a.root.test")))
            elif qtype == dnslib.SOA:
                answers.append((dnslib.SOA, dnslib.encode_name("a.root.test") +
                                dnslib.encode_name("h.root.test") + struct.pack(">IIIII", 1, 3600, 900, 604800, 60)))
        elif name == "big.example.net." and qtype == dnslib.TXT:
            answers.append((dnslib.TXT, b"".join(bytes([len(s)]) + s for s in BIG_TXT)))
        elif qtype == dnslib.A:
            if name.endswith(".slow.example.net."):
                answers.append((dnslib.A, bytes([192, 0, 2, 1])))
            elif name.startswith("host-") and name.endswith(".example.net."):
                try:
                    n = int(name[5:].split(".")[0])
                except ValueError:
                    n = 0
                answers.append((dnslib.A, bytes([198, 18, (n // 250) % 256, n % 250 + 1])))
            elif name == "www.example.net.":
                answers.append((dnslib.A, bytes([192, 0, 2, 10])))
            else:
                answers.append((dnslib.A, bytes([192, 0, 2, 2])))
        if self.delay_all or name.endswith(".slow.example.net."):
            delay = self.delay
        flags = 0x8000 | (msg[2] & 0x01) << 8 | 0x0080 | rcode  # QR, RD echoed, RA
        body = b""
        for rtype, rdata in answers:
            body += b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata
        opt = b"\0" + struct.pack(">HHIH", dnslib.OPT, 1232, 0, 0) if edns else b""
        head = struct.pack(">HHHHHH", q["id"], flags, 1, len(answers), 0, 1 if edns else 0)
        reply = head + q["qbytes"] + body + opt
        if len(reply) > limit:  # RFC 2181 §9: no partial RRset; TC and the question only
            reply = struct.pack(">HHHHHH", q["id"], flags | 0x0200, 1, 0, 0, 1 if edns else 0) + q["qbytes"] + opt
        return delay, reply


class UdpProto(asyncio.DatagramProtocol):
    def __init__(self, up):
        self.up = up

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        try:  # floods must not crowd out the queries that get answered (SO_RCVBUFFORCE: root)
            sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
        except OSError:
            pass

    def datagram_received(self, msg, src):
        try:
            q = dnslib.parse(msg)
        except (ValueError, struct.error, IndexError):
            return
        if q["qr"] or q["qname"] is None:
            return
        res = self.up.answer(msg, q, udp=True)
        if res is None:
            self.up.silent += 1
            return
        self.up.record("udp", src, msg, q)
        delay, reply = res
        if delay:
            asyncio.get_running_loop().call_later(delay, self.transport.sendto, reply, src)
        else:
            self.transport.sendto(reply, src)


async def tcp_conn(up, reader, writer):
    src = writer.get_extra_info("peername")
    try:
        while True:
            n = struct.unpack(">H", await reader.readexactly(2))[0]
            msg = await reader.readexactly(n)
            try:
                q = dnslib.parse(msg)
            except (ValueError, struct.error, IndexError):
                return
            res = up.answer(msg, q, udp=False)
            if res is None:
                up.silent += 1
                continue
            up.record("tcp", src, msg, q)
            delay, reply = res
            if delay:
                await asyncio.sleep(delay)
            writer.write(struct.pack(">H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="10.98.0.2:53")
    ap.add_argument("--delay", type=float, default=150.0, help="ms, for *.slow.example.net")
    ap.add_argument("--delay-all", action="store_true", help="every answer after --delay: an upstream that far away")
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    up = Upstream(args)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: UdpProto(up), local_addr=(host, int(port)))
    server = await asyncio.start_server(lambda r, w: tcp_conn(up, r, w), host, int(port), backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream on {args.listen}, delay {args.delay} ms", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    up.log.write(json.dumps({"silent": up.silent}) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
