"""Build small root filesystems from the host's static busybox (Debian `busybox-static`).

Tests, the set-up script and benchmarks use these trees so that nothing needs the network.
"""

import json
import os
import shutil
import subprocess

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def host_busybox():
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path):
            return path
    raise FileNotFoundError("busybox not found: install the Debian package busybox-static")


def applets(busybox):
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def make_rootfs(root, busybox=None):
    """Lay out a minimal busybox root filesystem in `root` (created if missing)."""
    busybox = busybox or host_busybox()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "tmp", "root",
              "var", "run", "home"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    target = os.path.join(root, "bin", "busybox")
    shutil.copy2(busybox, target)
    os.chmod(target, 0o755)
    for applet in applets(busybox):
        link = os.path.join(root, applet.lstrip("/"))
        if os.path.lexists(link) or applet == "bin/busybox":
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
                      "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n",
        "etc/group": "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n",
        "etc/hostname": "busybox\n",
        "etc/hosts": "127.0.0.1\tlocalhost\n",
    }
    for rel, text in files.items():
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
    return root


def make_bundle(bundle, args=("sh",), terminal=False, spec_changes=None, rootfs_readonly=False):
    """Create an OCI bundle (config.json + busybox rootfs) and return its config dict."""
    from corral.oci.specgen import default_spec

    os.makedirs(bundle, exist_ok=True)
    make_rootfs(os.path.join(bundle, "rootfs"))
    spec = default_spec(args=list(args), terminal=terminal)
    spec["root"]["readonly"] = rootfs_readonly
    if spec_changes:
        spec_changes(spec)
    write_spec(bundle, spec)
    return spec


def write_spec(bundle, spec):
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
