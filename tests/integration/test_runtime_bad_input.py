"""Bad input to corral-runc: one clear line, exit 1, nothing left behind."""

import json
import os

import pytest

from corral.oci.linux import lsm
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


def _put(path, value):
    """A spec change setting the field at dotted `path` (numbers index lists) to `value`."""
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]

    def change(spec):
        node = spec
        for key in keys[:-1]:
            node = node[key] if isinstance(key, int) else node.setdefault(key, {})
        node[keys[-1]] = value
    return change


def _seccomp(**fields):
    cfg = {"defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}
    cfg.update(fields)
    return cfg


_CALL = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}

# (field, wrong value, words the one error line must hold): a value of the wrong JSON type at
# every level of config.json is refused naming the field, never a traceback
WRONG_TYPES = [
    ("process", "sh", ["process"]),
    ("process.args", "sh", ["process.args"]),
    ("process.args", [["sh"]], ["process.args"]),
    ("process.env", "PATH=/bin", ["process.env"]),
    ("process.cwd", 7, ["process.cwd"]),
    ("process.terminal", "no", ["process.terminal"]),
    ("process.consoleSize", [], ["process.consoleSize"]),
    ("process.noNewPrivileges", "yes", ["process.noNewPrivileges"]),
    ("process.noNewPrivileges", 1, ["process.noNewPrivileges"]),
    ("process.capabilities", [], ["process.capabilities"]),
    ("process.capabilities.bounding", "CAP_KILL", ["process.capabilities.bounding"]),
    ("process.capabilities.effective", [["CAP_KILL"]], ["process.capabilities.effective"]),
    ("process.rlimits", {}, ["process.rlimits"]),
    ("process.rlimits", 7, ["process.rlimits"]),
    ("process.rlimits", ["RLIMIT_NOFILE"], ["process.rlimits"]),
    ("process.rlimits", [{"type": ["RLIMIT_NOFILE"], "soft": 1, "hard": 1}], ["rlimit type"]),
    ("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": "1", "hard": 1}], ["RLIMIT_NOFILE", "soft"]),
    ("process.user", "root", ["process.user"]),
    ("process.user.uid", "0", ["process.user.uid"]),
    ("process.user.gid", None, ["process.user.gid"]),
    ("process.user.umask", "022", ["process.user.umask"]),
    ("process.user.additionalGids", {}, ["process.user.additionalGids"]),
    ("process.user.additionalGids", ["wheel"], ["process.user.additionalGids"]),
    ("process.oomScoreAdj", "0", ["process.oomScoreAdj"]),
    ("process.apparmorProfile", [], ["process.apparmorProfile"]),
    ("process.selinuxLabel", {}, ["process.selinuxLabel"]),
    ("root", "rootfs", ["root.path"]),
    ("root.path", ["rootfs"], ["root.path"]),
    ("root.readonly", "yes", ["root.readonly"]),
    ("hostname", 7, ["hostname"]),
    ("hostname", [], ["hostname"]),
    ("domainname", {}, ["domainname"]),
    ("annotations", [], ["annotations"]),
    ("annotations", {"a": 1}, ["annotations"]),
    ("mounts", {}, ["mounts must be a list"]),
    ("mounts", ["proc"], ["mounts[0]"]),
    ("mounts.0.destination", 7, ["mounts[0]", "destination"]),
    ("mounts.0.type", ["proc"], ["mounts[0]", "type"]),
    ("mounts.0.source", 7, ["mounts[0]", "source"]),
    ("mounts.0.options", "ro", ["mounts[0]", "options"]),
    ("hooks", [], ["hooks"]),
    ("hooks", {"prestart": {}}, ["hooks.prestart"]),
    ("hooks", {"prestart": ["/bin/true"]}, ["hooks.prestart"]),
    ("hooks", {"prestart": [{"path": "/bin/true", "args": "true"}]}, ["hooks.prestart", "args"]),
    ("hooks", {"poststop": [{"path": "/bin/true", "timeout": "5"}]}, ["hooks.poststop", "timeout"]),
    ("linux", [], ["linux"]),
    ("linux.namespaces", {}, ["linux.namespaces"]),
    ("linux.namespaces", ["pid"], ["linux.namespaces"]),
    ("linux.namespaces.0.path", 7, ["linux.namespaces", "path"]),
    ("linux.uidMappings", {}, ["linux.uidMappings"]),
    ("linux.timeOffsets", [], ["linux.timeOffsets"]),
    ("linux.cgroupsPath", 7, ["linux.cgroupsPath"]),
    ("linux.cgroupsPath", ["a"], ["linux.cgroupsPath"]),
    ("linux.resources", [], ["linux.resources"]),
    ("linux.resources.memory", "1G", ["linux.resources.memory"]),
    ("linux.resources.memory.limit", "1G", ["linux.resources.memory.limit"]),
    ("linux.resources.memory.disableOOMKiller", "no", ["memory.disableOOMKiller"]),
    ("linux.resources.cpu.shares", 1.5, ["linux.resources.cpu.shares"]),
    ("linux.resources.cpu.cpus", 0, ["linux.resources.cpu.cpus"]),
    ("linux.resources.pids.limit", True, ["linux.resources.pids.limit"]),
    ("linux.resources.devices", {}, ["linux.resources.devices"]),
    ("linux.resources.devices", [{"allow": "yes"}], ["linux.resources.devices[0].allow"]),
    ("linux.resources.devices", [{"allow": True, "type": ["c"]}], ["linux.resources.devices[0].type"]),
    ("linux.resources.blockIO", {"weightDevice": 5}, ["linux.resources.blockIO.weightDevice"]),
    ("linux.resources.blockIO", {"throttleReadBpsDevice": {}}, ["blockIO.throttleReadBpsDevice"]),
    ("linux.resources.blockIO", {"throttleReadBpsDevice": [7]}, ["blockIO.throttleReadBpsDevice[0]"]),
    ("linux.resources.hugepageLimits", {}, ["linux.resources.hugepageLimits"]),
    ("linux.devices", {}, ["linux.devices"]),
    ("linux.devices", ["/dev/fuse"], ["linux.devices[0]"]),
    ("linux.devices", [{"path": "/dev/fuse", "type": ["c"], "major": 10, "minor": 229}],
     ["linux.devices[0]", "type"]),
    ("linux.devices", [{"path": "/dev/fuse", "type": "c", "major": "10", "minor": 229}],
     ["linux.devices[0]", "major"]),
    ("linux.sysctl", [], ["linux.sysctl"]),
    ("linux.sysctl", {"net.ipv4.ip_forward": 1}, ["linux.sysctl"]),
    ("linux.maskedPaths", {}, ["linux.maskedPaths"]),
    ("linux.readonlyPaths", "/proc", ["linux.readonlyPaths"]),
    ("linux.readonlyPaths", [7], ["linux.readonlyPaths"]),
    ("linux.rootfsPropagation", ["private"], ["linux.rootfsPropagation"]),
    ("linux.mountLabel", 7, ["linux.mountLabel"]),
    ("linux.seccomp", "default", ["linux.seccomp"]),
    ("linux.seccomp", _seccomp(defaultAction=["SCMP_ACT_ALLOW"]), ["seccomp action"]),
    ("linux.seccomp", _seccomp(defaultErrnoRet="1"), ["errnoRet"]),
    ("linux.seccomp", _seccomp(architectures="SCMP_ARCH_X86_64"), ["linux.seccomp.architectures"]),
    ("linux.seccomp", _seccomp(architectures=[["SCMP_ARCH_X86"]]), ["linux.seccomp.architectures"]),
    ("linux.seccomp", _seccomp(flags="SECCOMP_FILTER_FLAG_LOG"), ["linux.seccomp.flags"]),
    ("linux.seccomp", _seccomp(syscalls={}), ["linux.seccomp.syscalls"]),
    ("linux.seccomp", _seccomp(syscalls=["mkdir"]), ["linux.seccomp.syscalls"]),
    ("linux.seccomp", _seccomp(syscalls=[dict(_CALL, names="mkdir")]), ["linux.seccomp.syscalls[0]"]),
    ("linux.seccomp", _seccomp(syscalls=[dict(_CALL, action=["SCMP_ACT_ERRNO"])]),
     ["linux.seccomp.syscalls[0]"]),
    ("linux.seccomp", _seccomp(syscalls=[dict(_CALL, args="index=0")]),
     ["linux.seccomp.syscalls[0].args"]),
    ("linux.seccomp", _seccomp(syscalls=[dict(_CALL, args=[1, 2])]), ["linux.seccomp.syscalls[0].args"]),
    ("linux.seccomp", _seccomp(syscalls=[dict(_CALL, args=[{"index": "0", "op": "SCMP_CMP_EQ"}])]),
     ["argument index", "linux.seccomp.syscalls[0]"]),
    ("linux.seccomp", _seccomp(syscalls=[dict(_CALL, args=[{"index": 0, "op": ["SCMP_CMP_EQ"]}])]),
     ["seccomp operator", "linux.seccomp.syscalls[0]"]),
    ("linux.seccomp", _seccomp(syscalls=[dict(_CALL, args=[{"index": 0, "op": "SCMP_CMP_EQ",
                                                              "value": "1"}])]),
     ["value", "linux.seccomp.syscalls[0]"]),
]


