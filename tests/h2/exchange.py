"""HTTP/2 exchanges with rsp through Python's h2 package, for what curl
cannot show: trailers both ways, GOAWAY on a signal, flow control.

    exchange.py trailers PORT          a chunked POST with trailers; prints
                                       the response and its trailers
    exchange.py goaway PORT PID SIG    a slow request, then kill(PID, SIG):
                                       prints the GOAWAY and the answer
    exchange.py upload PORT SECONDS    uploads until flow control stops it
                                       for SECONDS; prints the bytes sent
    exchange.py get PORT PATH...       one stream for each path, at once, on
                                       one connection: statuses and bodies
    exchange.py hold PORT N SIZE SECS  N downloads of SIZE bytes that are
                                       never read, for SECS seconds
    exchange.py busy_idle PORT N PID   N connections, each 20 downloads of
                                       /size/100000, then all idle: prints
                                       PID's RSS growth per connection
    exchange.py early PORT PATH        a POST of 10 MB to PATH, its first
                                       16 KB sent: the answer and the reset
    exchange.py parallel PORT N SIZE   N downloads of SIZE bytes at once, in
                                       the default windows (64 KiB for the
                                       connection too); prints their lengths
Output is one JSON object."""

import json
import os
import signal
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def request(conn, path, method="GET", end_stream=True, extra=()):
    headers = [(":method", method), (":scheme", "http"),
               (":authority", "localhost"), (":path", path)] + list(extra)
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers, end_stream=end_stream)
    return stream


def pump(sock, conn, until, timeout=10):
    """Reads events until `until(events)` says so; returns all events."""
    seen = []
    sock.settimeout(timeout)
    deadline = time.time() + timeout
    while time.time() < deadline and not until(seen):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            seen.append("closed")
            break
        for event in conn.receive_data(data):
            seen.append(event)
            if isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sock.sendall(conn.data_to_send())
    return seen


def ended(stream):
    return lambda seen: any(
        isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == stream
        for e in seen) or "closed" in seen


def answer(seen, stream):
    status, body, trailers, reset = None, b"", {}, None
    for event in seen:
        if getattr(event, "stream_id", None) != stream:
            continue
        if isinstance(event, h2.events.ResponseReceived):
            status = dict(event.headers)[b":status"].decode()
        elif isinstance(event, h2.events.DataReceived):
            body += event.data
        elif isinstance(event, h2.events.TrailersReceived):
            trailers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, h2.events.StreamReset):
            reset = int(event.error_code)
    return {"status": status, "body": body.decode("latin-1"), "trailers": trailers, "reset": reset}


def trailers(port):
    sock, conn = connect(port)
    stream = request(conn, "/post", "POST", end_stream=False,
                     extra=[("cookie", "a=1"), ("cookie", "b=2")])
    conn.send_data(stream, b"hello ")
    conn.send_data(stream, b"world")
    conn.send_headers(stream, [("x-checksum", "abc")], end_stream=True)
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, ended(stream))
    return answer(seen, stream)


def raw_frames(sock, conn, timeout):
    """Reads frames by hand (h2 refuses any after a GOAWAY): yields
    (type, flags, stream, payload) until the connection closes."""
    sock.settimeout(timeout)
    buffer = b""
    while True:
        while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
            length = int.from_bytes(buffer[:3], "big")
            kind, flags = buffer[3], buffer[4]
            stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            yield kind, flags, stream, buffer[9:9 + length]
            buffer = buffer[9 + length:]
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return
        if not data:
            yield "closed", 0, 0, b""
            return
        buffer += data


def goaway(port, pid, sig):
    sock, conn = connect(port)
    stream = request(conn, "/sleep/800")
    sock.sendall(conn.data_to_send())
    time.sleep(0.3)
    os.kill(pid, getattr(signal, sig))
    out = {"status": None, "body": "", "goaway": None, "closed": False, "ended": False}
    for kind, flags, frame_stream, payload in raw_frames(sock, conn, 10):
        if kind == "closed":
            out["closed"] = True
        elif kind == 7:
            out["goaway"] = {"last_stream": int.from_bytes(payload[:4], "big") & 0x7FFFFFFF,
                             "code": int.from_bytes(payload[4:8], "big")}
        elif kind == 1 and frame_stream == stream:
            headers = dict(conn.decoder.decode(payload))
            out["status"] = headers.get(b":status", headers.get(":status"))
            if isinstance(out["status"], bytes):
                out["status"] = out["status"].decode()
            out["ended"] |= bool(flags & 1)
        elif kind == 0 and frame_stream == stream:
            out["body"] += payload.decode("latin-1")
            out["ended"] |= bool(flags & 1)
    return out


