"""The client's gRPC transport: HTTP/2 on a unix socket, synchronous, no grpcio.

corral.Client speaks to corrald (or containerd) through this module only. grpcio costs about
100 ms to import (its core pulls in asyncio); the `corral` command pays that at every start,
so the client speaks the wire protocol itself (the daemon keeps grpcio):

- HTTP/2 (RFC 9113): the connection preface, SETTINGS and their ACK, PING answered,
  GOAWAY, RST_STREAM, flow control both ways (WINDOW_UPDATE: ours credited as the
  application consumes, the peer's respected when sending), CONTINUATION.
- HPACK (RFC 7541): requests are sent as literals without indexing (always legal); the
  peer's header blocks are decoded completely (static and dynamic table, size updates,
  Huffman strings).
- gRPC over HTTP/2: `:path /package.Service/Method`, `content-type: application/grpc`,
  `te: trailers`, `grpc-timeout`, metadata as headers; messages are a 1-byte compressed
  flag, a 4-byte big-endian length and the protobuf bytes; the status comes in the trailers
  (`grpc-status`, percent-encoded `grpc-message`), or in a trailers-only response.

Unary calls, futures (a call whose answer is collected later, e.g. Tasks.Wait started before
Tasks.Start), server streams (iterators with cancel()) and client streams are all one
connection, multiplexed. Any thread may make calls; there is no reader thread: a thread that
waits for its answer reads the socket for everyone while nobody else does, and hands frames of
other streams to their waiters. Errors are ClientError with the gRPC status code's name.
"""

import os
import threading
from _socket import AF_UNIX, SHUT_RDWR, SOCK_STREAM, socket  # not socket.py: its enums and selectors
from time import monotonic

CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
         "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
         "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


class ClientError(Exception):
    """A failed call: .code is the gRPC status code's name ("NOT_FOUND"...), .message its text."""

    def __init__(self, code, message):
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class FutureTimeoutError(Exception):
    """Future.result(timeout) ran out before the answer came (the call goes on)."""


# -- HTTP/2 constants

_DATA, _HEADERS, _RST, _SETTINGS, _PING, _GOAWAY, _WINDOW, _CONT = 0, 1, 3, 4, 6, 7, 8, 9
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_STREAM_WINDOW = 4 << 20    # what one stream may have in flight towards us
_CONN_WINDOW = 16 << 20     # and all of them together
_MAX_MESSAGE = 256 << 20    # a bigger answer is refused (RESOURCE_EXHAUSTED), as grpc's limit does
_RST_CODES = {0x7: "UNAVAILABLE", 0x8: "CANCELLED", 0xb: "RESOURCE_EXHAUSTED", 0xc: "PERMISSION_DENIED"}
_HTTP_CODES = {400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED",
               429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE"}


def _frame(ftype, flags, sid, payload=b""):
    return (len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") + payload)


def _settings():
    # ENABLE_PUSH 0, INITIAL_WINDOW_SIZE; the connection's window is raised by a WINDOW_UPDATE
    body = (2).to_bytes(2, "big") + (0).to_bytes(4, "big") + (4).to_bytes(2, "big") + _STREAM_WINDOW.to_bytes(4, "big")
    return _frame(_SETTINGS, 0, 0, body)


# -- HPACK

_STATIC = (
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
    (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
    (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
    ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""),
    ("cache-control", ""), ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""),
    ("content-length", ""), ("content-location", ""), ("content-range", ""), ("content-type", ""),
    ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""),
    ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""),
    ("retry-after", ""), ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""),
    ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""))

