"""AppArmor profile and SELinux labels: applied through /proc/thread-self/attr when the LSM is
enabled; refused with a clear error otherwise (never silently ignored)."""

import os

from corral.oci.errors import RuntimeFailure


def apparmor_enabled():
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip().startswith("Y")
    except OSError:
        return False


def selinux_enabled():
    # selinuxfs is mounted (normally on /sys/fs/selinux) only when SELinux is active
    if os.path.exists("/sys/fs/selinux/enforce"):
        return True
    try:
        with open("/proc/self/mountinfo") as f:
            return any(" - selinuxfs " in line for line in f)
    except OSError:
        return False


def validate(process, linux):
    profile = (process or {}).get("apparmorProfile")
    if profile and not apparmor_enabled():
        raise RuntimeFailure(f"process.apparmorProfile {profile!r} is set but AppArmor is not "
                             "enabled on this host: remove it from config.json or enable AppArmor")
    label = (process or {}).get("selinuxLabel")
    if label and not selinux_enabled():
        raise RuntimeFailure(f"process.selinuxLabel {label!r} is set but SELinux is not enabled "
                             "on this host: remove it from config.json or enable SELinux")
    mount_label = (linux or {}).get("mountLabel")
    if mount_label and ('"' in mount_label or "\n" in mount_label or "\0" in mount_label):
        raise RuntimeFailure(f"linux.mountLabel {mount_label!r} is not an SELinux context: it may "
                             "not hold quotes or line breaks")
    if mount_label and not selinux_enabled():
        raise RuntimeFailure(f"linux.mountLabel {mount_label!r} is set but SELinux is not enabled "
                             "on this host: remove it from config.json or enable SELinux")


def _write_attr(paths, value, what):
    for path in paths:
        if os.path.exists(path):
            break
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise RuntimeFailure(f"setting the {what} failed: {e.strerror} (writing {path})") from None


def set_exec_labels(process):
    """Labels that take effect at the next execve: call last, in the container's init."""
    validate(process, None)
    profile = process.get("apparmorProfile")
    if profile:
        _write_attr(("/proc/thread-self/attr/apparmor/exec", "/proc/thread-self/attr/exec"),
                    f"exec {profile}", f"AppArmor profile {profile!r}")
    label = process.get("selinuxLabel")
    if label:
        _write_attr(("/proc/thread-self/attr/exec",), label, f"SELinux label {label!r}")


def mount_data(data, mount_label):
    """Mount data with the SELinux context option added (for the mount code). The label is
    quoted, as its MCS part may hold commas; validate() refused quotes in it."""
    if not mount_label:
        return data
    opt = f'context="{mount_label}"'
    return f"{data},{opt}" if data else opt
