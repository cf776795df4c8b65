"""corral.volumes on a real directory tree: create/get/list/remove, names, and the OCI mounts
for requests (the in-use refusal and prune need a daemon: tests/e2e/test_logs_volumes.py)."""

import json
import os
from types import SimpleNamespace

import pytest

from corral import volumes


def test_create_get_list_inspect(tmp_path):
    root = str(tmp_path)
    v = volumes.create(root, "default", "data", {"k": "v"})
    assert os.path.isdir(v.mountpoint)
    assert v.mountpoint == os.path.join(root, "volumes", "default", "data", "_data")
    with open(os.path.join(v.dir, "volume.json")) as f:
        meta = json.load(f)
    assert meta["name"] == "data" and meta["labels"] == {"k": "v"} and meta["created"].endswith("Z")
    # creating again returns the same volume, data kept
    open(os.path.join(v.mountpoint, "f"), "w").close()
    again = volumes.create(root, "default", "data")
    assert again.labels == {"k": "v"} and os.path.exists(os.path.join(again.mountpoint, "f"))
    anon = volumes.create(root, "default")
    assert len(anon.name) == 64
    assert [x.name for x in volumes.list_volumes(root, "default")] == sorted(["data", anon.name])
    assert volumes.list_volumes(root, "other") == []
    info = volumes.get(root, "default", "data").inspect()
    assert info["Driver"] == "local" and info["Mountpoint"] == v.mountpoint and info["Name"] == "data"
    assert not [n for n in os.listdir(os.path.join(root, "volumes", "default")) if n.startswith(".")]


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "a/b", "a b", "x" * 256, "../up"])
def test_bad_names(tmp_path, name):
    with pytest.raises(volumes.VolumeError):
        volumes.create(str(tmp_path), "default", name)
    assert not os.path.exists(os.path.join(tmp_path, "volumes", "default", name or "x"))


def test_remove(tmp_path):
    root = str(tmp_path)
    volumes.create(root, "default", "gone")
    volumes.remove(root, "default", "gone")
    with pytest.raises(volumes.VolumeNotFound):
        volumes.get(root, "default", "gone")
    with pytest.raises(volumes.VolumeNotFound):
        volumes.remove(root, "default", "gone")
    assert os.listdir(os.path.join(root, "volumes", "default")) == []


def test_mount_for(tmp_path):
    root = str(tmp_path)
    m = volumes.mount_for(SimpleNamespace(type="volume", target="/data", source="auto", readonly=True, options=[]),
                          data_root=root, namespace="ns1")
    assert m == {"destination": "/data", "type": "bind",
                 "source": os.path.join(root, "volumes", "ns1", "auto", "_data"), "options": ["rbind", "rprivate", "ro"]}
    assert os.path.isdir(m["source"])
    b = volumes.mount_for(SimpleNamespace(type="bind", target="/h", source=str(tmp_path), readonly=False, options=[]),
                          data_root=root, namespace="ns1")
    assert b["source"] == str(tmp_path) and "rw" in b["options"]
    with pytest.raises(volumes.VolumeError, match="does not exist"):
        volumes.mount_for(SimpleNamespace(type="bind", target="/h", source=str(tmp_path / "missing"),
                                          readonly=False, options=[]), data_root=root, namespace="ns1")
    t = volumes.mount_for(SimpleNamespace(type="tmpfs", target="/t", source="", readonly=False, options=["size=1024"]),
                          data_root=root, namespace="ns1")
    assert t["type"] == "tmpfs" and "size=1024" in t["options"]
    with pytest.raises(volumes.VolumeError):
        volumes.mount_for(SimpleNamespace(type="volume", target="/d", source="bad name", readonly=False, options=[]),
                          data_root=root, namespace="ns1")
