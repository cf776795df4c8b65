"""The shim's json-file writer: line splitting, rotation, URI parsing (real pipes and files)."""

import json
import os

import pytest

from corral.shim import logfile


def _entries(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _run_writer(uri, chunks):
    """Feed (stream, bytes) chunks through real pipes; wait until the writer is done."""
    import threading
    done = threading.Event()
    logs = logfile.Logs(done.set)
    fds = {"stdout": logs.pipe(uri, "stdout"), "stderr": logs.pipe(uri, "stderr")}
    logs.start()
    for stream, data in chunks:
        os.write(fds[stream], data)
    for fd in fds.values():
        os.close(fd)
    assert done.wait(10)
    return logs


def test_lines_streams_and_partial_lines(tmp_path):
    path = tmp_path / "c" / "c-json.log"
    _run_writer(f"jsonfile://{path}", [("stdout", b"hel"), ("stdout", b"lo\nwor"), ("stderr", b"oops\n"),
                                        ("stdout", b"ld\nno newline")])
    entries = _entries(path)
    by_stream = {s: [e["log"] for e in entries if e["stream"] == s] for s in ("stdout", "stderr")}
    assert by_stream["stdout"] == ["hello\n", "world\n", "no newline"]
    assert by_stream["stderr"] == ["oops\n"]
    for e in entries:
        assert e["time"].endswith("Z") and len(e["time"]) == len("2026-11-28T14:00:54.123456789Z")


def test_long_line_split_at_16k(tmp_path):
    path = tmp_path / "x.log"
    line = b"a" * (40 * 1024) + b"\n"
    _run_writer(f"jsonfile://{path}", [("stdout", line)])
    logs = [e["log"] for e in _entries(path)]
    assert [len(x) for x in logs] == [16384, 16384, 8192 + 1]
    assert "".join(logs) == line.decode()
    assert not logs[0].endswith("\n") and logs[-1].endswith("\n")


def test_rotation_keeps_max_file_files(tmp_path):
    path = tmp_path / "r.log"
    lines = [f"line {i:04d}\n".encode() for i in range(300)]
    _run_writer(f"jsonfile://{path}?max-size=2000&max-file=3", [("stdout", line) for line in lines])
    files = sorted(os.listdir(tmp_path))
    assert files == ["r.log", "r.log.1", "r.log.2"]
    for name in files:
        assert os.path.getsize(tmp_path / name) <= 2000
    # oldest first: .2, .1, then the current file; the newest lines are all there, in order
    kept = []
    for name in ("r.log.2", "r.log.1", "r.log"):
        kept += [e["log"] for e in _entries(tmp_path / name)]
    assert kept == [x.decode() for x in lines[-len(kept):]]
    assert kept[-1] == "line 0299\n"


def test_max_file_one_truncates(tmp_path):
    path = tmp_path / "t.log"
    _run_writer(f"jsonfile://{path}?max-size=500&max-file=1", [("stdout", b"x" * 50 + b"\n")] * 40)
    assert os.listdir(tmp_path) == ["t.log"]
    assert 0 < os.path.getsize(path) <= 500


def test_invalid_utf8_is_replaced(tmp_path):
    path = tmp_path / "u.log"
    _run_writer(f"jsonfile://{path}", [("stdout", b"caf\xc3\xa9 \xff\n")])
    assert _entries(path)[0]["log"] == "caf\u00e9 \ufffd\n"


@pytest.mark.parametrize("uri", ["jsonfile://relative/x.log", "jsonfile:///x.log?max-size=ten",
                                 "jsonfile:///x.log?max-file=0", "jsonfile:///x.log?colour=red", "file:///x.log"])
def test_bad_uris(uri):
    with pytest.raises(logfile.LogURIError):
        logfile.parse_uri(uri)


def test_sizes():
    assert logfile.parse_uri("jsonfile:///a/b.log?max-size=10m&max-file=3") == ("/a/b.log", 10 << 20, 3)
    assert logfile.parse_uri("jsonfile:///a/b.log") == ("/a/b.log", 0, 1)


def test_stop_finishes_while_a_writer_keeps_the_pipe_open(tmp_path):
    import threading
    path = tmp_path / "s.log"
    done = threading.Event()
    logs = logfile.Logs(done.set)
    w = logs.pipe(f"jsonfile://{path}", "stdout")
    logs.start()
    os.write(w, b"before stop\n")
    import time
    time.sleep(0.2)
    logs.close()
    assert done.wait(5)
    os.close(w)
    assert [e["log"] for e in _entries(path)] == ["before stop\n"]


def test_a_full_disk_drops_output_but_keeps_draining():
    """/dev/full fails every write with ENOSPC: the writer records the error and keeps reading
    its pipes, so the process writing them is never blocked."""
    import errno
    import threading
    done = threading.Event()
    logs = logfile.Logs(done.set)
    w = logs.pipe("jsonfile:///dev/full", "stdout")
    logs.start()
    line = b"x" * 99 + b"\n"
    for _ in range(20000):  # 2 MB: far more than the pipe holds
        os.write(w, line)
    os.close(w)
    assert done.wait(10)
    assert logs.writers["jsonfile:///dev/full"].error.errno == errno.ENOSPC
