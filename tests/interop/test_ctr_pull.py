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
