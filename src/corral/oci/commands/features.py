import json

HELP = "print the runtime's features as JSON"


def configure(p):
    pass


def run(ctx, args):
    from corral.oci.linux import namespaces, security
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
            **security.features(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
        },
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": "false"},
    }
    print(json.dumps(features, indent=4))
    return 0

