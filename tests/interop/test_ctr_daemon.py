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


def test_content_ingest_ls_get_label_rm(daemon, tmp_path):
    blob = b"hello corral content\n" * 1000
    import hashlib
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    daemon.ctr("content", "ingest", "--expected-digest", digest, "--expected-size", str(len(blob)),
               "ref-" + tmp_path.name, input=blob.decode())
    assert digest in daemon.ctr("content", "ls").stdout
    assert daemon.ctr("content", "get", digest).stdout.encode() == blob
    # a second ingest of the same blob succeeds (AlreadyExists is success for clients)
    daemon.ctr("content", "ingest", "--expected-digest", digest, "ref2-" + tmp_path.name, input=blob.decode())
    daemon.ctr("content", "label", digest, "corral.test=yes")
    assert digest in daemon.ctr("content", "ls", "labels.\"corral.test\"==yes").stdout
    assert digest not in daemon.ctr("content", "ls", "labels.\"corral.test\"==no").stdout
    daemon.ctr("content", "rm", digest)
    assert digest not in daemon.ctr("content", "ls").stdout
    res = daemon.ctr("content", "get", digest, check=False)
    assert res.returncode != 0 and "not found" in res.stderr


def test_wrong_digest_refused(daemon, tmp_path):
    res = daemon.ctr("content", "ingest", "--expected-digest", "sha256:" + "0" * 64,
                     "bad-" + tmp_path.name, input="data", check=False)
    assert res.returncode != 0
    assert "sha256:" + "0" * 64 not in daemon.ctr("content", "ls").stdout


def test_events_subscribe(daemon, tmp_path):
    import subprocess
    import time
    blob = b"an event payload\n"
    import hashlib
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    out = open(tmp_path / "events.txt", "w+")
    proc = subprocess.Popen(["ctr", "--address", daemon.sock, "events"], stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)  # let the subscription reach the daemon
        daemon.ctr("content", "ingest", "--expected-digest", digest, "ev-" + tmp_path.name, input=blob.decode())
        daemon.ctr("content", "rm", digest)
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            out.seek(0)
            text = out.read()
            if "/content/delete" in text:
                break
            time.sleep(0.1)
        assert "/content/delete" in text and digest in text, text
    finally:
        proc.kill()
        proc.wait(5)
        out.close()