# values of the right type that the kernel would take wrongly (wrapped, truncated at a NUL)
# or that no kernel call could take: refused before anything is made, naming the field
OUT_OF_RANGE = [
    ("process.args", ["tr\0ue"], ["process.args", "NUL"]),
    ("process.env", ["A=\0b"], ["process.env", "NUL"]),
    ("process.cwd", "/tmp\0x", ["process.cwd"]),
    ("process.consoleSize", {"height": 1 << 40, "width": 80}, ["process.consoleSize"]),
    ("hostname", "h" * 65, ["hostname", "64"]),
    ("mounts.0.destination", "/proc\0x", ["mounts[0]", "destination", "NUL"]),
    ("mounts.1.source", "tmp\0fs", ["mounts[1]", "source", "NUL"]),
    ("linux.resources.memory", {"limit": 1 << 70}, ["linux.resources.memory.limit", "at most"]),
    ("linux.resources.pids", {"limit": 1 << 64}, ["linux.resources.pids.limit", "at most"]),
    ("linux.resources.cpu", {"quota": 1 << 63, "period": 100000}, ["linux.resources.cpu.quota"]),
]


@pytest.mark.parametrize("field,value,words", OUT_OF_RANGE,
                         ids=[f"{f}={json.dumps(v)[:30]}" for f, v, _w in OUT_OF_RANGE])
