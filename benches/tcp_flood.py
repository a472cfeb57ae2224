#!/usr/bin/env python3
"""benches/tcp_flood.py - TCP clients that pipeline queries and never read (issue 19).

Starts splitdns (and a scripted upstream for the forwarded cases), opens CLIENTS connections
that each write pipelined queries until their socket blocks and never read a reply, then
measures how long NEW clients wait for an answer to a mapped name, and the daemon's resident
memory (VmRSS) and the kernel memory of its client sockets (`ss -tm`: receive queue, send queue,
forward allocation) before, during (peak) and 3 s and 10 s after the flood clients close. The flood clients keep
pipelining (whatever their sockets take) until the new clients have been measured.

  benches/tcp_flood.py --bin target/release/splitdns [--mode local|forward|large|bigreply]

Modes (what the flood clients ask):
  local     a mapped name (answered locally)
  forward   unmapped names, the upstream answers after --delay with a small reply
  large     unmapped names in 60,000-octet queries (trailing octets), upstream answers after --delay
  bigreply  unmapped names whose answer is --reply-size octets (TXT), upstream answers at once

Prints one JSON object. Everything listens on 127.0.0.1; only processes started here are stopped.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time

MAPPING = "hosts:\n  db-0.db.example.com: 10.42.0.12\n"


def qname(name):
    out = b""
    for label in name.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, qtype=1, qid=None, pad_to=0):
    qid = random.randrange(65536) if qid is None else qid
    msg = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname(name) + struct.pack(">HH", qtype, 1)
    if pad_to > len(msg):
        msg += b"\xab" * (pad_to - len(msg))  # trailing octets after the question
    return msg


def framed(msg):
    return struct.pack(">H", len(msg)) + msg


def question_end(msg):
    at = 12
    while at < len(msg):
        n = msg[at]
        at += 1 + n
        if n == 0:
            break
    return min(at + 4, len(msg))


def reply_for(q, size):
    end = question_end(q)
    r = bytearray(q[:end])
    r[2] |= 0x80
    r[3] = 0x80
    r[6:12] = b"\0" * 6
    r[4:6] = b"\0\x01"
    if size > len(r) + 16:
        # One TXT record of 255-octet strings filling the reply to about `size` octets.
        room = size - len(r) - 12
        strings = b""
        while len(strings) + 256 <= room:
            strings += b"\xff" + b"x" * 255
        r[6:8] = b"\0\x01"
        r += b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 60, len(strings)) + strings
    return bytes(r)


# ---------------------------------------------------------------- upstream (child process)

async def upstream_main(port, delay, reply_size):
    loop = asyncio.get_running_loop()

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, t):
            self.t = t

        def datagram_received(self, data, addr):
            if len(data) >= 12:
                self.t.sendto(reply_for(data, 0), addr)

    await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", port))

    async def serve(reader, writer):
        try:
            while True:
                n = struct.unpack(">H", await reader.readexactly(2))[0]
                q = await reader.readexactly(n)
                name_is_probe = q[12:13] == b"\0"
                if not name_is_probe and delay > 0:
                    await asyncio.sleep(delay)
                writer.write(framed(reply_for(q, 0 if name_is_probe else reply_size)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- measurement

def free_port():
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
            t.close()
            u.close()
            return port
        except OSError:
            u.close()
            t.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def daemon_sock_kib(port):
    """Kernel memory of the daemon's client sockets (local port `port`): receive queue, send
    queue and forward allocation from `ss -tm` (skmem r + w + f), KiB."""
    out = subprocess.run(["ss", "-tmnH", "state", "all", f"sport = :{port}"],
                         capture_output=True, text=True).stdout
    total = 0
    for field in out.split("skmem:(")[1:]:
        kv = {}
        for item in field.split(")")[0].split(","):
            k = item.rstrip("0123456789")
            kv[k] = int(item[len(k):] or 0)
        total += kv.get("r", 0) + kv.get("w", 0) + kv.get("f", 0)
    return total // 1024


def wait_answer(port, timeout):
    """One new client: a mapped name over TCP; seconds to the answer, or None."""
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.settimeout(max(0.01, timeout - (time.monotonic() - t0)))
        s.sendall(framed(query("db-0.db.example.com", qid=4242)))
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
        s.close()
        return time.monotonic() - t0
    except OSError:
        return None


def flood(port, clients, mode, per_client_limit):
    """Opens the flood connections; each gets its pipelined queries to write (see top_up)."""
    socks, pending = [], []
    for i in range(clients):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # does not read: keep it small
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
        buf = bytearray()
        for j in range(per_client_limit):
            if mode == "local":
                m = query("db-0.db.example.com")
            elif mode == "large":
                m = query(f"q{i}-{j}.flood.example.org", pad_to=60000)
            else:
                m = query(f"q{i}-{j}.flood.example.org")
            buf += framed(m)
            if len(buf) > 1 << 20:
                break
        pending.append(buf)
    return socks, pending


def top_up(socks, pending):
    """Writes what each flood connection still has to send, until its socket would block."""
    sent = 0
    for s, buf in zip(socks, pending):
        try:
            while buf:
                n = s.send(buf[:65536])
                del buf[:n]
                sent += n
        except (BlockingIOError, OSError):
            pass
    return sent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/splitdns")
    ap.add_argument("--mode", default="local", choices=["local", "forward", "large", "bigreply"])
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--queries", type=int, default=30000, help="pipelined per client (at most 1 MiB of them)")
    ap.add_argument("--new", type=int, default=8, help="new clients measured")
    ap.add_argument("--new-timeout", type=float, default=16.0)
    ap.add_argument("--delay", type=float, default=1.5, help="upstream delay (forward, large)")
    ap.add_argument("--reply-size", type=int, default=60000, help="bigreply: reply octets")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds of flood before the new clients")
    ap.add_argument("--extra", default="", help="extra splitdns arguments")
    ap.add_argument("--upstream-child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.upstream_child:
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        delay = a.delay if a.mode in ("forward", "large") else 0.0
        size = a.reply_size if a.mode == "bigreply" else 0
        asyncio.run(upstream_main(a.upstream_child, delay, size))
        return

    up_port = free_port()
    up = subprocess.Popen([sys.executable, __file__, "--upstream-child", str(up_port),
                           "--mode", a.mode, "--delay", str(a.delay),
                           "--reply-size", str(a.reply_size)], stderr=subprocess.DEVNULL)
    port = free_port()
    mapping = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    mapping.write(MAPPING)
    mapping.close()
    d = subprocess.Popen([a.bin, "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{up_port}",
                          "--mapping", mapping.name, "--admin", "off", "--log-level", "warn"]
                         + a.extra.split(), stderr=subprocess.DEVNULL)
    out = {"mode": a.mode, "clients": a.clients, "bin": a.bin, "extra": a.extra}
    socks = []
    try:
        for _ in range(100):
            if wait_answer(port, 0.2) is not None:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        out["rss_before_kib"] = rss_kib(d.pid)
        out["sock_before_kib"] = daemon_sock_kib(port)
        socks, pending = flood(port, a.clients, a.mode, a.queries)
        sent = 0
        peak, mem_peak = 0, 0
        t_end = time.monotonic() + a.hold
        while time.monotonic() < t_end:
            sent += top_up(socks, pending)
            peak = max(peak, rss_kib(d.pid))
            mem_peak = max(mem_peak, daemon_sock_kib(port))
            time.sleep(0.05)
        out["flood_bytes_sent"] = sent
        out["flood_bytes_unsent"] = sum(len(b) for b in pending)
        out["rss_during_kib"] = rss_kib(d.pid)
        waits = []
        for _ in range(a.new):
            top_up(socks, pending)
            waits.append(wait_answer(port, a.new_timeout))
        out["new_clients_answered"] = sum(w is not None for w in waits)
        out["new_client_seconds"] = [None if w is None else round(w, 3) for w in waits]
        t_end = time.monotonic() + 2
        while time.monotonic() < t_end:
            peak = max(peak, rss_kib(d.pid))
            mem_peak = max(mem_peak, daemon_sock_kib(port))
            time.sleep(0.05)
        out["rss_peak_kib"] = peak
        out["sock_peak_kib"] = mem_peak
        for s in socks:
            s.close()
        socks = []
        time.sleep(3)
        out["rss_after_kib"] = rss_kib(d.pid)
        out["sock_after_kib"] = daemon_sock_kib(port)
        out["after_answer_seconds"] = wait_answer(port, 5)
        time.sleep(7)
        out["rss_after10_kib"] = rss_kib(d.pid)
        out["sock_after10_kib"] = daemon_sock_kib(port)
    finally:
        for s in socks:
            s.close()
        d.terminate()
        up.terminate()
        for p in (d, up):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        os.unlink(mapping.name)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
