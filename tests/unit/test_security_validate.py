"""security.validate(): bad configs are refused with one clear line, before anything is made."""

import json
import subprocess
import sys

import pytest

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import lsm, security
from corral.oci.specgen import default_spec


def _spec(change):
    spec = default_spec(args=["true"], terminal=False)
    change(spec)
    return spec


def _seccomp(**kw):
    cfg = {"defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    cfg.update(kw)
    return cfg


def _set(path, value):
    def change(spec):
        node = spec
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return change


BAD = {
    "unknown capability": (_set(["process", "capabilities", "bounding"], ["CAP_KILL", "CAP_FLY"]), "CAP_FLY"),
    "lower-case capability": (_set(["process", "capabilities", "effective"], ["cap_kill"]), "cap_kill"),
    "unknown capability set": (_set(["process", "capabilities", "sometimes"], []), "sometimes"),
    "unknown rlimit": (_set(["process", "rlimits"], [{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]), "RLIMIT_FOO"),
    "soft above hard": (_set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]), "soft"),
    "duplicate rlimit": (_set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}] * 2), "twice"),
    "negative rlimit": (_set(["process", "rlimits"], [{"type": "RLIMIT_CORE", "soft": -1, "hard": 1}]), "RLIMIT_CORE"),
    "bad uid": (_set(["process", "user"], {"uid": -1, "gid": 0}), "uid"),
    "bad additionalGids": (_set(["process", "user"], {"uid": 0, "gid": 0, "additionalGids": ["wheel"]}), "additionalGids"),
    "oomScoreAdj out of range": (_set(["process", "oomScoreAdj"], 5000), "oomScoreAdj"),
    "unknown default action": (_set(["linux", "seccomp"], _seccomp(defaultAction="SCMP_ACT_MAYBE")), "SCMP_ACT_MAYBE"),
    "notify refused": (_set(["linux", "seccomp"], _seccomp(defaultAction="SCMP_ACT_NOTIFY")), "SCMP_ACT_NOTIFY"),
    "unknown rule action": (_set(["linux", "seccomp"], _seccomp(syscalls=[{"names": ["mkdir"], "action": "DENY"}])), "DENY"),
    "unknown arch": (_set(["linux", "seccomp"], _seccomp(architectures=["SCMP_ARCH_PDP11"])), "SCMP_ARCH_PDP11"),
    "unknown op": (_set(["linux", "seccomp"], _seccomp(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                                                  "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_ABOUT"}]}])), "SCMP_CMP_ABOUT"),
    "bad arg index": (_set(["linux", "seccomp"], _seccomp(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                                                     "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}])), "index"),
    "unknown flag": (_set(["linux", "seccomp"], _seccomp(flags=["SECCOMP_FILTER_FLAG_MAGIC"])), "SECCOMP_FILTER_FLAG_MAGIC"),
    "no default action": (_set(["linux", "seccomp"], {"syscalls": []}), "defaultAction"),
    "rule without names": (_set(["linux", "seccomp"], _seccomp(syscalls=[{"action": "SCMP_ACT_ERRNO"}])), "names"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_refused_with_one_line(case):
    change, word = BAD[case]
    with pytest.raises(RuntimeFailure) as err:
        security.validate(_spec(change))
    message = str(err.value)
    assert word in message and "\n" not in message, message


@pytest.mark.skipif(lsm.apparmor_enabled(), reason="AppArmor is enabled on this host")
def test_apparmor_profile_refused_without_apparmor():
    with pytest.raises(RuntimeFailure, match="AppArmor is not enabled"):
        security.validate(_spec(_set(["process", "apparmorProfile"], "docker-default")))


@pytest.mark.skipif(lsm.selinux_enabled(), reason="SELinux is enabled on this host")
@pytest.mark.parametrize("path", [["process", "selinuxLabel"], ["linux", "mountLabel"]])
def test_selinux_labels_refused_without_selinux(path):
    with pytest.raises(RuntimeFailure, match="SELinux is not enabled"):
        security.validate(_spec(_set(path, "system_u:system_r:container_t:s0")))


def test_good_configs_pass():
    security.validate(_spec(lambda s: None))
    security.validate(_spec(_set(["linux", "seccomp"], _seccomp(
        defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=13, architectures=["SCMP_ARCH_X86_64"],
        flags=["SECCOMP_FILTER_FLAG_LOG"],
        syscalls=[{"names": ["no_such_syscall", "kill"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 1, "value": 255, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]))))


def _imports(spec):
    code = ("import json, sys; from corral.oci.linux import security; "
            "security.validate(json.loads(sys.argv[1])); "
            "print('pyseccomp' in sys.modules, 'ctypes.util' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return out.split()


def test_pyseccomp_is_loaded_on_the_host_only_for_seccomp_configs():
    assert _imports(_spec(lambda s: None)) == ["False", "False"]
    # loaded by validate() in the parent, so never from a container's rootfs; without the
    # ~20 ms ctypes.util import
    assert _imports(_spec(_set(["linux", "seccomp"], _seccomp()))) == ["True", "False"]


def test_build_refuses_to_load_libseccomp_itself():
    code = ("import sys; from corral.oci.linux import seccomp; from corral.oci.errors import RuntimeFailure\n"
            "try:\n    seccomp.build({'defaultAction': 'SCMP_ACT_ALLOW'})\n"
            "except RuntimeFailure as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "before entering the container's rootfs" in out.stdout, out.stdout + out.stderr


def test_user_lookup_never_guesses_root():
    from corral.oci.linux import user
    passwd = "root:x:0:0:root:/root:/bin/sh\nodd:x:abc:0::/:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    group = "root:x:0:\nweird:x:zz:app\nextra:x:2000:app,other\n"
    assert user.resolve("app", passwd, group) == (1000, 1000, [2000], "/home/app")
    with pytest.raises(RuntimeFailure, match="odd"):
        user.resolve("odd", passwd, group)
    with pytest.raises(RuntimeFailure, match="weird"):
        user.resolve("app:weird", passwd, group)
    assert user.resolve("", passwd, group) == (0, 0, [], "/root")
    assert user.resolve("4321", passwd, group) == (4321, 0, [], "/")


def test_validate_process_prepares_the_containers_seccomp_for_exec():
    code = ("import sys; from corral.oci.linux import security, seccomp\n"
            "security.validate_process({'args': ['sh']}, {'seccomp': {'defaultAction': 'SCMP_ACT_ALLOW', "
            "'syscalls': [{'names': ['mkdir'], 'action': 'SCMP_ACT_ERRNO'}]}})\n"
            "print(len(seccomp._prepared))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1", out.stdout + out.stderr


def test_mount_label_goes_into_the_data_of_labelled_types():
    from corral.oci.linux import rootfs

    label = "system_u:object_r:container_file_t:s0:c1,c2"
    for typ in ("tmpfs", "devpts", "overlay"):
        assert rootfs.labelled_data(typ, "mode=755", label) == f'mode=755,context="{label}"'
        assert rootfs.labelled_data(typ, None, label) == f'context="{label}"'
    # these keep their own labels (mqueue's root is labelled after the mount), as in runc
    for typ in ("bind", "proc", "sysfs", "mqueue", "cgroup", "cgroup2"):
        assert rootfs.labelled_data(typ, "ro", label) == "ro"
    assert rootfs.labelled_data("tmpfs", "mode=755", None) == "mode=755"
    assert rootfs.labelled_data("tmpfs", "mode=755", "") == "mode=755"


def test_mount_label_cannot_smuggle_mount_options():
    with pytest.raises(RuntimeFailure, match="quotes"):
        security.validate(_spec(_set(["linux", "mountLabel"], 'x",size=1')))
