"""An image with 60 layers runs through corrald and corral's shim: the overlay options of its
rootfs are longer than the kernel's one page of mount data (with the test daemon's root, whose
path is longer than the default /var/lib/corral), so the shim must mount it with lowerdirs
relative to their common directory, as the snapshotter's mount helper does. `corral cp` out of
the stopped container mounts the same chain in the CLI."""

import os
import shutil
import tarfile
import tempfile
import uuid

import pytest

from corral.busybox import make_rootfs
from tests.helpers.imagebuild import Image, layer, tree_layer, write_oci_layout

LAYERS = 60
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def many_layers(corrald):
    """The 60-layer image imported into a namespace of its own; removed afterwards."""
    ns = "layers-" + uuid.uuid4().hex[:8]
    name = f"docker.io/library/many-layers:{LAYERS}"
    tmp = tempfile.mkdtemp(prefix="corral-e2e-layers-")
    try:
        base = os.path.join(tmp, "base")
        make_rootfs(base)
        with open(os.path.join(base, "layer-0"), "w") as f:
            f.write("bottom\n")
        with open(os.path.join(base, "top"), "w") as f:
            f.write("0\n")
        layers = [tree_layer(base)]
        for i in range(1, LAYERS):
            layers.append(layer([("file", f"layer-{i}", f"layer {i}\n".encode()),
                                 ("file", "top", f"{i}\n".encode())]))
        img = Image(layers)
        assert len(img.manifest["layers"]) == LAYERS
        layout = os.path.join(tmp, "layout")
        write_oci_layout(layout, img, tag=name)
        archive = os.path.join(tmp, "image.tar")
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(os.listdir(layout)):
                tar.add(os.path.join(layout, entry), arcname=entry)
        corrald.ctr("images", "import", "--snapshotter", "overlayfs", archive, namespace=ns, timeout=180)
        yield ns, name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        corrald.ctr("images", "rm", "--sync", name, namespace=ns, check=False)
        corrald.ctr("namespaces", "rm", ns, check=False)


def overlay_options(corrald, ns, key):
    """The overlay mount options of snapshot `key`, as the daemon hands them out."""
    out = corrald.ctr("snapshots", "--snapshotter", "overlayfs", "mounts", "/mnt", key, namespace=ns).stdout
    # ctr prints `mount -t overlay overlay /mnt -o OPTIONS`
    words = out.split()
    return words[words.index("-o") + 1]


def test_sixty_layers_run_through_the_shim(corrald, corral, many_layers):
    ns, image = many_layers
    name = "many-" + uuid.uuid4().hex[:8]
    try:
        cid = corral("-n", ns, "create", "--name", name, "--network", "none", image,
                     "sh", "-c", "cat /layer-0 /layer-59 /top; ls / | grep -c '^layer-'").stdout.strip()
        info = corrald.ctr("containers", "info", cid, namespace=ns).stdout
        key = next(line.split('"')[3] for line in info.splitlines() if '"SnapshotKey"' in line)
        options = overlay_options(corrald, ns, key)
        assert options.count("lowerdir=") == 1
        assert options.split("lowerdir=")[1].split(",")[0].count(":") == LAYERS - 1
        # the point of the test: more than the kernel takes in one mount(2)
        assert len(options) + 1 > PAGE_SIZE, len(options)
        res = corral("-n", ns, "start", "-a", name, timeout=120)
        assert res.stdout == f"bottom\nlayer 59\n59\n{LAYERS}\n", res.stdout + res.stderr
        # the stopped container's snapshot is mounted by the CLI for cp
        out = tempfile.mkdtemp(prefix="corral-e2e-layers-cp-")
        try:
            corral("-n", ns, "cp", f"{name}:/layer-0", os.path.join(out, "bottom"))
            corral("-n", ns, "cp", f"{name}:/top", os.path.join(out, "top"))
            with open(os.path.join(out, "bottom")) as f:
                assert f.read() == "bottom\n"
            with open(os.path.join(out, "top")) as f:
                assert f.read() == "59\n"
        finally:
            shutil.rmtree(out, ignore_errors=True)
    finally:
        corral("-n", ns, "rm", "-f", name, check=False)
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if name in line or "corral-cp-" in line]
