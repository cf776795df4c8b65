"""corrald's process life: start, refuse a live socket, clean SIGTERM shutdown."""

import os
import subprocess

from tests.helpers.corrald import Corrald


def test_second_daemon_on_live_socket_refused_and_sigterm_cleans_socket():
    d = Corrald()
    try:
        d.start()
        other = subprocess.run(d.command(), capture_output=True, text=True, timeout=30)
        assert other.returncode == 1
        assert "in use" in other.stderr
        assert os.path.exists(d.sock), "the refused daemon must not remove the live socket"
        assert d.stop() == 0
        assert not os.path.exists(d.sock)
    finally:
        d.cleanup()


def test_stale_socket_is_replaced():
    d = Corrald()
    try:
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.bind(d.sock)
        s.close()  # a socket file nobody listens on, as after a kill -9
        d.start()
        assert d.ctr("version").returncode == 0
    finally:
        d.cleanup()


def test_json_logs_and_start_time():
    import json
    import time
    d = Corrald()
    try:
        t0 = time.monotonic()
        d.start()
        started = time.monotonic() - t0
        assert started < 10
        d.stop()
        d.command = lambda: Corrald.command(d)[:-2] + ["--log-level", "info", "--log-format", "json"]
        d.start()
        d.stop()
        lines = [line for line in d.log_text().splitlines() if line.startswith("{")]
        assert lines, d.log_text()
        for line in lines:
            rec = json.loads(line)
            assert set(rec) >= {"time", "level", "msg"}
        assert any("serving on" in json.loads(line)["msg"] for line in lines)
    finally:
        d.cleanup()


def test_socket_group_from_config():
    import grp
    import stat
    group = next((g for g in grp.getgrall() if g.gr_gid != 0), None)
    if group is None:
        import pytest
        pytest.skip("no non-root group on this machine")
    d = Corrald(f'version = 2\n[grpc]\ngid = "{group.gr_name}"\n')
    try:
        d.start()
        st = os.stat(d.sock)
        assert st.st_gid == group.gr_gid and stat.S_IMODE(st.st_mode) == 0o660
    finally:
        d.cleanup()
