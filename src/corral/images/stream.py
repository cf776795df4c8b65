"""A pipe from a layer's download to its unpack, so a layer is fetched, hashed, inflated and
applied in one pass. Until a reader claims the pipe, the downloader never waits: when the
buffer fills first, the pipe breaks and the unpack later reads the verified blob from the
content store. Once claimed, the pipe paces the download (the writer waits for room), so a
download that outruns its unpacker no longer throws the unpacker's work away; a reader that
stops early must break the pipe (fail) so the writer never waits for nobody. A restarted
download breaks the pipe too. Nothing read from the pipe is committed before the download's
digest check has passed (the unpacker waits for it)."""

import queue
import threading

# chunks of up to 1 MiB each: bounds the memory a layer may hold. A claimed pipe paces its
# download, so a few chunks are enough to smooth the two sides; an unclaimed one breaks
# when full, and a deeper buffer would only hold more memory before it does.
BUFFER_CHUNKS = 4


class StreamBroken(Exception):
    pass


class LayerStream:
    def __init__(self):
        self._q = queue.Queue(maxsize=BUFFER_CHUNKS)
        self._broken = threading.Event()
        self._claimed = False
        self._lock = threading.Lock()
        self._pending = memoryview(b"")     # the unread rest of the current chunk
        self._owner = None                  # the pooled buffer behind it
        # the chunks' buffers go round: a fresh 1 MiB per chunk costs page faults (the
        # allocator hands such memory back to the kernel and takes it again)
        self._free = []

    # --- the download side
    def _put(self, item):
        if self._claimed:
            # a reader is on it: wait for room, as long as the pipe holds
            while not self._broken.is_set():
                try:
                    self._q.put(item, timeout=0.5)
                    return
                except queue.Full:
                    continue
            return
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.fail()

    def write(self, data):
        """Queue a copy of `data` (the writer may reuse its buffer)."""
        if self._broken.is_set():
            return
        n = len(data)
        try:
            buf = self._free.pop()
        except IndexError:
            buf = None
        if buf is None or len(buf) < n:
            buf = bytearray(max(n, 1 << 20))
        buf[:n] = data
        self._put((buf, n))

    def close(self):
        if not self._broken.is_set():
            self._put(None)

    def fail(self):
        self._broken.set()
        try:                       # what is queued will not be read: let it go
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._free.clear()
        try:                       # wake a waiting reader
            self._q.put_nowait(None)
        except queue.Full:
            pass

    # --- the unpack side
    def claim(self):
        """True once, for the one reader, if the pipe still holds the whole layer."""
        with self._lock:
            if self._claimed or self._broken.is_set():
                return False
            self._claimed = True
            return True

    def _next(self):
        """Make the next chunk pending; False at the end of the layer."""
        if self._owner is not None:
            self._free.append(self._owner)
            self._owner = None
        while True:
            if self._broken.is_set():
                raise StreamBroken("layer download restarted or outran the unpacker")
            try:
                item = self._q.get(timeout=1)
                break
            except queue.Empty:
                continue
        if item is None:
            if self._broken.is_set():
                raise StreamBroken("layer download restarted or outran the unpacker")
            self._q.put_nowait(None)        # stay at EOF for later reads
            return False
        self._owner, n = item
        self._pending = memoryview(self._owner)[:n]
        return True

    def read(self, n=-1):
        if not self._pending and not self._next():
            return b""
        if n is None or n < 0 or n > len(self._pending):
            n = len(self._pending)
        out = bytes(self._pending[:n])
        self._pending = self._pending[n:]
        return out

    def readinto(self, b):
        if not self._pending and not self._next():
            return 0
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class TeeSink:
    """A content writer that also feeds a LayerStream (see fetch_blob's sink)."""

    def __init__(self, writer, stream):
        self.w = writer
        self.stream = stream

    @property
    def offset(self):
        return self.w.offset

    def write(self, data):
        self.w.write(data)
        self.stream.write(data)

    def truncate(self, size):
        self.stream.fail()
        self.w.truncate(size)
