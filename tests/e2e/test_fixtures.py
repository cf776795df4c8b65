"""The e2e fixtures themselves: the image is there and unpacked into overlayfs."""


def test_busybox_loaded_and_unpacked(corrald, corral):
    images = corrald.ctr("images", "ls", "-q").stdout.split()
    assert "docker.io/library/busybox:latest" in images
    snaps = corrald.ctr("snapshots", "--snapshotter", "overlayfs", "ls").stdout
    assert "Committed" in snaps
    assert corral("version").returncode == 0
