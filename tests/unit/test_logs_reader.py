"""corral.logs: reading json-file logs (rotated files, --tail, --since) and following across
rotation and truncation, with the real writer producing the files."""

import io
import os
import threading
import time

import pytest

from corral import logs
from corral.shim import logfile


def _write(path, *entries):
    """Append entries (stream, text, ns) as the writer does."""
    with open(path, "ab") as f:
        for stream, text, ns in entries:
            f.write(logfile.encode(text, stream, ns))


def test_rotated_files_oldest_first_and_tail(tmp_path):
    path = str(tmp_path / "c-json.log")
    _write(path + ".2", ("stdout", "a\n", 1))
    _write(path + ".1", ("stdout", "b\n", 2))
    _write(path, ("stderr", "c\n", 3), ("stdout", "d\n", 4))
    assert logs.log_files(path) == [path + ".2", path + ".1", path]
    assert [e.log for e in logs.read(path)] == ["a\n", "b\n", "c\n", "d\n"]
    assert [e.log for e in logs.read(path, tail=2)] == ["c\n", "d\n"]
    assert logs.read(path, tail=0) == []


def test_since_and_time_parsing(tmp_path):
    path = str(tmp_path / "c-json.log")
    base = logs.time_ns("2026-01-02T03:04:05Z")
    _write(path, ("stdout", "old\n", base), ("stdout", "new\n", base + 5_000_000_000))
    assert [e.log for e in logs.read(path, since=logs.parse_since("2026-01-02T03:04:07Z"))] == ["new\n"]
    assert [e.log for e in logs.read(path, since=logs.parse_since("2026-01-02T04:04:06+01:00"))] == ["new\n"]
    now = base + 10_000_000_000
    assert logs.parse_since("7s", now_ns=now) == base + 3_000_000_000
    assert logs.parse_since("1m30s", now_ns=now) == now - 90_000_000_000
    assert logs.parse_since("1767323045") == base
    assert logs.time_ns("2026-01-02T03:04:05.5Z") == base + 500_000_000
    import datetime as _dt
    local = _dt.datetime(2026, 1, 2, 3, 4, 5).astimezone()
    assert logs.time_ns("2026-01-02T03:04:05") == int(local.timestamp()) * 10**9  # no zone: local time
    for bad in ("yesterday", "10x", "2026-13-45T00:00:00Z"):
        with pytest.raises((logs.LogsError, ValueError)):
            logs.parse_since(bad)


def test_write_splits_streams_and_timestamps():
    out, err = io.BytesIO(), io.BytesIO()
    entries = [logs.Entry("T1", "stdout", "par"), logs.Entry("T2", "stdout", "tial\n"),
               logs.Entry("T3", "stderr", "e\n")]
    logs.write(entries, out, err, timestamps=True)
    assert out.getvalue() == b"T1 partial\n"
    assert err.getvalue() == b"T3 e\n"


def test_torn_last_line_waits_for_its_end(tmp_path):
    path = str(tmp_path / "c-json.log")
    line = logfile.encode("whole\n", "stdout", 1)
    with open(path, "wb") as f:
        f.write(line[:10])
    stop = threading.Event()
    got = []

    def reader():
        for e in logs.follow(path, stop=stop.is_set, interval=0.02):
            got.append(e.log)
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    assert got == []
    with open(path, "ab") as f:
        f.write(line[10:])
    time.sleep(0.1)
    stop.set()
    t.join(5)
    assert got == ["whole\n"]


def test_follow_across_rotation_with_the_real_writer(tmp_path):
    """A writer rotating a small file many times while a follower reads: every line arrives
    once, in order."""
    path = str(tmp_path / "f-json.log")
    done = threading.Event()
    writer = logfile.Logs(done.set)
    w = writer.pipe(f"jsonfile://{path}?max-size=1000&max-file=3", "stdout")
    writer.start()
    got = []
    stop = threading.Event()

    def reader():
        for e in logs.follow(path, stop=stop.is_set, interval=0.005):
            got.append(e.log)
    t = threading.Thread(target=reader)
    t.start()
    n = 400
    for i in range(n):
        os.write(w, f"line {i}\n".encode())
        if i % 20 == 0:
            time.sleep(0.02)  # let the follower keep up: rotation keeps only 3 files
    os.close(w)
    assert done.wait(10)
    time.sleep(0.1)
    stop.set()
    t.join(10)
    assert got == [f"line {i}\n" for i in range(n)]


def test_follow_after_truncation(tmp_path):
    path = str(tmp_path / "t-json.log")
    _write(path, ("stdout", "one\n", 1), ("stdout", "two\n", 2))
    stop = threading.Event()
    got = []
    t = threading.Thread(target=lambda: got.extend(e.log for e in logs.follow(path, stop=stop.is_set, interval=0.02)))
    t.start()
    time.sleep(0.1)
    os.truncate(path, 0)
    _write(path, ("stdout", "three\n", 3))
    time.sleep(0.2)
    stop.set()
    t.join(5)
    assert got == ["one\n", "two\n", "three\n"]


def test_follow_waits_for_the_file_and_stops(tmp_path):
    path = str(tmp_path / "later-json.log")
    assert list(logs.follow(path, stop=lambda: True)) == []
    calls = []

    def stop():
        calls.append(1)
        if len(calls) == 3:
            _write(path, ("stdout", "late\n", 1))
        return len(calls) > 5
    assert [e.log for e in logs.follow(path, stop=stop, interval=0.01)] == ["late\n"]


def test_tail_reads_backwards_across_files_and_leaves_a_torn_line(tmp_path):
    path = str(tmp_path / "b-json.log")
    base = 1_800_000_000 * 10**9
    _write(path + ".1", *[("stdout", f"old{i}\n", base + i) for i in range(5)])
    # entries far larger than the read block, so lines straddle block boundaries
    _write(path, *[("stderr" if i % 3 == 0 else "stdout", f"{i}" * 50 + "\n", base + 10**9 + i) for i in range(3000)])
    with open(path, "ab") as f:
        f.write(b'{"log":"torn')
    want = [f"{i}" * 50 + "\n" for i in range(3000)]
    assert [e.log for e in logs.read(path, tail=7)] == want[-7:]
    assert [e.log for e in logs.read(path, tail=3002)] == ["old3\n", "old4\n"] + want
    assert len(logs.read(path, tail=10**6)) == 3005
    assert [e.log for e in logs.read(path, tail=100, since=base + 10**9 + 2995)] == want[2995:]
    assert [e.log for e in logs.read(path, tail=3, since=base + 3)] == want[-3:]
    assert len(logs.read(path, tail=5000, since=base + 3)) == 2 + 3000
    assert logs.read(path, tail=0) == []
    # following from a tail: the torn line arrives once it is whole
    stop = threading.Event()
    got = []
    t = threading.Thread(target=lambda: got.extend(e.log for e in logs.follow(path, tail=1, stop=stop.is_set,
                                                                              interval=0.01)))
    t.start()
    time.sleep(0.1)
    with open(path, "ab") as f:
        f.write(b'\\n","stream":"stdout","time":"2027-01-01T00:00:00Z"}\n')
    time.sleep(0.1)
    stop.set()
    t.join(5)
    assert got == [want[-1], "torn\n"]
