#!/usr/bin/env python3
"""Holds N idle HTTP/2 connections over TLS on a proxy and reports what they
cost it.

    idle-h2-clients.py PORT N PID NAME

Each client makes a TLS connection offering only h2 over ALPN, sends the
preface and its SETTINGS, reads the server's SETTINGS (and acknowledges
them) and the server's acknowledgement of its own, and then stays connected
and silent, with no stream open. The proxy's RSS (VmRSS of PID) is read
before the first client connects (after one warm-up connection with one
request, closed again) and once all N are idle. Needs Python's `h2`.
"""
import resource
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    return ctx


def receive(sock, conn):
    data = sock.recv(65536)
    if not data:
        raise RuntimeError("the proxy closed the connection")
    events = conn.receive_data(data)
    pending = conn.data_to_send()
    if pending:
        sock.sendall(pending)
    return events


def connect(ctx, port):
    """A TLS connection that agreed on h2, with SETTINGS exchanged both ways."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="bench.example")
    if sock.selected_alpn_protocol() != "h2":
        raise RuntimeError(f"ALPN agreed on {sock.selected_alpn_protocol()!r}, not h2")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    theirs = ours = False
    while not (theirs and ours):
        for event in receive(sock, conn):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                theirs = True
            elif isinstance(event, h2.events.SettingsAcknowledged):
                ours = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise RuntimeError(f"GOAWAY during the handshake: {event.error_code}")
    return sock, conn


def get(sock, conn):
    """GET / on the connection: the status and the body's length."""
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "bench.example")],
        end_stream=True,
    )
    sock.sendall(conn.data_to_send())
    status, length = None, 0
    while True:
        for event in receive(sock, conn):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                status = dict(event.headers)[":status"]
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                length += len(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
                sock.sendall(conn.data_to_send())
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                return status, length
            elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise RuntimeError(f"the request failed: {event}")


def main():
    port, count, pid, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = context()
    sock, conn = connect(ctx, port)
    status, length = get(sock, conn)
    if status != "200":
        raise RuntimeError(f"warm-up request answered {status}")
    sock.close()
    time.sleep(0.3)
    before = rss_kib(pid)
    clients = [connect(ctx, port) for _ in range(count)]
    time.sleep(1.0)
    after = rss_kib(pid)
    # Every connection still there: one request on the first and the last.
    for sock, conn in (clients[0], clients[-1]):
        status, length = get(sock, conn)
        if status != "200":
            raise RuntimeError(f"a request on an idle connection answered {status}")
    per_connection = (after - before) * 1024 / count
    print(f"{name}: {count} idle HTTP/2 connections over TLS: RSS {before} KiB before, {after} KiB with them; "
          f"{per_connection:.0f} bytes per connection")
    for sock, _ in clients:
        sock.close()


if __name__ == "__main__":
    main()
