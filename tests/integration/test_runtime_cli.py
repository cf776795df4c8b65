"""corral-runc's small verbs through the real binary: `spec` (runnable output, --rootless,
refusals), `update --resources FILE`, `--version`."""

import json
import os

import pytest

from corral import __version__
from corral.busybox import make_rootfs
from corral.oci.specgen import OCI_VERSION
from tests.helpers.oci_runtime import leftovers, rt  # noqa: F401


def _one_line_failure(res, words):
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral-runc: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def bundle(rt):
    path = os.path.join(rt.tmp, "bundle")
    make_rootfs(os.path.join(path, "rootfs"))
    return path


def _config(bundle):
    with open(os.path.join(bundle, "config.json")) as f:
        return json.load(f)


def _run_with(rt, bundle, cid, args):
    """Run the written spec with a non-terminal process running `args`; returns stdout."""
    spec = _config(bundle)
    spec["process"].update(terminal=False, args=args)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    res = rt.ok("run", "--bundle", bundle, cid)
    assert leftovers(rt.tmp, cid) == []
    return res.stdout


def test_spec_writes_a_default_config_that_runs(rt, cid, bundle):
    res = rt.ok("spec", "--bundle", bundle)
    assert res.stdout == "" and res.stderr == ""
    spec = _config(bundle)
    # runc's defaults: an interactive sh in a read-only rootfs with its own namespaces
    assert spec["ociVersion"] == OCI_VERSION
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert spec["process"]["terminal"] is True and spec["process"]["args"] == ["sh"]
    assert spec["process"]["noNewPrivileges"] is True
    assert {ns["type"] for ns in spec["linux"]["namespaces"]} == {
        "pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "uidMappings" not in spec["linux"]
    out = _run_with(rt, bundle, cid, ["sh", "-c", "hostname; id -u; touch /x 2>/dev/null || echo ro"])
    assert out.split() == [spec["hostname"], "0", "ro"]


def test_spec_rootless(rt, cid, bundle):
    rt.ok("spec", "--rootless", "--bundle", bundle)
    spec = _config(bundle)
    linux = spec["linux"]
    kinds = [ns["type"] for ns in linux["namespaces"]]
    assert "user" in kinds and "network" not in kinds
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    sys_mount = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert sys_mount["source"] == "/sys" and "rbind" in sys_mount["options"] and "ro" in sys_mount["options"]
    assert not any(o.startswith(("uid=", "gid=")) for m in spec["mounts"] for o in m.get("options", []))
    out = _run_with(rt, bundle, cid, ["sh", "-c", "cat /proc/self/uid_map; readlink /proc/self/ns/net"])
    uid_map, netns = out.split("\n", 1)
    assert uid_map.split() == ["0", str(os.geteuid()), "1"]
    assert netns.strip() == os.readlink("/proc/self/ns/net")  # no network namespace of its own


def test_spec_refuses_to_overwrite(rt, bundle):
    path = os.path.join(bundle, "config.json")
    with open(path, "w") as f:
        f.write("mine")
    _one_line_failure(rt("spec", "--bundle", bundle), [path, "already exists"])
    with open(path) as f:
        assert f.read() == "mine"
    missing = os.path.join(rt.tmp, "no-such-dir")
    _one_line_failure(rt("spec", "--bundle", missing), [missing, "cannot write"])
    assert not os.path.exists(missing)


def test_update_resources_from_a_file(rt, cid, bundle):
    rt.ok("spec", "--bundle", bundle)
    spec = _config(bundle)
    spec["process"].update(terminal=False, args=["sleep", "1000"])
    spec["linux"]["resources"]["pids"] = {"limit": 20}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    rt.ok("create", "--bundle", bundle, cid)
    try:
        res_file = os.path.join(rt.tmp, "resources.json")
        with open(res_file, "w") as f:
            json.dump({"pids": {"limit": 33}, "memory": {"limit": 64 << 20}}, f)
        rt.ok("update", "--resources", res_file, cid)
        stats = json.loads(rt.ok("events", "--stats", cid).stdout)["data"]
        assert stats["pids"]["limit"] == 33
        assert stats["memory"]["usage"]["limit"] == 64 << 20
        with open(os.path.join(rt.root, cid, "state.json")) as f:
            saved = json.load(f)["config"]["linux"]["resources"]
        assert saved["pids"] == {"limit": 33} and saved["memory"]["limit"] == 64 << 20
        # a missing file, a file that is not an object, a wrong type: one line, nothing changed
        _one_line_failure(rt("update", "--resources", os.path.join(rt.tmp, "nope.json"), cid),
                          ["cannot read", "nope.json"])
        for text, words in (("[1]", ["must hold a JSON object"]),
                            ('{"pids": {"limit": "many"}}', ["linux.resources.pids.limit"])):
            with open(res_file, "w") as f:
                f.write(text)
            _one_line_failure(rt("update", "--resources", res_file, cid), words)
        assert json.loads(rt.ok("events", "--stats", cid).stdout)["data"]["pids"]["limit"] == 33
    finally:
        rt("delete", "--force", cid)
    assert leftovers(rt.tmp, cid) == []


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(rt, flag):
    res = rt.ok(flag)
    assert res.stdout.splitlines() == [f"corral-runc version {__version__}", f"spec: {OCI_VERSION}"]
    assert res.stderr == ""
