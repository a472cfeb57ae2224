#!/usr/bin/env python3
# benches/first_answer.py BINARY MAPPING: start-to-first-answer time of the daemon, 10 runs
# (start the process, send the query every 2 ms until a reply arrives). Loopback only.
import subprocess, socket, time, struct, sys
B = sys.argv[1]; M = sys.argv[2]
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(bytes([len(l)]) + l.encode() for l in "kurrentdb-0.kurrentdb.example.com".split(".")) + b"\x00\x00\x01\x00\x01"
res = []
for i in range(10):
    t0 = time.perf_counter()
    p = subprocess.Popen([B, "--listen", "127.0.0.1:15391", "--mapping", M, "--upstream", "127.0.0.1:9", "--admin", "off"], stderr=subprocess.DEVNULL)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.002)
    while True:
        try:
            s.sendto(q, ("127.0.0.1", 15391)); r = s.recv(512)
            if r[:2] == b"\x12\x34": break
        except OSError: pass
    res.append((time.perf_counter() - t0) * 1000)
    p.terminate(); p.wait()
res.sort(); print("start to first answer ms: median %.1f, max %.1f" % (res[len(res)//2], res[-1]))
