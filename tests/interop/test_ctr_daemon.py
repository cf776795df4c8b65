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


IMAGE = "docker.io/library/busybox:latest"


@pytest.fixture(scope="module")
def busybox_tar(daemon):
    from corral.busybox import make_oci_archive
    path = os.path.join(daemon.dir, "busybox.tar")
    make_oci_archive(path, IMAGE)
    return path


def test_namespaces_create_ls_label_rm(daemon):
    daemon.ctr("namespaces", "create", "nstest", "team=a")
    out = daemon.ctr("namespaces", "ls").stdout
    assert "nstest" in out and "team=a" in out
    daemon.ctr("namespaces", "label", "nstest", "x=y")
    assert "x=y" in daemon.ctr("namespaces", "ls").stdout
    dup = daemon.ctr("namespaces", "create", "nstest", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    bad = daemon.ctr("namespaces", "create", "no/slash", check=False)
    assert bad.returncode != 0 and "invalid" in bad.stderr
    daemon.ctr("namespaces", "rm", "nstest")
    assert "nstest" not in daemon.ctr("namespaces", "ls", "-q").stdout.split()


def test_missing_namespace_is_failed_precondition(daemon):
    import grpc
    from corral.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
    with grpc.insecure_channel("unix:" + daemon.sock) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.List(containers_pb2.ListContainersRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as e:
            stub.Get(containers_pb2.GetContainerRequest(id="nope"), timeout=10,
                     metadata=[("containerd-namespace", "default")])
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_images_import_ls_check_tag_rm(daemon, busybox_tar):
    daemon.ctr("images", "import", busybox_tar, namespace="imgs")
    out = daemon.ctr("images", "ls", namespace="imgs").stdout
    assert IMAGE in out and "linux/" in out
    check = daemon.ctr("images", "check", namespace="imgs").stdout
    assert "complete" in check and "true" in check.split()[-1]
    daemon.ctr("images", "tag", IMAGE, "example.com/bb:tagged", namespace="imgs")
    names = daemon.ctr("images", "ls", "-q", namespace="imgs").stdout.split()
    assert set(names) == {IMAGE, "example.com/bb:tagged"}
    assert daemon.ctr("images", "ls", "-q", "name==example.com/bb:tagged", namespace="imgs").stdout.split() == \
        ["example.com/bb:tagged"]
    daemon.ctr("images", "rm", "example.com/bb:tagged", namespace="imgs")
    assert daemon.ctr("images", "ls", "-q", namespace="imgs").stdout.split() == [IMAGE]
    # namespaces are isolated
    assert daemon.ctr("images", "ls", "-q", namespace="other").stdout.split() == []


def test_containers_create_ls_info_rm(daemon, busybox_tar):
    import json
    daemon.ctr("images", "import", busybox_tar)
    daemon.ctr("containers", "create", "--label", "role=test", IMAGE, "ctest1")
    out = daemon.ctr("containers", "ls").stdout
    assert "ctest1" in out and IMAGE in out and "io.containerd.runc.v2" in out
    info = json.loads(daemon.ctr("containers", "info", "ctest1").stdout)
    assert info["ID"] == "ctest1" and info["Image"] == IMAGE and info["Labels"]["role"] == "test"
    assert info["Snapshotter"] == "overlayfs" and info["SnapshotKey"] == "ctest1"
    assert info["Spec"]["process"]["args"]
    assert daemon.ctr("containers", "ls", "-q", "labels.role==test").stdout.split() == ["ctest1"]
    snaps = daemon.ctr("snapshots", "ls").stdout
    assert "ctest1" in snaps and "Active" in snaps
    dup = daemon.ctr("containers", "create", IMAGE, "ctest1", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    daemon.ctr("containers", "rm", "ctest1")
    assert "ctest1" not in daemon.ctr("containers", "ls", "-q").stdout.split()
    assert "ctest1" not in daemon.ctr("snapshots", "ls").stdout


def test_snapshots_prepare_mounts_rm(daemon, busybox_tar):
    daemon.ctr("images", "import", busybox_tar)
    committed = [line.split()[0] for line in daemon.ctr("snapshots", "ls").stdout.splitlines()[1:]
                 if line.split()[-1] == "Committed"]
    assert committed
    daemon.ctr("snapshots", "prepare", "snaptest", committed[0])
    mounts = daemon.ctr("snapshots", "mounts", "/mnt/x", "snaptest").stdout
    assert mounts.startswith("mount -t ") and "/mnt/x" in mounts
    res = daemon.ctr("snapshots", "rm", committed[0], check=False)
    assert res.returncode != 0  # it has a child
    daemon.ctr("snapshots", "rm", "snaptest")
    assert "snaptest" not in daemon.ctr("snapshots", "ls").stdout


def test_leases(daemon):
    daemon.ctr("leases", "create", "--id", "lease-one", "k=v")
    out = daemon.ctr("leases", "ls").stdout
    assert "lease-one" in out and "k=v" in out
    daemon.ctr("leases", "rm", "lease-one")
    assert "lease-one" not in daemon.ctr("leases", "ls").stdout


@pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd not installed")
def test_same_digests_and_chain_ids_as_containerd(daemon, busybox_tar):
    from tests.helpers.containerd import Containerd
    daemon.ctr("images", "import", busybox_tar, namespace="cmp")
    real = Containerd()
    try:
        real.start()
        real.ctr("images", "import", busybox_tar, namespace="cmp")

        def table(ctl, *args):
            return sorted(tuple(line.split()[:3]) for line in ctl.ctr(*args, namespace="cmp").stdout.splitlines()[1:])
        assert table(daemon, "images", "ls") == table(real, "images", "ls")
        # containerd's GC drops the archive's index blob after the import; corrald keeps what
        # its (not yet wired) GC would collect, so compare what containerd keeps
        ours = {r[0]: r[1] for r in table(daemon, "content", "ls")}
        for digest, size, *_ in table(real, "content", "ls"):
            assert ours.get(digest) == size
        ours = sorted(line.split()[0] for line in daemon.ctr("snapshots", "ls", namespace="cmp").stdout.splitlines()[1:])
        theirs = sorted(line.split()[0] for line in real.ctr("snapshots", "ls", namespace="cmp").stdout.splitlines()[1:])
        assert ours == theirs
    finally:
        real.cleanup()


def test_image_rm_collects_content_and_snapshots(daemon, busybox_tar):
    import glob
    import time
    ns = "gcns"
    daemon.ctr("images", "import", busybox_tar, namespace=ns)
    assert daemon.ctr("content", "ls", "-q", namespace=ns).stdout.split()
    daemon.ctr("images", "rm", "--sync", IMAGE, namespace=ns)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = daemon.ctr("content", "ls", "-q", namespace=ns).stdout.split() + \
            daemon.ctr("snapshots", "ls", namespace=ns).stdout.splitlines()[1:]
        if not left:
            break
        time.sleep(0.2)
    assert not left
    # blobs other namespaces still reference stay on disk
    if daemon.ctr("images", "ls", "-q").stdout.split():
        assert glob.glob(os.path.join(daemon.root, "io.containerd.content.v1.content", "blobs", "sha256", "*"))


def test_disabled_plugin_shows_as_skip():
    d = Corrald('version = 2\ndisabled_plugins = ["io.containerd.snapshotter.v1.native"]\n')
    try:
        d.start()
        rows = {tuple(line.split()[:2]): line.split()[-1] for line in d.ctr("plugins", "ls").stdout.splitlines()[1:]}
        assert rows[("io.containerd.snapshotter.v1", "native")] == "skip"
        assert rows[("io.containerd.snapshotter.v1", "overlayfs")] == "ok"
        res = d.ctr("snapshots", "--snapshotter", "native", "ls", check=False)
        assert res.returncode != 0 and "not available" in res.stderr
    finally:
        d.cleanup()
