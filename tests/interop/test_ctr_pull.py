"""ctr images pull --plain-http from a local registry into corrald, then run it; export and
import; content fetch; digests and sizes as real containerd reports them."""

import os
import shutil

import pytest

from tests.helpers.corrald import Corrald

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("ctr") is None or shutil.which("docker-registry") is None,
                                 reason="ctr and docker-registry are needed")]


@pytest.fixture(scope="module")
def env():
    from tests.helpers.imagebuild import Image, busybox_layer, layer
    from tests.helpers.registry import LocalRegistry
    reg = LocalRegistry()
    d = Corrald()
    try:
        reg.start()
        d.start()
        img = Image([busybox_layer(), layer([("file", "etc/corral-layer2", b"second layer\n"), ("whiteout", "etc/passwd")])])
        img.push(reg.host, "corral/bb", "v1")
        yield d, f"{reg.host}/corral/bb:v1", img
    finally:
        d.cleanup()
        reg.stop()


def test_pull_check_run(env):
    d, ref, img = env
    d.ctr("images", "pull", "--plain-http", ref, timeout=120)
    ls = d.ctr("images", "ls").stdout
    assert ref in ls and img.digest in ls
    check = d.ctr("images", "check").stdout
    assert "complete" in check and check.split()[-1] == "true"
    # the second layer adds a file and whites out one of the first layer's
    res = d.ctr("run", "--rm", ref, "pull-run", "sh", "-c",
                "cat /etc/corral-layer2; test -e /etc/passwd && echo passwd-still-there; test -e /etc/group && echo group")
    assert res.stdout == "second layer\ngroup\n"


def test_export_import_roundtrip(env, tmp_path):
    d, ref, img = env
    d.ctr("images", "pull", "--plain-http", ref, timeout=120)
    tar = str(tmp_path / "export.tar")
    d.ctr("images", "export", tar, ref)
    assert os.path.getsize(tar) > 0
    d.ctr("images", "import", tar, namespace="imported")
    assert img.digest in d.ctr("images", "ls", namespace="imported").stdout


def test_content_fetch(env):
    d, ref, img = env
    d.ctr("content", "fetch", "--plain-http", ref, namespace="fetched", timeout=120)
    digests = d.ctr("content", "ls", "-q", namespace="fetched").stdout.split()
    assert img.digest in digests
    for desc in img.layer_descs:
        assert desc["digest"] in digests


@pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd not installed")
def test_same_digests_and_sizes_as_containerd(env):
    from tests.helpers.containerd import Containerd
    d, ref, img = env
    d.ctr("images", "pull", "--plain-http", ref, namespace="cmp", timeout=120)
    real = Containerd()
    try:
        real.start()
        real.ctr("images", "pull", "--plain-http", ref, namespace="cmp", timeout=120)

        def rows(ctl, *args):
            return sorted(tuple(line.split()[:2]) for line in ctl.ctr(*args, namespace="cmp").stdout.splitlines()[1:])
        assert rows(d, "images", "ls") == rows(real, "images", "ls")
        assert rows(d, "content", "ls") == rows(real, "content", "ls")
        assert [r[0] for r in rows(d, "snapshots", "ls")] == [r[0] for r in rows(real, "snapshots", "ls")]
    finally:
        real.cleanup()


def test_pull_interrupted_by_kill_resumes(env, tmp_path):
    """kill -9 of corrald during a pull; after a restart the same pull completes (the partial
    ingest is resumed or replaced) and nothing half-made stays behind."""
    import glob
    import signal
    import subprocess
    import time
    from tests.helpers.imagebuild import Image, busybox_layer, layer
    d, ref, _ = env
    big = layer([("file", "big.bin", os.urandom(96 << 20))])
    img = Image([busybox_layer(), big], compression="")
    host = ref.split("/", 1)[0]
    img.push(host, "corral/big", "v1")
    big_ref = f"{host}/corral/big:v1"
    ingest = os.path.join(d.root, "io.containerd.content.v1.content", "ingest")
    pull = subprocess.Popen(["ctr", "--address", d.sock, "-n", "killpull", "images", "pull", "--plain-http",
                             big_ref], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sizes = [os.path.getsize(p) for p in glob.glob(os.path.join(ingest, "*", "data"))]
            if any(s > (8 << 20) for s in sizes):
                break
            time.sleep(0.005)
        else:
            pytest.fail("the pull never started writing")
        d.stop(signal.SIGKILL)
    finally:
        pull.kill()
        pull.wait(10)
    d.start()
    d.ctr("images", "pull", "--plain-http", big_ref, namespace="killpull", timeout=300)
    assert img.digest in d.ctr("images", "ls", namespace="killpull").stdout
    check = d.ctr("images", "check", namespace="killpull").stdout
    assert "complete" in check and check.split()[-1] == "true"
    assert d.ctr("content", "active", namespace="killpull").stdout.split()[:1] in ([], ["REF"])
    res = d.ctr("run", "--rm", big_ref, "bigrun", "sh", "-c", "wc -c < /big.bin", namespace="killpull")
    assert res.stdout.strip() == str(96 << 20)


@pytest.mark.parametrize("compression", ["zstd", ""])
def test_pull_other_layer_compressions(env, compression):
    from tests.helpers.imagebuild import Image, busybox_layer, layer
    d, ref, _ = env
    host = ref.split("/", 1)[0]
    img = Image([busybox_layer(), layer([("file", "etc/kind", (compression or "plain").encode())])],
                compression=compression)
    name = f"{host}/corral/bb-{compression or 'plain'}:v1"
    img.push(host, f"corral/bb-{compression or 'plain'}", "v1")
    ns = f"comp-{compression or 'plain'}"
    d.ctr("images", "pull", "--plain-http", name, namespace=ns, timeout=120)
    res = d.ctr("run", "--rm", name, f"run-{ns}", "cat", "/etc/kind", namespace=ns)
    assert res.stdout == (compression or "plain")
