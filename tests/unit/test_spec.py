"""corral.oci.spec: config.json checks, each refusal one clear line."""

import json
import os

import pytest

from corral.oci import spec as speclib
from corral.oci.errors import RuntimeFailure
from corral.oci.specgen import default_spec
from corral.oci.state import check_id


@pytest.fixture
def bundle(tmp_path):
    os.mkdir(tmp_path / "rootfs")
    return str(tmp_path)


def _load(bundle, spec):
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write(spec if isinstance(spec, str) else json.dumps(spec))
    return speclib.load(bundle)


def _refused(bundle, change, words):
    s = default_spec(args=["true"], terminal=False)
    change(s)
    with pytest.raises(RuntimeFailure) as ei:
        _load(bundle, s)
    msg = str(ei.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_default_spec_loads(bundle):
    spec, b, rootfs = _load(bundle, default_spec(args=["true"]))
    assert b == bundle and rootfs == os.path.join(bundle, "rootfs")


def test_not_json_and_not_object(bundle):
    with pytest.raises(RuntimeFailure, match="not valid JSON"):
        _load(bundle, "[1, 2")
    with pytest.raises(RuntimeFailure, match="JSON object"):
        _load(bundle, "[]")


def test_missing_bundle_and_config(tmp_path):
    with pytest.raises(RuntimeFailure, match="does not exist"):
        speclib.load(str(tmp_path / "nope"))
    with pytest.raises(RuntimeFailure, match="no config.json"):
        speclib.load(str(tmp_path))


@pytest.mark.parametrize("change,words", [
    (lambda s: s.update(ociVersion="2.0.0"), ["ociVersion"]),
    (lambda s: s.update(root={"path": "missing"}), ["not a directory"]),
    (lambda s: s["process"].update(args="sh"), ["process.args"]),
    (lambda s: s["process"].update(env=["NOEQUALS"]), ["KEY=VALUE"]),
    (lambda s: s["process"].update(cwd="relative"), ["absolute"]),
    (lambda s: s["process"].update(ioPriority={}), ["process.ioPriority"]),
    (lambda s: s["process"].update(consoleSize={"height": -1}), ["consoleSize"]),
    (lambda s: s["linux"].update(personality={}), ["linux.personality"]),
    (lambda s: s["linux"]["namespaces"].append({"type": "ipc2"}), ["unknown namespace type"]),
    (lambda s: s["linux"].update(namespaces=[{"type": "mount"}]), ["hostname", "uts"]),
    (lambda s: s["linux"]["namespaces"].append({"type": "user"}), ["uidMappings"]),
    (lambda s: s["linux"].update(timeOffsets={"monotonic": {"secs": 1}}), ["time namespace"]),
    (lambda s: (s["linux"]["namespaces"].append({"type": "time"}),
                s["linux"].update(timeOffsets={"realtime": {"secs": 1}})), ["realtime"]),
    (lambda s: (s["linux"]["namespaces"].append({"type": "time"}),
                s["linux"].update(timeOffsets={"monotonic": {"secs": 1 << 70}})), ["timeOffsets.monotonic"]),
    (lambda s: (s["linux"]["namespaces"].append({"type": "time"}),
                s["linux"].update(timeOffsets={"boottime": {"secs": "1"}})), ["timeOffsets.boottime"]),
    (lambda s: s["linux"].update(sysctl={"vm.swappiness": "1"}), ["not namespaced"]),
    (lambda s: s["linux"].update(sysctl={"net/../x": "1"}), ["not a valid name"]),
    (lambda s: (s["linux"].update(namespaces=[{"type": "mount"}, {"type": "uts"}]),
                s["linux"].update(sysctl={"net.ipv4.ip_forward": "1"})), ["network namespace"]),
    (lambda s: s.update(hooks={"poststop": [{"path": "/bin/true", "timeout": 0}]}), ["timeout"]),
    (lambda s: s.update(annotations={"a": 1}), ["annotations"]),
])
def test_refusals(bundle, change, words):
    _refused(bundle, change, words)


def test_accepts_full_namespace_set(bundle):
    def change(s):
        s["linux"]["namespaces"] += [{"type": "user"}, {"type": "time"}]
        s["linux"]["uidMappings"] = s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 10}]
        s["linux"]["timeOffsets"] = {"boottime": {"secs": -5, "nanosecs": 10}}
        s["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000", "fs.mqueue.msg_max": "10"}
        s["hooks"] = {k: [{"path": "/bin/true", "args": ["true"], "env": ["A=b"], "timeout": 3}]
                      for k in speclib.HOOK_KINDS}
    s = default_spec(args=["true"])
    change(s)
    _load(bundle, s)


@pytest.mark.parametrize("good", ["a", "A-b_c.d+e", "x" * 200])
def test_good_ids(good):
    check_id(good)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a b", "é", "a\n"])
def test_bad_ids(bad):
    with pytest.raises(RuntimeFailure, match="invalid container ID"):
        check_id(bad)


@pytest.mark.parametrize("text,num", [("KILL", 9), ("SIGKILL", 9), ("kill", 9), ("15", 15), ("TERM", 15),
                                      ("SIGUSR1", 10), ("RTMIN+2", 36), ("SIGRTMAX-1", 63)])
def test_parse_signal(text, num):
    from corral.oci.container import parse_signal
    assert parse_signal(text) == num


@pytest.mark.parametrize("bad", ["NOPE", "0", "99", "", "SIG"])
def test_parse_signal_refuses(bad):
    from corral.oci.container import parse_signal
    with pytest.raises(RuntimeFailure, match="unknown signal"):
        parse_signal(bad)
