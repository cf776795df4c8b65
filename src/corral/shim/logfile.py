"""The `jsonfile://` log URI: the shim writes a process's stdout and stderr as docker's json-file
lines, one JSON object per line:

    {"log":"hello\\n","stream":"stdout","time":"2026-11-28T14:00:54.123456789Z"}

URI: jsonfile:///abs/path/<id>-json.log?max-size=BYTES&max-file=N (max-size 0 or absent: no
rotation). When a line would take the file past max-size, it is rotated: .log -> .log.1 ->
.log.2 ..., keeping max-file files in total (max-file 1: the file is truncated instead).

The container writes into pipes; one thread per log file reads them and writes the file, so a
slow disk never stalls the shim's event loop, and stalls the container only once the pipe
buffer is full. A long line is split as docker does, in 16 Ki pieces (characters of a line
that is complete in what was read, bytes of one still being written): the pieces before the
last carry no trailing newline (partial entries), and a reader joins them.
"""

import os
import select
import threading
import time
from json.encoder import encode_basestring as _json_string  # C-accelerated, non-ASCII kept as is
from urllib.parse import parse_qsl, urlparse

SCHEME = "jsonfile://"
MAX_LINE = 16 * 1024      # docker's split size for one log entry
PIPE_SIZE = 256 * 1024    # room for a burst while the disk is slow
READ_SIZE = 256 * 1024


class LogURIError(ValueError):
    pass


