"""One HTTP/2 client connection at the frame level, for tests/http2_hostile.rs.

What goes out is made by Python's `h2` package where it is willing (a real
client's HEADERS, RST_STREAM, PING, ... with a real HPACK encoder), and by
`frame()` where it is not (frames h2 refuses to send because they are
invalid). What comes back is read here, frame by frame, without h2's
state machine, which would refuse to go on after the invalid things we
sent: a single thread, a non-blocking socket, and select, so that rsp's
answers are read while a flood is being written (a client that does not
read is cut by rsp for another reason).
"""

import select
import socket
import struct
import time

import h2.config
import h2.connection
import h2.settings
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8

SETTINGS_INITIAL_WINDOW_SIZE = 0x4


def frame(kind, flags, stream, payload=b""):
    """A frame's bytes: 9-byte header, then the payload."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def settings_frame(pairs=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", key, value) for key, value in pairs))


def window_update(stream, increment):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment))


def data_frame(stream, data, end_stream=False):
    return frame(DATA, END_STREAM if end_stream else 0, stream, data)


def encoder(validate=True):
    """An h2 client connection used only to make frames (never fed what
    rsp sends). `validate=False` lets it send malformed requests."""
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding="utf-8",
        validate_outbound_headers=validate,
        normalize_outbound_headers=validate,
    )
    return h2.connection.H2Connection(config=config)


def request(path="/", method="GET", authority="test", extra=()):
    return [
        (":method", method),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
        *extra,
    ]


class Wire:
    """A client connection: bytes out, frames in."""

    def __init__(self, sock):
        """`sock`: a connected socket, or None to only `feed` bytes read elsewhere."""
        self.sock = sock
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
        self.inbound = bytearray()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        # What came back.
        self.frames = 0
        self.goaway = None
        self.rst = {}
        self.status = {}
        self.headers = {}
        self.body = {}
        self.ended = set()
        self.window_updates = {}
        self.ping_acks = 0
        self.closed = False
        self.sent = 0
        # What was counted when GOAWAY came: RST_STREAMs before it.
        self.rst_before_goaway = None
        self.http1 = None
        self.block = None

    # Output.

    def send(self, data, read=True):
        """Writes all of `data`, reading what comes meanwhile; False once
        rsp closed the connection (the rest is not sent)."""
        view = memoryview(data)
        while view and not self.closed:
            readers = [self.sock] if read else []
            readable, writable, _ = select.select(readers, [self.sock], [], 5)
            if readable:
                self._receive()
            if writable and not self.closed:
                try:
                    count = self.sock.send(view[:262144])
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    # rsp closed: what it wrote before (its GOAWAY) may
                    # still be waiting to be read, ahead of the reset.
                    self.wait_closed(2)
                    self.closed = True
                    break
                view = view[count:]
                self.sent += count
        return not view

    def flush(self, conn):
        """Sends what the h2 connection `conn` made."""
        return self.send(conn.data_to_send())

    # Input.

    def pump(self, timeout):
        """Reads for at most `timeout` seconds, or until the connection closes."""
        if self.closed:
            return
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if readable:
            self._receive()

    def wait(self, predicate, timeout=5.0):
        """Reads until `predicate()` holds or the connection closes; returns `predicate()`."""
        deadline = time.monotonic() + timeout
        while not predicate() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.pump(left)
        return predicate()

    def wait_closed(self, timeout=5.0):
        return self.wait(lambda: self.closed, timeout)

    def _receive(self):
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.feed(chunk)

    def feed(self, chunk):
        """Reads the frames in `chunk` (and what was left of the last one)."""
        self.inbound += chunk
        if self.frames == 0 and self.inbound.startswith(b"HTTP/1."):
            # Not HTTP/2 at all: an HTTP/1 answer.
            self.http1 = int(self.inbound.split(b" ", 2)[1])
            return
        while len(self.inbound) >= 9:
            length = int.from_bytes(self.inbound[:3], "big")
            if len(self.inbound) < 9 + length:
                break
            kind, flags = self.inbound[3], self.inbound[4]
            stream = int.from_bytes(self.inbound[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.inbound[9 : 9 + length])
            del self.inbound[: 9 + length]
            self.frames += 1
            self._frame(kind, flags, stream, payload)

    def _frame(self, kind, flags, stream, payload):
        if kind == GOAWAY and self.goaway is None:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = {
                "last_stream": last & 0x7FFFFFFF,
                "code": code,
                "debug": payload[8:].decode("utf-8", "replace"),
            }
            self.rst_before_goaway = sum(1 for _ in self.rst)
        elif kind == PING and flags & ACK:
            self.ping_acks += 1
        elif kind == RST_STREAM:
            self.rst.setdefault(stream, struct.unpack(">I", payload)[0])
        elif kind == WINDOW_UPDATE:
            increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            self.window_updates[stream] = self.window_updates.get(stream, 0) + increment
        elif kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if flags & 0x20:
                    payload = payload[5:]
                self.block = (stream, bytearray(payload), bool(flags & END_STREAM))
            else:
                self.block[1].extend(payload)
            if flags & END_HEADERS:
                stream, block, end = self.block
                self.block = None
                fields = self.decoder.decode(bytes(block))
                for name, value in fields:
                    if name == ":status":
                        self.status.setdefault(stream, int(value))
                self.headers.setdefault(stream, fields)
                if end:
                    self.ended.add(stream)
        elif kind == DATA:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            self.body[stream] = self.body.get(stream, b"") + payload
            if flags & END_STREAM:
                self.ended.add(stream)

    def done(self, stream):
        """The stream ended: END_STREAM or RST_STREAM came for it."""
        return stream in self.ended or stream in self.rst

    def summary(self):
        return {
            "client": "%s:%d" % self.sock.getsockname() if self.sock is not None else None,
            "goaway": self.goaway,
            "closed": self.closed,
            "frames": self.frames,
            "sent": self.sent,
            "http1": self.http1,
            "rst": {str(stream): code for stream, code in self.rst.items()},
            "rst_count": len(self.rst),
            "rst_before_goaway": self.rst_before_goaway,
            "status": {str(stream): code for stream, code in self.status.items()},
            "body": {str(stream): len(body) for stream, body in self.body.items()},
            "text": {str(stream): body[:200].decode("utf-8", "replace") for stream, body in self.body.items()},
            "ended": sorted(self.ended),
            "window_updates": {str(stream): total for stream, total in self.window_updates.items()},
            "ping_acks": self.ping_acks,
        }

    def close(self):
        try:
            if self.sock is not None:
                self.sock.close()
        except OSError:
            pass


def connect(port, settings=None, validate=True):
    """A new connection with the client preface sent (h2's SETTINGS, with
    `settings` over its defaults), and its h2 encoder."""
    conn = encoder(validate)
    if settings:
        conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
    conn.initiate_connection()
    wire = Wire(socket.create_connection(("127.0.0.1", port), timeout=5))
    wire.flush(conn)
    return wire, conn


def get(port, path="/", timeout=5.0):
    """One GET on a connection of its own: (status, body)."""
    wire, conn = connect(port)
    conn.send_headers(1, request(path), end_stream=True)
    wire.flush(conn)
    wire.wait(lambda: wire.done(1), timeout)
    wire.close()
    return wire.status.get(1), wire.body.get(1, b"").decode("utf-8", "replace")
