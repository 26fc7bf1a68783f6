"""Edges of HTTP/2 flow control and stream life through Python's h2
(tests/http2_flow_control.rs, tests/http2_streams.rs).

    edges.py  padded PORT SIZE PAD     POST /checksum of SIZE bytes in 1000-byte
                                       DATA frames with PAD bytes of padding
                                       each; prints the answer and bytes sent
    edges.py  early PORT SIZE          POST /checksum of SIZE bytes (at most
                                       65535) sent with the preface, before
                                       rsp's SETTINGS is read (RFC 9113 §6.9.2:
                                       the default window until the ACK)
    edges.py  upload PORT SIZE [FRAME] POST /checksum of SIZE bytes in frames
                                       of FRAME bytes (default: the largest
                                       the windows and the peer allow)
    edges.py  queued PORT              three streams on a max_conns = 1 pool:
                                       /sleep/600, then two more; the second
                                       is reset by the client while queued
    edges.py  refused PORT             a header list over the bound without
                                       END_STREAM (431), then its trailers
                                       after rsp ended the stream, then one
                                       more request
Output is one JSON object."""

import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

# The one reading of a stream's answer from h2's events (status, body,
# trailers, reset), shared with the other HTTP/2 tests' client.
from exchange import answer


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return sock, conn


def headers(path, method="GET", extra=()):
    return [(":method", method), (":scheme", "http"),
            (":authority", "localhost"), (":path", path)] + list(extra)


def ended(seen, stream):
    return any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
               and e.stream_id == stream for e in seen) or "closed" in seen


def receive(sock, conn, seen, timeout):
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except socket.timeout:
        return False
    if not data:
        seen.append("closed")
        return False
    for event in conn.receive_data(data):
        seen.append(event)
        if isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if isinstance(event, h2.events.ConnectionTerminated):
            seen.append("closed")
    sock.sendall(conn.data_to_send())
    return True


def send_body(sock, conn, stream, body, frame, pad, seconds):
    """Sends `body` in frames of `frame` bytes (+ padding) as the windows
    allow; stops when no window opened for `seconds`. Bytes sent."""
    seen, sent, idle_since = [], 0, time.time()
    while sent < len(body) and time.time() - idle_since < seconds:
        room = conn.local_flow_control_window(stream) - (pad + 1 if pad else 0)
        size = min(frame, len(body) - sent, room, conn.max_outbound_frame_size - (pad + 1 if pad else 0))
        if size > 0:
            end = sent + size == len(body)
            conn.send_data(stream, body[sent:sent + size], end_stream=end,
                           pad_length=pad if pad else None)
            sock.sendall(conn.data_to_send())
            sent += size
            idle_since = time.time()
            continue
        receive(sock, conn, seen, 0.2)
        if "closed" in seen or ended(seen, stream):
            break
    return seen, sent


def finish(sock, conn, seen, stream, timeout=10):
    deadline = time.time() + timeout
    while not ended(seen, stream) and time.time() < deadline:
        receive(sock, conn, seen, 0.5)
    return answer(seen, stream)


def upload(port, size, frame, pad):
    sock, conn = connect(port)
    sock.sendall(conn.data_to_send())
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers("/checksum", "POST", [("content-length", str(size))]))
    sock.sendall(conn.data_to_send())
    body = bytes(i % 251 for i in range(size))
    seen, sent = send_body(sock, conn, stream, body, frame, pad, 3)
    out = finish(sock, conn, seen, stream, 5 if sent == size else 1)
    out["sent"] = sent
    return out


def early(port, size):
    """Everything in one write: preface, SETTINGS, HEADERS and the body in
    the default window, as a client does before it reads anything."""
    sock, conn = connect(port)
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers("/checksum", "POST", [("content-length", str(size))]))
    body = bytes(i % 251 for i in range(size))
    at = 0
    while at < size:
        count = min(16384, size - at)
        conn.send_data(stream, body[at:at + count], end_stream=at + count == size)
        at += count
    sock.sendall(conn.data_to_send())
    return finish(sock, conn, [], stream)


def queued(port):
    sock, conn = connect(port)
    first = conn.get_next_available_stream_id()
    conn.send_headers(first, headers("/sleep/600"), end_stream=True)
    sock.sendall(conn.data_to_send())
    time.sleep(0.1)
    second = conn.get_next_available_stream_id()
    conn.send_headers(second, headers("/second"), end_stream=True)
    third = conn.get_next_available_stream_id()
    conn.send_headers(third, headers("/third"), end_stream=True)
    sock.sendall(conn.data_to_send())
    time.sleep(0.1)
    conn.reset_stream(second)
    sock.sendall(conn.data_to_send())
    seen = []
    started = time.time()
    deadline = time.time() + 10
    while not (ended(seen, first) and ended(seen, third)) and time.time() < deadline:
        receive(sock, conn, seen, 0.5)
    out = {"first": answer(seen, first), "third": answer(seen, third),
           "seconds": time.time() - started}
    # The connection is still good for another stream.
    fourth = conn.get_next_available_stream_id()
    conn.send_headers(fourth, headers("/fourth"), end_stream=True)
    sock.sendall(conn.data_to_send())
    out["fourth"] = finish(sock, conn, seen, fourth)
    return out


def refused_then_trailers(port):
    """A request whose header list is over rsp's bound, its body still to
    come: rsp answers 431 and ends its side; the client then ends its own
    with trailers (legal in half-closed (remote)), and asks once more."""
    sock, conn = connect(port)
    sock.sendall(conn.data_to_send())
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers("/checksum", "POST", [("x-big", "x" * 40000)]))
    sock.sendall(conn.data_to_send())
    seen = []
    out = {"first": finish(sock, conn, seen, stream)}
    # rsp may have told the client to stop sending (RST_STREAM NO_ERROR,
    # RFC 9113 §8.1), after which h2 refuses to send on the stream; the
    # trailers may still have been on their way: they are sent by hand.
    out["reset"] = [int(e.error_code) for e in seen
                    if isinstance(e, h2.events.StreamReset) and e.stream_id == stream]
    block = conn.encoder.encode([("x-checksum", "1")])
    frame = len(block).to_bytes(3, "big") + bytes([0x1, 0x5]) + stream.to_bytes(4, "big") + block
    sock.sendall(frame)
    time.sleep(0.3)
    try:
        while receive(sock, conn, seen, 0.2):
            pass
        again = conn.get_next_available_stream_id()
        conn.send_headers(again, headers("/again"), end_stream=True)
        sock.sendall(conn.data_to_send())
        out["again"] = finish(sock, conn, seen, again, 5)
    except (h2.exceptions.ProtocolError, OSError) as error:
        out["again"] = {"error": type(error).__name__}
    out["goaway"] = [int(e.error_code) for e in seen
                     if isinstance(e, h2.events.ConnectionTerminated)]
    return out


if __name__ == "__main__":
    what, port = sys.argv[1], int(sys.argv[2])
    if what == "padded":
        result = upload(port, int(sys.argv[3]), 1000, int(sys.argv[4]))
    elif what == "early":
        result = early(port, int(sys.argv[3]))
    elif what == "upload":
        frame = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 20
        result = upload(port, int(sys.argv[3]), frame, 0)
    elif what == "refused":
        result = refused_then_trailers(port)
    elif what == "queued":
        result = queued(port)
    else:
        raise SystemExit(f"unknown: {what}")
    print(json.dumps(result))
