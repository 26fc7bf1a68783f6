#!/usr/bin/env python3
"""Reads one large response through rsp at a fixed rate while sampling rsp's RSS.

Usage: scripts/slow-client.py URL RSP_PID EXPECTED_SHA256 [BYTES_PER_SECOND]
Prints the RSS range seen and whether the body's SHA-256 matched.
"""
import hashlib
import socket
import sys
import time
from urllib.parse import urlparse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    url, pid, expected = urlparse(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rate = int(sys.argv[4]) if len(sys.argv) > 4 else 1024 * 1024
    sock = socket.create_connection((url.hostname, url.port or 80))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(f"GET {url.path} HTTP/1.1\r\nHost: {url.hostname}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    digest = hashlib.sha256(body)
    received = len(body)
    samples = [rss_kib(pid)]
    start = time.monotonic()
    step = 64 * 1024
    while received < length:
        chunk = sock.recv(min(step, length - received))
        if not chunk:
            break
        digest.update(chunk)
        received += len(chunk)
        ahead = received / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
        if len(samples) < (time.monotonic() - start) + 1:
            samples.append(rss_kib(pid))
    elapsed = time.monotonic() - start
    ok = digest.hexdigest() == expected and received == length
    print(f"received {received} of {length} bytes in {elapsed:.0f} s ({received / elapsed / 1e6:.2f} MB/s)")
    print(f"rsp RSS over {len(samples)} samples: min {min(samples)} KiB, max {max(samples)} KiB")
    print("body intact" if ok else "BODY MISMATCH")
    sys.exit(0 if ok else 1)


main()
