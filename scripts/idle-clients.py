#!/usr/bin/env python3
"""Holds N idle keep-alive clients on a proxy and reports what they cost it.

    idle-clients.py PORT N PID NAME

Each client sends one keep-alive request, reads the whole answer, and then
stays connected and silent. The proxy's RSS (VmRSS of PID) is read before
the first client connects and once all N are idle.
"""
import resource
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed in the body")
        body += chunk


def main():
    port, count, pid, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    time.sleep(0.3)
    before = rss_kib(pid)
    clients = []
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        read_response(sock)
        clients.append(sock)
    time.sleep(1.0)
    after = rss_kib(pid)
    # Every client still there: one more request on the first and the last.
    for sock in (clients[0], clients[-1]):
        sock.sendall(request)
        read_response(sock)
    per_client = (after - before) * 1024 / count
    print(f"{name}: {count} idle keep-alive clients: RSS {before} KiB before, {after} KiB with them; "
          f"{per_client:,.0f} bytes per client")
    for sock in clients:
        sock.close()


if __name__ == "__main__":
    main()