def upload(port, seconds):
    sock, conn = connect(port)
    stream = request(conn, "/upload", "POST", end_stream=False)
    sock.sendall(conn.data_to_send())
    sock.setblocking(False)
    sent, idle_since, chunk = 0, time.time(), b"x" * 16384
    while time.time() - idle_since < seconds:
        try:
            data = sock.recv(65536)
            if not data:
                break
            conn.receive_data(data)
        except BlockingIOError:
            pass
        window = min(conn.local_flow_control_window(stream), len(chunk))
        if window > 0:
            conn.send_data(stream, chunk[:window])
            sent += window
            idle_since = time.time()
        pending = conn.data_to_send()
        while pending:
            try:
                count = sock.send(pending)
                pending = pending[count:]
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.001)
    return {"sent": sent}


def parallel(port, count, size):
    """Streams' windows large, the connection's the default 64 KiB, opened
    again only by connection-level WINDOW_UPDATEs: what blocks the
    streams is the connection window alone."""
    sock, conn = connect(port)
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
    streams = [request(conn, f"/size/{size}") for _ in range(count)]
    sock.sendall(conn.data_to_send())
    seen = []
    sock.settimeout(20)
    while not all(ended(s)(seen) for s in streams):
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            seen.append(event)
            if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                conn.increment_flow_control_window(event.flow_controlled_length)
        sock.sendall(conn.data_to_send())
    return {"lengths": [len(answer(seen, s)["body"]) for s in streams],
            "statuses": [answer(seen, s)["status"] for s in streams]}


def get(port, paths):
    sock, conn = connect(port)
    streams = [request(conn, path) for path in paths]
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, lambda seen: all(ended(s)(seen) for s in streams), timeout=20)
    return {"answers": [answer(seen, s) for s in streams]}


def hold(port, count, size, seconds):
    """Asks for much and reads nothing: what rsp holds for such a client
    is its bound, not the bodies'."""
    sock, conn = connect(port)
    for _ in range(count):
        request(conn, f"/size/{size}")
    sock.sendall(conn.data_to_send())
    time.sleep(seconds)
    return {"held": True}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def busy_idle(port, count, pid):
    before = rss_kib(pid)
    held = []
    for _ in range(count):
        sock, conn = connect(port)
        streams = [request(conn, "/size/100000") for _ in range(20)]
        sock.sendall(conn.data_to_send())
        seen = pump(sock, conn, lambda seen: all(ended(s)(seen) for s in streams), timeout=20)
        if not all(answer(seen, s)["status"] == "200" for s in streams):
            return {"error": "a download failed"}
        held.append(sock)
    time.sleep(0.5)
    after = rss_kib(pid)
    return {"bytes_per_connection": (after - before) * 1024 // count}


def early(port, path):
    sock, conn = connect(port)
    stream = request(conn, path, "POST", end_stream=False,
                     extra=[("content-length", "10000000")])
    conn.send_data(stream, b"x" * 16000)
    sock.sendall(conn.data_to_send())
    started = time.time()
    seen = pump(sock, conn, lambda seen: any(
        isinstance(e, h2.events.StreamReset) and e.stream_id == stream for e in seen)
        or "closed" in seen, timeout=10)
    out = answer(seen, stream)
    out["seconds"] = time.time() - started
    again = request(conn, "/")
    sock.sendall(conn.data_to_send())
    seen = pump(sock, conn, ended(again))
    out["again"] = answer(seen, again)["status"]
    return out


if __name__ == "__main__":
    what, port = sys.argv[1], int(sys.argv[2])
    if what == "trailers":
        result = trailers(port)
    elif what == "goaway":
        result = goaway(port, int(sys.argv[3]), sys.argv[4])
    elif what == "busy_idle":
        result = busy_idle(port, int(sys.argv[3]), int(sys.argv[4]))
    elif what == "early":
        result = early(port, sys.argv[3])
    elif what == "get":
        result = get(port, sys.argv[3:])
    elif what == "hold":
        result = hold(port, int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif what == "parallel":
        result = parallel(port, int(sys.argv[3]), int(sys.argv[4]))
    else:
        result = upload(port, float(sys.argv[3]))
    print(json.dumps(result))