# The Huffman code's bit length of each symbol 0..256 (256 is EOS), as chr(48 + length). The
# code is canonical (RFC 7541 Appendix B assigns codes in order of length, then symbol), so
# the lengths are all that is needed to rebuild it.
_HUFFMAN_LENGTHS = (
    "=GLLLLLLLHNLLNLLLLLLLLNLLLLLLLLL6::<=68;::8;8666555666666678?6<:=6777777777777777777777787"
    "8=C=>6?56565666577666567655677777?;>=LDFDDFFFGFGGGGGHGHHFGHGGGGEFGFGGHFEDFFGGEGFFHEFGGEEFEGF"
    "GGDFFFGFFGJJDCFGFIJJJKKJHICEJKKJKHEEJJLKKKDHDEFEEGFFIIHHJGJKJJKKKKKLKKKKKJN")
_huffman = None


def _huffman_table():
    """(first code, count, symbols offset) per length, and the symbols in code order."""
    global _huffman
    if _huffman is None:
        lengths = [ord(c) - 48 for c in _HUFFMAN_LENGTHS]
        symbols = sorted(range(257), key=lambda s: (lengths[s], s))
        first, count, offset = [0] * 31, [0] * 31, [0] * 31
        code = prev = 0
        for i, s in enumerate(symbols):
            n = lengths[s]
            if not count[n]:
                code <<= n - prev
                first[n], offset[n] = code, i
            else:
                code <<= n - prev
            prev = n
            count[n] += 1
            code += 1
        _huffman = (first, count, offset, symbols)
    return _huffman


def huffman_decode(data):
    first, count, offset, symbols = _huffman_table()
    out = bytearray()
    code = length = 0
    for byte in data:
        for shift in (7, 6, 5, 4, 3, 2, 1, 0):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            d = code - first[length] if length > 4 else -1
            if 0 <= d < count[length]:
                s = symbols[offset[length] + d]
                if s == 256:
                    raise ValueError("EOS in a Huffman string")
                out.append(s)
                code = length = 0
            elif length == 30:
                raise ValueError("bad Huffman code")
    if length > 7 or code != (1 << length) - 1:  # padding: fewer than 8 bits, all ones
        raise ValueError("bad Huffman padding")
    return bytes(out)


class HpackDecoder:
    def __init__(self, max_size=4096):
        self.limit = max_size      # what our SETTINGS allow (the default, we do not change it)
        self.max_size = max_size   # what the encoder chose (size updates)
        self.size = 0
        self.table = []            # newest first

    def _entry(self, index):
        if 0 < index <= 61:
            return _STATIC[index - 1]
        if 61 < index <= 61 + len(self.table):
            return self.table[index - 62]
        raise ValueError(f"HPACK index {index} out of range")

    def _add(self, name, value):
        size = len(name.encode()) + len(value.encode()) + 32
        if size > self.max_size:
            self.table.clear()
            self.size = 0
            return
        self.table.insert(0, (name, value))
        self.size += size
        self._evict()

    def _evict(self):
        while self.size > self.max_size:
            n, v = self.table.pop()
            self.size -= len(n.encode()) + len(v.encode()) + 32

    @staticmethod
    def _int(block, i, bits):
        mask = (1 << bits) - 1
        value = block[i] & mask
        i += 1
        if value < mask:
            return value, i
        shift = 0
        while True:
            b = block[i]
            i += 1
            value += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, i

    def _str(self, block, i):
        huff = block[i] & 0x80
        n, i = self._int(block, i, 7)
        raw = bytes(block[i:i + n])
        if len(raw) < n:
            raise ValueError("truncated HPACK string")
        return (huffman_decode(raw) if huff else raw).decode("utf-8", "replace"), i + n

    def decode(self, block):
        """[(name, value)] of one header block (the dynamic table follows it)."""
        out = []
        i, n = 0, len(block)
        while i < n:
            b = block[i]
            if b & 0x80:                      # indexed field
                index, i = self._int(block, i, 7)
                out.append(self._entry(index))
            elif b & 0x40:                    # literal, added to the table
                index, i = self._int(block, i, 6)
                name = self._entry(index)[0] if index else None
                if name is None:
                    name, i = self._str(block, i)
                value, i = self._str(block, i)
                self._add(name, value)
                out.append((name, value))
            elif b & 0x20:                    # dynamic table size update
                size, i = self._int(block, i, 5)
                if size > self.limit:
                    raise ValueError("HPACK table size update beyond the limit")
                self.max_size = size
                self._evict()
            else:                             # literal without indexing / never indexed
                index, i = self._int(block, i, 4)
                name = self._entry(index)[0] if index else None
                if name is None:
                    name, i = self._str(block, i)
                value, i = self._str(block, i)
                out.append((name, value))
        return out


