"""End-to-end fixtures: one test corrald per session with the busybox image loaded (as
docker.io/library/busybox:latest, unpacked into overlayfs), and a `corral` runner that talks
to it. Every container left at the end of the session is removed with the daemon."""

import os
import subprocess
import sys

import pytest

from tests.helpers.corrald import Corrald

IMAGE = "docker.io/library/busybox:latest"
CORRAL = os.path.join(os.path.dirname(sys.executable), "corral")


@pytest.fixture(scope="session")
def corrald():
    from corral.busybox import make_oci_archive
    d = Corrald(log_level="info")
    try:
        d.start()
        archive = os.path.join(d.dir, "busybox.tar")
        make_oci_archive(archive, IMAGE)
        d.ctr("images", "import", "--snapshotter", "overlayfs", archive)
        yield d
    finally:
        d.cleanup()


class Runner:
    """`corral(*args)` runs the CLI against the session's daemon and data root."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.address = daemon.sock
        self.data_root = daemon.root

    def argv(self, *args):
        return [CORRAL, "--address", self.address, "--data-root", self.data_root, *args]

    def __call__(self, *args, input=None, check=True, timeout=60):
        cmd = self.argv(*args)
        res = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res


@pytest.fixture(scope="session")
def corral(corrald):
    return Runner(corrald)


@pytest.fixture
def cleanup(corral):
    """Names (or ids) to `rm -f` after the test, whatever happened."""
    refs = []
    yield refs
    for ref in refs:
        corral("rm", "-f", ref, check=False)


def leftovers(daemon, namespace="default"):
    """What containers leave behind: records, overlayfs snapshots other than committed image
    layers, per-container directories."""
    records = daemon.ctr("containers", "ls", "-q", namespace=namespace).stdout.split()
    snaps = [line.split()[0] for line in daemon.ctr("snapshots", "--snapshotter", "overlayfs", "ls",
                                                    namespace=namespace).stdout.splitlines()[1:]
             if "Active" in line]
    cdir = os.path.join(daemon.root, "containers", namespace)
    files = sorted(os.listdir(cdir)) if os.path.isdir(cdir) else []
    return {"records": sorted(records), "snapshots": sorted(snaps), "files": files}
