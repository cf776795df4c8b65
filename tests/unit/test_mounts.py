"""Mount option parsing and validate(): no kernel state, just the rules."""

import os

import pytest

from corral.busybox import make_rootfs
from corral.oci.errors import RuntimeFailure
from corral.oci.linux import mounts, rootfs
from corral.oci.linux import syscalls as S
from corral.oci.specgen import default_spec


def test_flags_set_and_clear_in_order():
    o = mounts.parse({"type": "tmpfs", "options": ["ro", "nosuid", "rw", "nodev", "suid", "size=1m", "mode=755"]})
    assert o.flags == S.MS_NODEV
    assert o.data_str == "size=1m,mode=755"
    assert not o.bind


def test_bind_propagation_and_recursive():
    o = mounts.parse({"type": "none", "options": ["rbind", "ro", "rslave", "rro", "rnoatime"]})
    assert o.bind and o.flags == S.MS_BIND | S.MS_REC | S.MS_RDONLY
    assert o.propagation == [S.MS_SLAVE | S.MS_REC]
    assert o.rec_set == S.MOUNT_ATTR_RDONLY | S.MOUNT_ATTR_NOATIME
    assert o.rec_clr & S.MOUNT_ATTR__ATIME
    assert o.data_str is None


def test_type_specific_words():
    assert mounts.parse({"type": "devpts", "options": ["newinstance", "gid=5"]}).data_str == "newinstance,gid=5"
    assert mounts.parse({"type": "cgroup", "options": ["memory"]}).data_str == "memory"
    assert mounts.parse({"type": "somefs", "options": ["anyword"]}).data_str == "anyword"


@pytest.mark.parametrize("m, words", [
    ({"type": "tmpfs", "options": ["nosuchopt"]}, "unknown mount option 'nosuchopt'"),
    ({"type": "bind", "options": ["rbind", "size=1m"]}, "unknown mount option 'size=1m'"),
    ({"type": "proc", "options": ["tmpcopyup"]}, "only for tmpfs"),
    ({"type": "none", "options": ["bind", "idmap"]}, "not supported"),
    ({"type": "tmpfs", "options": "ro"}, "list of strings"),
])
def test_bad_options_refused(m, words):
    with pytest.raises(RuntimeFailure, match=words):
        mounts.parse(m)


@pytest.fixture
def bundle(tmp_path):
    make_rootfs(str(tmp_path / "rootfs"))
    return str(tmp_path)


def _spec(change):
    spec = default_spec(args=["true"], terminal=False)
    change(spec)
    return spec


def test_default_spec_is_valid(bundle):
    rootfs.validate(default_spec(), bundle)


@pytest.mark.parametrize("change, words", [
    (lambda s: s["root"].pop("path"), "root.path is missing"),
    (lambda s: s["root"].update(path="nowhere"), "is not a directory"),
    (lambda s: s["root"].update(path="rootfs/bin/busybox"), "is not a directory"),
    (lambda s: s["mounts"].append({"type": "tmpfs"}), "destination is missing"),
    (lambda s: s["mounts"].append({"destination": "mnt", "type": "tmpfs"}), "must be an absolute path"),
    (lambda s: s["mounts"].append({"destination": "/mnt", "type": "nosuchfs"}), "unknown mount type 'nosuchfs'"),
    (lambda s: s["mounts"].append({"destination": "/mnt"}), "no type and no bind option"),
    (lambda s: s["mounts"].append({"destination": "/mnt", "type": "none"}), "unknown mount type 'none'"),
    (lambda s: s["mounts"].append({"destination": "/mnt", "type": "tmpfs", "options": ["bogus"]}),
     "unknown mount option 'bogus'"),
    (lambda s: s["mounts"].append({"destination": "/mnt", "type": "bind", "source": "/nonexistent-src",
                                   "options": ["rbind"]}), "does not exist"),
    (lambda s: s["mounts"].append({"destination": "/mnt", "type": "bind", "options": ["rbind"]}),
     "needs a source"),
    (lambda s: s["linux"].update(rootfsPropagation="sideways"), "rootfsPropagation 'sideways'"),
    (lambda s: s["mounts"].append({"destination": "/mnt", "type": "tmpfs",
                                   "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}),
     "id-mapped mounts"),
    (lambda s: s["linux"].update(devices=[{"path": "dev/x", "type": "c", "major": 1, "minor": 3}]),
     "absolute path"),
    (lambda s: s["linux"].update(devices=[{"path": "/dev/x", "type": "q", "major": 1, "minor": 3}]),
     "type must be one of"),
    (lambda s: s["linux"].update(devices=[{"path": "/dev/x", "type": "c", "minor": 3}]), "major must be"),
    (lambda s: s["linux"].update(devices=[{"path": "/dev/x", "type": "c", "major": 1, "minor": 3,
                                           "fileMode": 0o17777}]), "fileMode"),
    (lambda s: s["linux"].update(devices=[{"path": "/dev/x", "type": "b", "major": 1, "minor": 3,
                                           "uid": -1}]), "uid must be"),
    (lambda s: s["linux"].update(maskedPaths=["proc/kcore"]), "not an absolute path"),
    (lambda s: s["root"].update(readonly="yes"), "root.readonly"),
])
def test_validate_refuses(bundle, change, words):
    with pytest.raises(RuntimeFailure, match=words) as info:
        rootfs.validate(_spec(change), bundle)
    assert "\n" not in str(info.value)


def test_validate_relative_bind_source_is_from_bundle(bundle):
    os.mkdir(os.path.join(bundle, "data"))
    rootfs.validate(_spec(lambda s: s["mounts"].append(
        {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind"]})), bundle)