def test_value_the_kernel_would_mistake_is_refused(rt, cid, field, value, words):
    bundle = rt.bundle(changes=_put(field, value))
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, words)


@pytest.mark.parametrize("field,value,words", WRONG_TYPES,
                         ids=[f"{f}={json.dumps(v)[:30]}" for f, v, _w in WRONG_TYPES])
def test_wrong_json_type_is_one_clear_line(rt, cid, field, value, words):
    bundle = rt.bundle(changes=_put(field, value))
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, words)


@pytest.mark.parametrize("fields,words", [
    ({"listenerPath": "/run/agent.sock"}, ["linux.seccomp.listenerPath", "not supported", "seccomp agent"]),
    ({"listenerPath": "/run/agent.sock", "listenerMetadata": "x"}, ["linux.seccomp.listener"]),
    ({"listenerMetadata": "x"}, ["linux.seccomp.listenerMetadata"]),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, ["SCMP_ACT_NOTIFY", "not supported"]),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}, ["SCMP_ACT_NOTIFY", "syscalls[0]"]),
    ({"sometimes": True}, ["linux.seccomp.sometimes", "not supported"]),
])
def test_seccomp_notify_and_unknown_fields_refused(rt, cid, fields, words):
    bundle = rt.bundle(changes=_put("linux.seccomp", _seccomp(**fields)))
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, words)


_LABEL = "system_u:object_r:container_file_t:s0:c1,c2"


@pytest.mark.skipif(lsm.selinux_enabled(), reason="SELinux is enabled on this host")
def test_mount_label_refused_without_selinux(rt, cid):
    bundle = rt.bundle(changes=_put("linux.mountLabel", _LABEL))
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid,
                          ["linux.mountLabel", "SELinux is not enabled"])


def test_mount_label_with_a_quote_refused(rt, cid):
    bundle = rt.bundle(changes=_put("linux.mountLabel", 'x",size=1'))
    _assert_clean_failure(rt, rt("create", "-b", bundle, cid), cid, ["linux.mountLabel", "quotes"])


@pytest.mark.skipif(not lsm.selinux_enabled(), reason="SELinux is not enabled on this host")
def test_mount_label_applied_with_selinux(rt, cid):
    bundle = rt.bundle(args=["cat", "/proc/self/mountinfo"], changes=_put("linux.mountLabel", _LABEL))
    res = rt.ok("run", "-b", bundle, cid)
    shm = [line for line in res.stdout.splitlines() if line.split()[4] == "/dev/shm"]
    assert shm and "context=" in shm[0] and "c1,c2" in shm[0], res.stdout


def test_umask_beyond_the_permission_bits_is_masked_as_the_kernel_does(rt, cid):
    # process.user.umask is any uint32 (as in runc); umask(2) keeps only the 0777 bits
    bundle = rt.bundle(args=["sh", "-c", "umask"], changes=_put("process.user.umask", (1 << 31) | 0o027))
    res = rt.ok("run", "-b", bundle, cid)
    assert res.stdout.strip() == "0027"