def parse_size(text):
    """Bytes from 1234, 10k, 10m, 1g (binary units, as docker's log options)."""
    t = str(text).strip().lower().rstrip("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    mult = 1
    if t and t[-1] in units:
        mult, t = units[t[-1]], t[:-1]
    if not t.isdigit():
        raise LogURIError(f"invalid size {text!r}: want bytes or a number with k, m or g")
    return int(t) * mult


def parse_uri(uri):
    """(path, max_size, max_file) from a jsonfile:// URI."""
    u = urlparse(uri)
    if u.scheme != "jsonfile" or not u.path.startswith("/") or u.netloc:
        raise LogURIError(f"invalid log URI {uri!r}: want jsonfile:///absolute/path[?max-size=N&max-file=M]")
    max_size, max_file = 0, 1
    for key, value in parse_qsl(u.query, keep_blank_values=True):
        if key == "max-size":
            max_size = parse_size(value)
        elif key == "max-file":
            if not value.isdigit() or int(value) < 1:
                raise LogURIError(f"invalid max-file {value!r} in log URI: want a positive integer")
            max_file = int(value)
        else:
            raise LogURIError(f"unknown option {key!r} in log URI {uri!r}: known are max-size and max-file")
    return u.path, max_size, max_file


_second = (None, "")  # the last whole second formatted (one tuple: threads read it whole)


def timestamp(ns=None):
    """RFC3339 with nanoseconds, UTC."""
    global _second
    ns = time.time_ns() if ns is None else ns
    sec, frac = divmod(ns, 1_000_000_000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{cached[1]}.{frac:09d}Z"


def encode(text, stream, ns=None):
    """One json-file line (bytes, with its newline): {"log":...,"stream":...,"time":...}."""
    return _encode(text, f',"stream":"{stream}","time":"{timestamp(ns)}"}}\n')


def _encode(text, suffix):
    return ('{"log":' + _json_string(text) + suffix).encode("utf-8", "surrogateescape")


def _join(batch):
    return "".join(batch).encode("utf-8", "surrogateescape") if isinstance(batch[0], str) else b"".join(batch)


class LogFile:
    """The file with its rotation; only the writer thread touches it."""

    def __init__(self, path, max_size, max_file):
        self.path, self.max_size, self.max_file = path, max_size, max_file
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size

    def _open(self):
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, entries):
        """Append encoded entries (bytes, or ASCII-only str), rotating before one that would
        pass max-size; one write per run of entries that fit."""
        if not self.max_size:
            self._write(_join(entries))
            return
        batch, size = [], 0
        for e in entries:
            if self.size + size + len(e) > self.max_size and self.size + size:
                if batch:
                    self._write(_join(batch))
                batch, size = [], 0
                self.rotate()
            batch.append(e)
            size += len(e)
        if batch:
            self._write(_join(batch))

    def _write(self, data):
        if self.fd is None:
            raise OSError("the log file could not be reopened after rotation")
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.size += len(data)

    def rotate(self):
        if self.max_file <= 1:
            os.ftruncate(self.fd, 0)
            self.size = 0
            return
        os.close(self.fd)
        self.fd = None  # until the new file is open (a failure leaves nothing to close twice)
        for i in range(self.max_file - 1, 0, -1):
            older = self.path if i == 1 else f"{self.path}.{i - 1}"
            try:
                os.replace(older, f"{self.path}.{i}")
            except FileNotFoundError:
                pass
        self.fd = self._open()
        self.size = 0

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LineSplitter:
    """Bytes of one stream in, the texts of complete (or 16 Ki partial) entries out."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = b""

    def feed(self, data):
        """The texts of the entries the data completes: whole lines with their newline, and
        16 KiB pieces of longer ones (without). Returns (texts, ascii)."""
        buf = self.buf + data if self.buf else data
        last = buf.rfind(b"\n")
        out = []
        ascii = buf.isascii()
        if last >= 0:
            # decoded in one go: a newline never falls inside a UTF-8 sequence
            lines = buf[:last].decode("utf-8", "replace").split("\n")
            if last >= MAX_LINE:  # some line may be too long (counted in characters here)
                for line in lines:
                    while len(line) > MAX_LINE:
                        out.append(line[:MAX_LINE])
                        line = line[MAX_LINE:]
                    out.append(line + "\n")
            else:
                out = [line + "\n" for line in lines]
            buf = buf[last + 1:]
        while len(buf) >= MAX_LINE:
            out.append(buf[:MAX_LINE].decode("utf-8", "replace"))
            buf = buf[MAX_LINE:]
        self.buf = buf
        return out, ascii

    def flush(self):
        rest, self.buf = self.buf, b""
        return ([rest.decode("utf-8", "replace")] if rest else []), rest.isascii()


class LogWriter:
    """One log file fed by one pipe per stream. pipe(stream) gives a write end (the caller
    owns it); start() runs the thread; on_done (from the thread) once every pipe is at EOF or
    stop() was called and what was left is written."""

    def __init__(self, uri, on_done=None):
        self.path, max_size, max_file = parse_uri(uri)
        self.file = LogFile(self.path, max_size, max_file)
        self.on_done = on_done
        self.readers = {}  # read fd -> LineSplitter
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self.thread = None
        self.error = None
        self.lock = threading.Lock()
        self.finished = False

    def pipe(self, stream):
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            import fcntl
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # the default size still works
        self.readers[r] = LineSplitter(stream)
        return w

    def start(self):
        self.thread = threading.Thread(target=self._run, name=f"log {os.path.basename(self.path)}", daemon=True)
        self.thread.start()

    def stop(self):
        """Write what the pipes hold now, then finish (a process left holding a pipe open, e.g.
        a daemon the container started, must not keep the writer alive after delete)."""
        with self.lock:
            if not self.finished:
                os.write(self._stop_w, b"x")

    def _emit(self, splitter, result):
        texts, ascii = result
        if self.error is not None or not texts:
            return  # after a full or failing disk the output is dropped; the container goes on
        # one time for what one read brought: the lines arrived together
        suffix = f',"stream":"{splitter.stream}","time":"{timestamp()}"}}\n'
        entries = ['{"log":' + _json_string(t) + suffix for t in texts]
        if not ascii:  # sizes for rotation are in bytes
            entries = [e.encode("utf-8", "surrogateescape") for e in entries]
        try:
            self.file.write(entries)
        except OSError as e:
            self.error = e

    def discard(self):
        """Close everything when the writer was never started."""
        if self.thread is None:
            for fd in list(self.readers) + [self._stop_r, self._stop_w]:
                os.close(fd)
            self.readers = {}
            self.file.close()

    def _run(self):
        poller = select.poll()
        for fd in self.readers:
            poller.register(fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        open_fds = set(self.readers)
        stopping = False
        drain_rounds = 0
        try:
            while open_fds:
                events = poller.poll(None if not stopping else 0)
                if stopping:
                    drain_rounds += 1
                    if not events or drain_rounds > 64:
                        break
                for fd, mask in events:
                    if fd == self._stop_r:
                        stopping = True
                        poller.unregister(fd)
                        for r in open_fds:
                            os.set_blocking(r, False)
                        continue
                    try:
                        data = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        continue
                    splitter = self.readers[fd]
                    if data:
                        self._emit(splitter, splitter.feed(data))
                    else:
                        self._emit(splitter, splitter.flush())
                        poller.unregister(fd)
                        open_fds.discard(fd)
            for fd in open_fds:
                splitter = self.readers[fd]
                self._emit(splitter, splitter.flush())
        finally:
            for fd in self.readers:
                os.close(fd)
            self.readers = {}
            self.file.close()
            with self.lock:
                self.finished = True
                os.close(self._stop_r)
                os.close(self._stop_w)
            if self.on_done is not None:
                self.on_done()


class Logs:
    """The jsonfile:// outputs of one process: a writer per log file (stdout and stderr with
    the same URI share one) and the pipe write end for each stream. on_done is called (from a
    writer thread) once every writer has finished."""

    def __init__(self, on_done):
        self.on_done = on_done
        self.writers = {}
        self.lock = threading.Lock()
        self.running = 0

    def pipe(self, uri, stream):
        w = self.writers.get(uri)
        if w is None:
            w = self.writers[uri] = LogWriter(uri, self._writer_done)
        return w.pipe(stream)

    def start(self):
        self.running = len(self.writers)
        for w in self.writers.values():
            w.start()

    def _writer_done(self):
        with self.lock:
            self.running -= 1
            last = self.running == 0
        if last:
            self.on_done()

    def close(self):
        for w in self.writers.values():
            if w.thread is None:
                w.discard()
            else:
                w.stop()
