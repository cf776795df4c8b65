"""ttrpc's byte transport: a non-blocking unix socket driven by the running loop's add_reader
and add_writer, with the few stream calls the codec and the peers use (readexactly, read,
write, drain, close). It works on asyncio's loop (corrald) and on the shim's small loop, which
has no transports: asyncio's streams would cost each shim server their code and objects."""

import asyncio
import socket

READ_SIZE = 1 << 18
WRITE_HIGH = 1 << 16  # drain() waits while more than this is still unsent


def _wait_fd(loop, fd, add, remove):
    """A future set when fd is ready (reader or writer side); the watch is removed then."""
    fut = loop.create_future()

    def ready():
        remove(fd)
        if not fut.done():
            fut.set_result(None)
    add(fd, ready)
    return fut


class Connection:
    """Both directions of one connected socket."""

    def __init__(self, sock, loop=None):
        self._loop = loop or asyncio.get_running_loop()
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._eof = False
        self._error = None  # the OSError that ended the connection
        self._closing = False
        self._closed = self._loop.create_future()
        self._read_wait = None  # future while a read waits for data
        self._drain_wait = None  # future while drain() waits for the buffer to empty
        self._writing = False  # our writer callback is registered

    # --- reading ----------------------------------------------------------------

    async def _fill(self):
        while True:
            if self._eof or self._closing:
                self._eof = True
                return
            try:
                data = self._sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                self._read_wait = _wait_fd(self._loop, self._fd, self._loop.add_reader, self._loop.remove_reader)
                try:
                    await self._read_wait
                finally:
                    self._read_wait = None
                    if not self._closed.done():  # cancelled: the watch may still be there
                        self._loop.remove_reader(self._fd)
                continue
            except OSError as e:
                self._error = self._error or e
                data = b""
            if data:
                self._rbuf += data
            else:
                self._eof = True
            return

    async def readexactly(self, n):
        while len(self._rbuf) < n:
            if self._eof:
                partial = bytes(self._rbuf)
                self._rbuf.clear()
                raise asyncio.IncompleteReadError(partial, n)
            await self._fill()
        data = bytes(self._rbuf[:n])
        del self._rbuf[:n]
        return data

    async def read(self, n):
        if not self._rbuf and not self._eof:
            await self._fill()
        data = bytes(self._rbuf[:n])
        del self._rbuf[:n]
        return data

    # --- writing ----------------------------------------------------------------

    def write(self, data):
        if self._closing or self._error:
            return  # as a closed transport does: the reader side reports the end
        if not self._wbuf:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as e:
                self._fail(e)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        self._wbuf += data
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._flush)

    def _flush(self):
        try:
            sent = self._sock.send(self._wbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._fail(e)
            return
        del self._wbuf[:sent]
        if self._wbuf:
            return
        self._writing = False
        self._loop.remove_writer(self._fd)
        self._wake_drain()
        if self._closing:
            self._close_now()

    def _wake_drain(self):
        if self._drain_wait is not None and not self._drain_wait.done():
            self._drain_wait.set_result(None)

    async def drain(self):
        if self._error:
            raise ConnectionResetError(str(self._error))
        if len(self._wbuf) <= WRITE_HIGH:
            return
        self._drain_wait = self._loop.create_future()
        try:
            await self._drain_wait
        finally:
            self._drain_wait = None
        if self._error:
            raise ConnectionResetError(str(self._error))

    # --- closing ----------------------------------------------------------------

    def _fail(self, error):
        self._error = self._error or error
        self._wbuf.clear()
        self._close_now()

    def is_closing(self):
        return self._closing or self._error is not None

    def close(self):
        """Close after the pending output is sent; a waiting read sees the end at once."""
        if self._closing:
            return
        self._closing = True
        if not self._wbuf:
            self._close_now()
        self._wake_read()

    def _wake_read(self):
        if self._read_wait is not None:
            self._loop.remove_reader(self._fd)
            if not self._read_wait.done():
                self._read_wait.set_result(None)

    def _close_now(self):
        if self._closed.done():
            return
        self._closing = True
        self._eof = True
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)
        self._wake_read()
        self._wake_drain()
        self._sock.close()
        self._closed.set_result(None)

    async def wait_closed(self):
        await asyncio.shield(self._closed)
        if self._error:
            raise ConnectionResetError(str(self._error))


class Listener:
    """Accepts on a listening socket and runs on_connection(Connection) in a task for each."""

    def __init__(self, sock, on_connection, loop=None):
        self._loop = loop or asyncio.get_running_loop()
        sock.setblocking(False)
        self._sock = sock
        self._on_connection = on_connection
        self._tasks = set()
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self):
        for _ in range(16):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of fds (EMFILE) and the like: pause, rather than spin on it
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(1.0, self._resume)
                return
            task = self._loop.create_task(self._on_connection(Connection(conn, self._loop)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self):
        if self._sock.fileno() >= 0:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self):
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


async def connect_unix(path, timeout):
    """A Connection to the unix socket at path; the connect is retried while the listener's
    backlog is full (EAGAIN), until timeout seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
            return Connection(sock, loop)
        except BlockingIOError:
            sock.close()
            if loop.time() >= deadline:
                raise TimeoutError(f"connect {path}: the server's backlog stayed full") from None
            await asyncio.sleep(0.01)
        except BaseException:
            sock.close()
            raise
