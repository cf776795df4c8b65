import json

HELP = "print the runtime's features as JSON"


def configure(p):
    pass


def run(ctx, args):
    from corral.oci.linux import namespaces
    from corral.oci.specgen import OCI_VERSION

    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
                         "iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime",
                         "noexec", "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime",
                         "nosuid", "nosymfollow", "private", "rbind", "relatime", "remount", "ro",
                         "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent",
                         "slave", "strictatime", "suid", "symfollow", "sync", "unbindable"],
        "linux": {
            "namespaces": sorted(namespaces.FLAGS),
            "capabilities": _capabilities(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True,
                        "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                                    "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                        "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                                      "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                        "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32",
                                  "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": "false"},
    }
    print(json.dumps(features, indent=4))
    return 0


def _capabilities():
    try:
        from corral.oci.linux import capabilities
        return list(capabilities.NAMES)
    except ImportError:
        return []
