"""Bad input to corral-runc: one clear line, exit 1, nothing left behind."""

import json
import os

import pytest

from tests.helpers.oci_runtime import leftovers, rt  # noqa: F401


def _assert_clean_failure(rt, res, cid, words):
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("corral-runc: ")
    for w in words:
        assert w in lines[0], lines[0]
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert leftovers(rt.tmp, cid) == []


def _write(bundle, text):
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write(text)


def test_invalid_json(rt, cid):
    bundle = rt.bundle()
    _write(bundle, "{not json")
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, ["not valid JSON"])


@pytest.mark.parametrize("change,words", [
    (lambda s: s.pop("process"), ["process is missing"]),
    (lambda s: s.pop("ociVersion"), ["ociVersion"]),
    (lambda s: s["root"].pop("path"), ["root.path"]),
    (lambda s: s["process"].update(args=[]), ["process.args"]),
    (lambda s: s["linux"]["namespaces"].append({"type": "bogus"}), ["unknown namespace type 'bogus'"]),
    (lambda s: s["linux"]["namespaces"].append({"type": "pid"}), ["appears twice"]),
    (lambda s: s["linux"].update(intelRdt={}), ["linux.intelRdt"]),
    (lambda s: s.update(windows={}), ["windows"]),
    (lambda s: s["linux"].update(sysctl={"kernel.panic": "1"}), ["not namespaced"]),
    (lambda s: s.update(hooks={"prestart": [{"path": "relative"}]}), ["absolute"]),
    (lambda s: s.update(hooks={"bogus": []}), ["unknown hook kind"]),
    (lambda s: s["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}]),
     ["no user namespace"]),
    (lambda s: s["linux"]["namespaces"].append({"type": "network", "path": "/nonexistent/ns"}),
     ["appears twice"]),
])
def test_bad_config(rt, cid, change, words):
    bundle = rt.bundle(changes=change)
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, words)


def test_join_missing_namespace_path(rt, cid):
    def change(s):
        s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "network"]
        s["linux"]["namespaces"].append({"type": "network", "path": "/nonexistent/ns"})
    bundle = rt.bundle(changes=change)
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, ["/nonexistent/ns", "does not exist"])


@pytest.mark.parametrize("bad_id", ["a/b", "..", ".", "x y", "ü", ""])
def test_bad_id(rt, bad_id):
    bundle = rt.bundle()
    res = rt("create", "-b", bundle, bad_id)
    assert res.returncode == 1 and "invalid container ID" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not os.path.exists(rt.root) or os.listdir(rt.root) == []


def test_duplicate_id(rt, cid):
    bundle = rt.bundle(args=["sleep", "1000"])
    rt.ok("create", "-b", bundle, cid)
    pid = rt.state(cid)["pid"]
    res = rt("create", "-b", bundle, cid)
    assert res.returncode == 1 and res.stderr.strip() == f"corral-runc: container {cid} already exists"
    st = rt.state(cid)
    assert st["status"] == "created" and st["pid"] == pid


def test_missing_bundle(rt, cid):
    res = rt("create", "-b", os.path.join(rt.tmp, "nope"), cid)
    _assert_clean_failure(rt, res, cid, ["does not exist"])


def test_missing_config(rt, cid):
    bundle = rt.bundle()
    os.unlink(os.path.join(bundle, "config.json"))
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, ["no config.json"])


def test_missing_executable(rt, cid):
    bundle = rt.bundle(args=["no-such-program"])
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, ["'no-such-program' not found"])
    res = rt("run", "-b", bundle, cid)
    _assert_clean_failure(rt, res, cid, ["not found"])
    bundle = rt.bundle(name="b2", args=["/bin/nothing-here"])
    _assert_clean_failure(rt, rt("run", "-b", bundle, cid), cid, ["/bin/nothing-here"])


def test_missing_cwd_refused_on_readonly_root(rt, cid):
    bundle = rt.bundle(args=["true"], readonly=True, changes=lambda s: s["process"].update(cwd="/no/such"))
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, ["/no/such"])


def test_terminal_without_console_socket(rt, cid):
    bundle = rt.bundle(changes=lambda s: s["process"].update(terminal=True))
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, ["--console-socket"])


def test_unknown_container(rt, cid):
    for verb in (["start"], ["state"], ["kill"], ["delete"], ["exec"]):
        args = verb + [cid] + (["true"] if verb == ["exec"] else [])
        res = rt(*args)
        assert res.returncode == 1
        assert res.stderr.strip() == f"corral-runc: container {cid} does not exist", res.stderr


def test_state_json_is_valid_after_failure(rt, cid):
    bundle = rt.bundle(args=["sleep", "1000"])
    rt.ok("create", "-b", bundle, cid)
    with open(os.path.join(rt.root, cid, "state.json")) as f:
        assert json.load(f)["pid"] == rt.state(cid)["pid"]


def test_root_that_is_a_file(rt, cid):
    bundle = rt.bundle()
    bad_root = os.path.join(rt.tmp, "file")
    open(bad_root, "w").close()
    import subprocess
    res = subprocess.run([rt.binary, "--root", os.path.join(bad_root, "x"), "create", "-b", bundle, cid],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 1
    assert res.stderr.strip() == f"corral-runc: creating container {cid} failed: Not a directory"
