"""The real ctr 1.6 against corrald's socket."""

import os
import shutil
import stat

import pytest

from tests.helpers.corrald import Corrald

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("ctr") is None, reason="ctr (containerd package) not installed")]


@pytest.fixture(scope="module")
def daemon():
    d = Corrald()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


def test_socket_mode(daemon):
    st = os.stat(daemon.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == 0 and st.st_gid == 0


def test_version(daemon):
    out = daemon.ctr("version").stdout
    assert "Server:" in out
    server = out.split("Server:", 1)[1]
    import corral
    assert f"Version:  {corral.__version__}" in server
    assert "UUID:" in server


def test_plugins_ls(daemon):
    out = daemon.ctr("plugins", "ls").stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    found = {(r[0], r[1]): r[-1] for r in rows}
    for pid in ("version", "introspection", "events"):
        assert found.get(("io.containerd.grpc.v1", pid)) == "ok", out
    # filters reach the server
    out = daemon.ctr("plugins", "ls", "type==io.containerd.grpc.v1").stdout
    assert all(line.startswith("io.containerd.grpc.v1") for line in out.splitlines()[1:])