def _hint(value, bits, prefix=0):
    """An HPACK integer with an N-bit prefix (the first byte's high bits from `prefix`)."""
    mask = (1 << bits) - 1
    if value < mask:
        return bytes((prefix | value,))
    out = bytearray((prefix | mask,))
    value -= mask
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name, value, index=0):
    """A header field as a literal without indexing (name by static index, or literal)."""
    v = value.encode()
    if index:
        return _hint(index, 4) + _hint(len(v), 7) + v
    n = name.encode()
    return b"\x00" + _hint(len(n), 7) + n + _hint(len(v), 7) + v


def _timeout(seconds):
    ms = max(1, int(seconds * 1000 + 0.999))
    if ms < 100_000_000:
        return f"{ms}m"
    return f"{min(99_999_999, int(seconds + 0.999))}S"


def _unquote(text):
    """grpc-message is percent-encoded UTF-8."""
    if "%" not in text:
        return text
    raw = text.encode("utf-8", "replace")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and i + 3 <= len(raw):
            try:
                out.append(int(raw[i + 1:i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(raw[i])
        i += 1
    return out.decode("utf-8", "replace")


# -- streams and the connection

class _Stream:
    __slots__ = ("id", "send_window", "headers", "msgs", "queued", "buf", "unacked", "done", "error", "closed_local")

    def __init__(self, sid, window):
        self.id = sid
        self.send_window = window
        self.headers = None
        self.msgs = []         # whole messages received, not yet taken
        self.queued = 0        # their bytes
        self.buf = bytearray()
        self.unacked = 0       # bytes received and not yet credited back (WINDOW_UPDATE)
        self.done = False      # the call is over (status known, or failed)
        self.error = None      # ClientError when it failed
        self.closed_local = False


class _Connection:
    def __init__(self, path, authority):
        self.path = path
        sock = socket(AF_UNIX, SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise ClientError("UNAVAILABLE", f"failed to connect to unix:{path}; error: {e.strerror or e}") from None
        self.sock = sock
        self.cv = threading.Condition(threading.Lock())
        self.wlock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.streams = {}
        self.next_id = 1
        self.reading = False
        self.dead = None           # ClientError once the connection is unusable
        self.goaway = False
        self.send_window = 65535   # the peer's connection window for what we send
        self.initial_window = 65535
        self.max_frame = 16384
        self.credit = 0            # connection-level bytes received, not yet credited back
        self.decoder = HpackDecoder()
        self.inbuf = bytearray()
        self.block = None          # (stream id, end_stream, fragments) until END_HEADERS
        self.outbox = []
        # pseudo-headers first: :method POST, :scheme http (both indexed), :authority, then :path
        self.pseudo = b"\x83\x86" + _literal(":authority", authority, 1)
        self.fixed = (_literal("content-type", "application/grpc", 31) + _literal("te", "trailers")
                      + _literal("user-agent", "corral-client", 58))
        self._pending_preface = _PREFACE + _settings() + _frame(_WINDOW, 0, 0, (_CONN_WINDOW - 65535).to_bytes(4, "big"))

    # -- writing

    def write(self, data):
        with self.wlock:
            self._send_locked(data)

    def _send_locked(self, data):
        """Send (holding wlock), the connection preface first if it has not gone yet."""
        if self._pending_preface:
            data = self._pending_preface + data
            self._pending_preface = b""
        try:
            self.sock.sendall(data)
        except OSError as e:
            with self.cv:
                self._die(ClientError("UNAVAILABLE", f"sending to corrald failed: {e.strerror or e}"))
            raise self.dead from None

    def _flush(self):
        """Send the control frames queued while holding cv (called without it)."""
        while True:
            with self.cv:
                out, self.outbox = self.outbox, []
            if not out:
                return
            try:
                self.write(b"".join(out))
            except ClientError:
                return

    # -- opening a stream

    def open(self, path, metadata, timeout, first=None, end=False):
        """Start a call; with `first`, send that message too (and end our side if `end`)."""
        block = self.pseudo + _literal(":path", path, 4) + self.fixed
        if timeout is not None:
            block += _literal("grpc-timeout", _timeout(timeout))
        for k, v in metadata:
            block += _literal(k, v)
        with self.wlock:  # ids must go out in increasing order
            with self.cv:
                if self.dead is not None:
                    raise self.dead
                sid = self.next_id
                self.next_id += 2
                st = self.streams[sid] = _Stream(sid, self.initial_window)
                msg = None
                if first is not None:
                    msg = b"\x00" + len(first).to_bytes(4, "big") + first
                    if len(msg) <= min(self.send_window, st.send_window, self.max_frame):
                        self.send_window -= len(msg)
                        st.send_window -= len(msg)
                        st.closed_local = end
                    else:
                        msg = None
            frames = self._header_frames(sid, block, end and first is None)
            if msg is not None:
                frames += _frame(_DATA, _END_STREAM if end else 0, sid, msg)
            self._send_locked(frames)
        if first is not None and msg is None:
            self.send(st, first, end)
        return st

    def _header_frames(self, sid, block, end):
        flags = _END_STREAM if end else 0
        n = self.max_frame
        if len(block) <= n:
            return _frame(_HEADERS, flags | _END_HEADERS, sid, block)
        out = [_frame(_HEADERS, flags, sid, block[:n])]
        for i in range(n, len(block), n):
            last = i + n >= len(block)
            out.append(_frame(_CONT, _END_HEADERS if last else 0, sid, block[i:i + n]))
        return b"".join(out)

    # -- sending messages (flow controlled)

    def send(self, st, message, end=False, deadline=None):
        data = b"\x00" + len(message).to_bytes(4, "big") + message
        pos = 0
        while True:
            with self.cv:
                ok = self.wait(lambda: st.done or (self.send_window > 0 and st.send_window > 0), deadline)
                if st.done:
                    return  # the answer came already (an error, or the server ended early)
                if not ok:
                    raise ClientError("DEADLINE_EXCEEDED", "Deadline Exceeded")
                n = min(len(data) - pos, self.send_window, st.send_window, self.max_frame)
                self.send_window -= n
                st.send_window -= n
                last = pos + n == len(data)
                if last and end:
                    st.closed_local = True
            self.write(_frame(_DATA, _END_STREAM if last and end else 0, st.id, data[pos:pos + n]))
            pos += n
            if last:
                return

    def end(self, st):
        """Close our side of a client stream."""
        with self.cv:
            if st.done or st.closed_local:
                return
            st.closed_local = True
        self.write(_frame(_DATA, _END_STREAM, st.id))

    def cancel(self, st, code="CANCELLED", message="Locally cancelled by application!"):
        with self.cv:
            if st.done:
                return
            self._finish(st, ClientError(code, message))
            self.outbox.append(_frame(_RST, 0, st.id, (0x8).to_bytes(4, "big")))
            self.cv.notify_all()
        self._wake()
        self._flush()

    def _wake(self):
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    # -- receiving

    def wait(self, pred, deadline=None):
        """With cv held: until pred() (True), the deadline (False) or the connection dies
        (pred() is checked again; callers look at their stream). Reads the socket while no
        other thread does."""
        while not pred():
            if self.dead is not None:
                return pred()
            remaining = None
            if deadline is not None:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return False
            if self.reading:
                self.cv.wait(remaining)
                continue
            self.reading = True
            self.cv.release()
            data = err = None
            try:
                data = self._recv(remaining)
            except (OSError, ValueError) as e:  # ValueError: select() on a socket closed meanwhile
                err = e
            finally:
                self.cv.acquire()
                self.reading = False
            try:
                if err is not None or data == b"":
                    self._die(ClientError("UNAVAILABLE", "corrald closed the connection"
                                          + (f": {getattr(err, 'strerror', None) or err}" if err is not None else "")))
                elif data:
                    self._feed(data)
            except ValueError as e:  # a protocol error from the peer
                self._die(ClientError("INTERNAL", f"bad HTTP/2 data from the server: {e}"))
                self.outbox.append(_frame(_GOAWAY, 0, 0, (0).to_bytes(4, "big") + (1).to_bytes(4, "big")))
            self.cv.notify_all()
            if self.outbox:
                self.cv.release()
                try:
                    self._flush()
                finally:
                    self.cv.acquire()
        return True

    def _recv(self, timeout):
        import select
        r, _, _ = select.select([self.sock, self.wake_r], [], [], timeout)
        if self.wake_r in r:
            try:
                os.read(self.wake_r, 512)
            except OSError:
                pass
        if self.sock in r:
            return self.sock.recv(1 << 18)
        return None

    def _die(self, error):
        if self.dead is None:
            self.dead = error
        for st in list(self.streams.values()):
            self._finish(st, error)
        self.cv.notify_all()

    def _finish(self, st, error=None):
        if not st.done:
            st.done = True
            st.error = error
        self.streams.pop(st.id, None)

    def _feed(self, data):
        buf = self.inbuf
        buf += data
        pos, size = 0, len(buf)
        while size - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if size - pos - 9 < length:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            payload = bytes(buf[pos + 9:pos + 9 + length])
            pos += 9 + length
            self._frame(ftype, flags, sid, payload)
        del buf[:pos]

    def _frame(self, ftype, flags, sid, payload):
        if self.block is not None and ftype != _CONT:
            raise ValueError("a header block was interrupted")
        if ftype == _DATA:
            self._data(flags, sid, payload)
        elif ftype == _HEADERS:
            if flags & _PADDED:
                payload = payload[1:len(payload) - payload[0]]
            if flags & _PRIORITY:
                payload = payload[5:]
            self.block = (sid, flags & _END_STREAM, [payload])
            if flags & _END_HEADERS:
                self._headers()
        elif ftype == _CONT:
            if self.block is None or self.block[0] != sid:
                raise ValueError("unexpected CONTINUATION")
            self.block[2].append(payload)
            if flags & _END_HEADERS:
                self._headers()
        elif ftype == _RST:
            st = self.streams.get(sid)
            if st is not None:
                code = int.from_bytes(payload[:4], "big")
                self._finish(st, ClientError(_RST_CODES.get(code, "INTERNAL"),
                                             f"stream reset by the server (HTTP/2 error {code})"))
        elif ftype == _SETTINGS:
            if not flags & _ACK:
                self._settings(payload)
                self.outbox.append(_frame(_SETTINGS, _ACK, 0))
        elif ftype == _PING:
            if not flags & _ACK:
                self.outbox.append(_frame(_PING, _ACK, 0, payload))
        elif ftype == _GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            self.goaway = True
            for st in list(self.streams.values()):
                if st.id > last:
                    self._finish(st, ClientError("UNAVAILABLE", "corrald is going away (GOAWAY)"))
        elif ftype == _WINDOW:
            inc = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if sid == 0:
                self.send_window += inc
            elif sid in self.streams:
                self.streams[sid].send_window += inc
        # PUSH_PROMISE is refused by our SETTINGS; PRIORITY and unknown frames are ignored

    def _settings(self, payload):
        for i in range(0, len(payload) - 5, 6):
            key = int.from_bytes(payload[i:i + 2], "big")
            value = int.from_bytes(payload[i + 2:i + 6], "big")
            if key == 4:
                delta = value - self.initial_window
                self.initial_window = value
                for st in self.streams.values():
                    st.send_window += delta
            elif key == 5:
                self.max_frame = value

    def _data(self, flags, sid, payload):
        self.credit += len(payload)
        if self.credit >= _CONN_WINDOW // 2:
            self.outbox.append(_frame(_WINDOW, 0, 0, self.credit.to_bytes(4, "big")))
            self.credit = 0
        st = self.streams.get(sid)
        if st is None:
            return  # a stream we cancelled
        st.unacked += len(payload)
        if flags & _PADDED:
            payload = payload[1:len(payload) - payload[0]]
        buf = st.buf
        buf += payload
        while len(buf) >= 5:
            n = int.from_bytes(buf[1:5], "big")
            if n > _MAX_MESSAGE:
                self._reset(st, "RESOURCE_EXHAUSTED", f"an answer of {n} bytes is over the limit of {_MAX_MESSAGE}")
                return
            if len(buf) < 5 + n:
                break
            if buf[0]:
                self._reset(st, "INTERNAL", "a compressed message, but no compression was asked for")
                return
            st.msgs.append(bytes(buf[5:5 + n]))
            st.queued += n
            del buf[:5 + n]
        self._credit(st)
        if flags & _END_STREAM:
            self._finish(st, ClientError("INTERNAL", "the server ended the stream without a status"))

    def _credit(self, st):
        """Give the stream's window back while its taker keeps up (bounded buffering)."""
        if st.unacked >= _STREAM_WINDOW // 2 and st.queued < _STREAM_WINDOW // 2 and not st.done:
            self.outbox.append(_frame(_WINDOW, 0, st.id, st.unacked.to_bytes(4, "big")))
            st.unacked = 0

    def _reset(self, st, code, message):
        self._finish(st, ClientError(code, message))
        self.outbox.append(_frame(_RST, 0, st.id, (0x8).to_bytes(4, "big")))

    def _headers(self):
        sid, end, parts = self.block
        self.block = None
        fields = self.decoder.decode(b"".join(parts))
        st = self.streams.get(sid)
        if st is None:
            return
        headers = dict(fields)
        if st.headers is None:
            st.headers = headers
            status = headers.get(":status", "200")
            if status != "200" and "grpc-status" not in headers:
                code = _HTTP_CODES.get(int(status) if status.isdigit() else 0, "UNKNOWN")
                self._reset(st, code, f"HTTP status {status} from the server")
                return
            if not end:
                return
        elif not end:
            raise ValueError("headers after the response's headers that do not end the stream")
        status = headers.get("grpc-status")
        if status is None:
            self._finish(st, ClientError("INTERNAL", "the server's trailers have no grpc-status"))
            return
        code = int(status) if status.isdigit() else 2
        if code == 0:
            self._finish(st)
        else:
            self._finish(st, ClientError(CODES[code] if code < len(CODES) else "UNKNOWN",
                                         _unquote(headers.get("grpc-message", ""))))

    # -- taking what came

    def take(self, st, deadline=None):
        """The next message of `st` (bytes), or None at its successful end; raises its error.
        On a deadline: cancels the call and raises DEADLINE_EXCEEDED."""
        with self.cv:
            if not self.wait(lambda: st.msgs or st.done, deadline):
                pass
            if st.msgs:
                msg = st.msgs.pop(0)
                st.queued -= len(msg)
                n = len(self.outbox)
                self._credit(st)
                flush = len(self.outbox) > n
            elif st.done:
                if st.error is not None:
                    raise st.error
                return None
            else:
                msg = None
        if msg is not None:
            if flush:
                self._flush()
            return msg
        self.cancel(st, "DEADLINE_EXCEEDED", "Deadline Exceeded")
        raise ClientError("DEADLINE_EXCEEDED", "Deadline Exceeded")

    def close(self):
        with self.cv:
            self._die(ClientError("CANCELLED", "the client was closed"))
        try:
            self.sock.shutdown(SHUT_RDWR)
        except OSError:
            pass
        self._wake()
        self.sock.close()
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


class Channel:
    """Calls to one gRPC server on a unix socket. The connection is made at the first call
    (and made again after corrald closed it, e.g. across a daemon restart)."""

    def __init__(self, path, authority="localhost"):
        self.path = path
        self.authority = authority
        self._conn = None
        self._lock = threading.Lock()

    def _connection(self):
        with self._lock:
            c = self._conn
            if c is None or c.dead is not None or c.goaway:
                if c is not None and c.dead is not None:
                    c.close()
                c = self._conn = _Connection(self.path, self.authority)
            return c

    def unary(self, path, request, metadata=(), timeout=None):
        """Send one message, return the answer (bytes)."""
        deadline = None if timeout is None else monotonic() + timeout
        c = self._connection()
        st = c.open(path, metadata, timeout, request, True)
        msg = c.take(st, deadline)
        if msg is None:
            raise ClientError("INTERNAL", f"{path}: no answer message")
        if c.take(st, deadline) is not None:
            raise ClientError("INTERNAL", f"{path}: more than one answer message")
        return msg

    def future(self, path, request, metadata=(), decode=bytes, timeout=None):
        """Send one message now; the answer is collected with .result(). timeout: the call's
        deadline (seconds), past which it fails with DEADLINE_EXCEEDED; None for none."""
        c = self._connection()
        return Future(c, c.open(path, metadata, timeout, request, True), decode,
                      None if timeout is None else monotonic() + timeout)

    def stream(self, path, request, metadata=(), decode=bytes, timeout=None):
        """Send one message; iterate the answers (decoded); .cancel() ends the call."""
        c = self._connection()
        return Responses(c, c.open(path, metadata, timeout, request, True), decode,
                         None if timeout is None else monotonic() + timeout)

    def stream_unary(self, path, requests, metadata=(), timeout=None):
        """Send each message of the iterable `requests`, then return the one answer (bytes)."""
        deadline = None if timeout is None else monotonic() + timeout
        c = self._connection()
        st = c.open(path, metadata, timeout)
        try:
            for req in requests:
                c.send(st, req, deadline=deadline)
                if st.done:
                    break
            c.end(st)
        except BaseException:
            c.cancel(st)
            raise
        msg = c.take(st, deadline)
        if msg is None:
            raise ClientError("INTERNAL", f"{path}: no answer message")
        return msg

    def close(self):
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class Future:
    def __init__(self, conn, st, decode, deadline=None):
        self._conn, self._st, self._decode, self._deadline = conn, st, decode, deadline
        self._value = None

    def done(self):
        return self._st.done

    def result(self, timeout=None):
        """The answer; raises the call's ClientError (DEADLINE_EXCEEDED past its deadline),
        or FutureTimeoutError when `timeout` seconds pass first (the call goes on)."""
        c, st = self._conn, self._st
        if self._value is None:
            wait_until = None if timeout is None else monotonic() + timeout
            if self._deadline is not None and (wait_until is None or self._deadline <= wait_until):
                msg = c.take(st, self._deadline)  # the call's own deadline comes first
            else:
                with c.cv:
                    ok = c.wait(lambda: st.done, wait_until)
                if not ok:
                    raise FutureTimeoutError()
                msg = c.take(st)
            if msg is None:
                raise ClientError("INTERNAL", "no answer message")
            self._value = self._decode(msg)
        return self._value

    def cancel(self):
        self._conn.cancel(self._st)
        return True


class Responses:
    """An iterator of a server stream's messages."""

    def __init__(self, conn, st, decode, deadline):
        self._conn, self._st, self._decode, self._deadline = conn, st, decode, deadline

    def __iter__(self):
        return self

    def __next__(self):
        msg = self._conn.take(self._st, self._deadline)
        if msg is None:
            raise StopIteration
        return self._decode(msg)

    def cancel(self):
        self._conn.cancel(self._st)
