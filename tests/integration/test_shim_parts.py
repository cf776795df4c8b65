"""The shim's small parts: flag parsing, the hand-encoded DeleteResponse, runtime options,
grouping, mount options."""

import json
import os

from google.protobuf.any_pb2 import Any

from corral.api.containerd.runc.options.oci_pb2 import Options
from corral.api.containerd.runtime.v2.task.shim_pb2 import DeleteResponse
from corral.api.runtimeoptions.v1.api_pb2 import Options as ConfigOptions
from corral.oci.linux import syscalls as sc
from corral.shim import main, mounts, options, start


def test_go_style_flags():
    f = main.parse(["-namespace", "ns", "--address=/a.sock", "-publish-binary", "/bin/c", "-id", "c1",
                    "-debug", "-bundle", "/b", "delete"])
    assert (f.namespace, f.address, f.publish_binary, f.id, f.debug, f.bundle, f.action) == \
        ("ns", "/a.sock", "/bin/c", "c1", True, "/b", "delete")
    assert main.parse(["-v"]).version


def test_delete_response_encoding():
    for status, at, pid in ((137, 1_800_000_000_000_000_001, 0), (0, 2_000_000_000, 7), (255, 5, 65536)):
        want = DeleteResponse(exit_status=status, pid=pid)
        want.exited_at.FromNanoseconds(at)
        assert start.delete_response(status, at, pid) == want.SerializeToString()


def test_runtime_options(tmpdir_root):
    runc = Any(type_url="containerd.runc.v1.Options",
               value=Options(binary_name="crun", root="/r", systemd_cgroup=True).SerializeToString())
    assert options.from_any(runc) == {"binary_name": "crun", "root": "/r", "systemd_cgroup": True}
    conf = os.path.join(tmpdir_root, "rt.toml")
    with open(conf, "w") as f:
        f.write('BinaryName = "runc"\nRoot = "/x"\n')
    cfg = Any(type_url="runtimeoptions.v1.Options", value=ConfigOptions(config_path=conf).SerializeToString())
    assert options.from_any(cfg) == {"binary_name": "runc", "root": "/x", "systemd_cgroup": False}
    # what `start` got on stdin is kept in the bundle for Create and for `delete`
    options.save_raw(tmpdir_root, cfg.SerializeToString())
    assert options.load(tmpdir_root)["binary_name"] == "runc"
    assert options.load(tmpdir_root, runc)["binary_name"] == "crun"
    assert options.runtime_root("ns") == "/run/containerd/runc/ns"


def test_grouping_and_socket_path(tmpdir_root, monkeypatch):
    assert start.group_of(tmpdir_root, "c1", "ns") == "c1"
    monkeypatch.setenv("CORRAL_SHIM_GROUP", "namespace")
    assert start.group_of(tmpdir_root, "c1", "ns") == "namespace:ns"
    with open(os.path.join(tmpdir_root, "config.json"), "w") as f:
        json.dump({"annotations": {"io.kubernetes.cri.sandbox-id": "pod9"}}, f)
    assert start.group_of(tmpdir_root, "c1") == "pod9"
    p = start.socket_path("/run/containerd/containerd.sock", "k8s.io", "pod9")
    assert p.startswith("/run/containerd/s/") and len(p) < 100
    assert p != start.socket_path("/run/containerd/containerd.sock", "default", "pod9")


def test_mount_options():
    flags, data = mounts.parse_options(["ro", "nosuid", "rbind", "lowerdir=/a", "index=off"])
    assert flags == sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_BIND | sc.MS_REC
    assert data == "lowerdir=/a,index=off"
    assert mounts.parse_options(["ro", "rw"])[0] == 0
    assert mounts.is_mount_point("/proc") and not mounts.is_mount_point("/proc/self")
