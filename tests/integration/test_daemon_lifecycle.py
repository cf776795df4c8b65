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
