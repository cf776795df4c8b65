"""corrald's shim log reader: one thread copies every bundle's `log` FIFO into the daemon log."""

import logging
import os
import threading
import time

from corral.daemon.shimlogs import ShimLogs


def _wait(cond, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_lines_from_many_fifos_one_thread(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="corrald")
    logs = ShimLogs()
    bundles = []
    try:
        for i in range(3):
            b = tmp_path / f"c{i}"
            b.mkdir()
            logs.add(str(b), f"c{i}")
            bundles.append(b)
        threads_before = threading.active_count()
        writers = [os.open(b / "log", os.O_WRONLY | os.O_NONBLOCK) for b in bundles]
        for i, fd in enumerate(writers):
            os.write(fd, f"hello from c{i}\npart".encode())
        os.write(writers[0], b"ial line\n")
        for fd in writers:
            os.close(fd)  # a shim that exits: the reader must not spin on the closed writer
        assert _wait(lambda: all(f"shim c{i}: hello from c{i}" in caplog.text for i in range(3)))
        assert _wait(lambda: "shim c0: partial line" in caplog.text)
        assert threading.active_count() == threads_before  # no thread per FIFO
        # the unfinished line of c1 is logged when its bundle goes away
        logs.remove(str(bundles[1]))
        assert "shim c1: part" not in caplog.text  # a line is only logged once it ends
        assert str(bundles[1]) not in logs.fifos
    finally:
        logs.close()
    for b in bundles:
        assert (b / "log").exists()  # removing the bundle directory is the runtime's job


def test_remove_closes_the_fifo(tmp_path):
    logs = ShimLogs()
    try:
        b = tmp_path / "c"
        b.mkdir()
        logs.add(str(b), "c")
        fd = logs.fifos[str(b)]
        logs.remove(str(b))
        assert not logs.ids and not logs.fifos
        try:
            os.fstat(fd)
            still_open = os.readlink(f"/proc/self/fd/{fd}").endswith("/c/log")
        except OSError:
            still_open = False
        assert not still_open
    finally:
        logs.close()
