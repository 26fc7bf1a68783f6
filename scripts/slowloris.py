#!/usr/bin/env python3
"""Measures a normal client's latency through rsp with and without N Slowloris
connections trickling one header byte per second.

Usage: scripts/slowloris.py HOST PORT [CONNECTIONS] [SECONDS]
rsp needs max_connections above CONNECTIONS (and client_header above SECONDS
for the trickling connections to stay open throughout).
"""
import resource
import socket
import statistics
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def latencies(n=300):
    out = []
    sock = socket.create_connection((host, port))
    for _ in range(n):
        start = time.perf_counter()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
        while len(body) < length:
            body += sock.recv(65536)
        out.append((time.perf_counter() - start) * 1000)
    sock.close()
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.99) - 1]


base = latencies()
print(f"without Slowloris: median {base[0]:.3f} ms, p99 {base[1]:.3f} ms")
slow = []
for _ in range(count):
    s = socket.create_connection((host, port))
    s.setblocking(False)
    s.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    slow.append(s)
print(f"{len(slow)} Slowloris connections open")
worst = (0.0, 0.0)
end = time.time() + seconds
while time.time() < end:
    tick = time.time()
    for s in slow:
        try:
            s.send(b"X")
        except OSError:
            pass
    worst = max(worst, latencies(100))
    time.sleep(max(0.0, 1.0 - (time.time() - tick)))
print(f"with {count} Slowloris connections: worst median {worst[0]:.3f} ms, worst p99 {worst[1]:.3f} ms")
