"""The download → unpack pipe: unclaimed it never makes the download wait (it breaks when
full); claimed, it paces the download and carries every byte; a reader that leaves frees a
waiting writer."""

import threading
import time

import pytest

from corral.images.stream import BUFFER_CHUNKS, LayerStream, StreamBroken


def read_all(s, delay=0.0):
    out = []
    while True:
        b = s.read(1 << 20)
        if not b:
            return b"".join(out)
        out.append(b)
        time.sleep(delay)


def test_unclaimed_pipe_breaks_instead_of_waiting():
    s = LayerStream()
    t = time.monotonic()
    for i in range(BUFFER_CHUNKS + 5):
        s.write(b"x" * 10)
    s.close()
    assert time.monotonic() - t < 0.5
    assert not s.claim()        # broken: the reader uses the content store instead


def test_claimed_pipe_paces_the_writer_and_keeps_every_byte():
    s = LayerStream()
    assert s.claim() and not s.claim()
    chunks = [bytes([i % 256]) * 1000 for i in range(BUFFER_CHUNKS * 4)]
    done = []

    def writer():
        for c in chunks:
            s.write(c)
        s.close()
        done.append(time.monotonic())

    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.3)
    assert not done             # more than the buffer holds: the writer waits for the reader
    assert read_all(s, delay=0.001) == b"".join(chunks)
    w.join(5)
    assert done and s.read() == b""


def test_a_reader_that_leaves_frees_the_writer():
    s = LayerStream()
    assert s.claim()
    returned = threading.Event()

    def writer():
        for _ in range(BUFFER_CHUNKS * 3):
            s.write(b"y" * 100)
        s.close()
        returned.set()

    w = threading.Thread(target=writer)
    w.start()
    assert not returned.wait(0.3)
    s.fail()                    # the unpacker gave up (bad layer, error elsewhere)
    assert returned.wait(2)
    w.join(5)
    with pytest.raises(StreamBroken):
        read_all(s)


def test_a_restarted_download_breaks_a_claimed_pipe():
    from corral.images.stream import TeeSink

    class Writer:
        offset = 0

        def write(self, data):
            self.offset += len(data)

        def truncate(self, size):
            self.offset = size

    s = LayerStream()
    assert s.claim()
    sink = TeeSink(Writer(), s)
    sink.write(b"abc")
    sink.truncate(0)
    with pytest.raises(StreamBroken):
        read_all(s)


def test_the_writer_may_reuse_its_buffer():
    # fetch_blob hands over a memoryview of one buffer it fills again for the next chunk
    s = LayerStream()
    assert s.claim()
    buf = bytearray(1 << 16)
    sent = []

    def writer():
        for i in range(BUFFER_CHUNKS * 3):
            n = 1000 + i * 7
            buf[:n] = bytes([i]) * n
            sent.append(bytes(buf[:n]))
            s.write(memoryview(buf)[:n])
        s.close()

    w = threading.Thread(target=writer)
    w.start()
    got = bytearray()
    chunk = bytearray(3000)
    while n := s.readinto(chunk):
        got += chunk[:n]
    w.join(5)
    assert bytes(got) == b"".join(sent)
