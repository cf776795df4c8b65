"""OCI hooks under corral-runc: all six kinds, their state on stdin, env, failures and timeouts."""

import json
import os
import time

from tests.helpers.oci_runtime import leftovers, rt  # noqa: F401

HOST_KINDS = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")


def _hook(script, **extra):
    return dict({"path": "/bin/sh", "args": ["sh", "-c", script]}, **extra)


def test_all_six_hooks(rt, cid):
    out = os.path.join(rt.tmp, "hooks")
    os.mkdir(out)

    def change(s):
        s["hooks"] = {kind: [_hook(f'cat > {out}/{kind}.json; echo "{kind} $HOOKVAR" >> {out}/order',
                                   env=["HOOKVAR=v-" + kind])] for kind in HOST_KINDS}
        # startContainer runs inside the container: its path and files are the container's
        s["hooks"]["startContainer"] = [_hook("cat > /tmp/startContainer.json; hostname >> /tmp/startContainer.json")]
        s["hostname"] = "hooked"
    bundle = rt.bundle(args=["sleep", "1000"], changes=change)
    rt.ok("create", "--bundle", bundle, cid)
    pid = rt.state(cid)["pid"]
    for kind in ("prestart", "createRuntime", "createContainer"):
        with open(os.path.join(out, kind + ".json")) as f:
            st = json.load(f)
        assert st["id"] == cid and st["pid"] == pid and st["status"] == "creating" and st["bundle"] == bundle
    assert not os.path.exists(os.path.join(out, "poststart.json"))
    rt.ok("start", cid)
    with open(os.path.join(out, "poststart.json")) as f:
        st = json.load(f)
    assert st["status"] == "running" and st["pid"] == pid
    with open(os.path.join(bundle, "rootfs", "tmp", "startContainer.json")) as f:
        text = f.read()
    st = json.loads(text[:text.rindex("}") + 1])
    assert st["id"] == cid and text.endswith("hooked\n")
    rt.ok("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    with open(os.path.join(out, "poststop.json")) as f:
        assert json.load(f)["status"] == "stopped"
    with open(os.path.join(out, "order")) as f:
        assert f.read().splitlines() == [f"{k} v-{k}" for k in HOST_KINDS]


def test_hook_timeout_kills_and_cleans_up(rt, cid):
    bundle = rt.bundle(args=["true"], changes=lambda s: s.update(
        hooks={"prestart": [_hook("sleep 30", timeout=1)]}))
    t0 = time.monotonic()
    res = rt("create", "--bundle", bundle, cid)
    assert time.monotonic() - t0 < 15
    assert res.returncode == 1 and "timed out after 1s" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert leftovers(rt.tmp, cid) == []


def test_failing_hooks_abort_create(rt, cid):
    for kind in ("createRuntime", "createContainer"):
        c = f"{cid}-{kind}"
        bundle = rt.bundle(name=kind, args=["true"], changes=lambda s: s.update(
            hooks={kind: [_hook("echo broken >&2; exit 3")]}))
        res = rt("run", "--bundle", bundle, c)
        assert res.returncode == 1
        assert f"{kind} hook #0 (/bin/sh) failed with exit status 3: broken" in res.stderr
        assert not os.path.exists(os.path.join(rt.root, c))
        assert leftovers(rt.tmp, c) == []


def test_failing_poststart_and_poststop_only_warn(rt, cid):
    bundle = rt.bundle(args=["sh", "-c", "echo ran"], changes=lambda s: s.update(
        hooks={"poststart": [_hook("exit 1")], "poststop": [_hook("exit 2")]}))
    res = rt("run", "--bundle", bundle, cid)
    assert res.returncode == 0 and res.stdout == "ran\n"
    assert "poststart hook #0" in res.stderr and "poststop hook #0" in res.stderr
    assert not os.path.exists(os.path.join(rt.root, cid))
