"""The container process's user: groups, gid, uid, umask, HOME; and `exec --user` names.

switch() runs in the container's init (after the rootfs is its root, so /etc/passwd is the
container's). resolve() runs in the parent and reads the container's /etc/passwd and
/etc/group through openat2(RESOLVE_IN_ROOT), so symlinks in the image cannot lead outside.
"""

import errno
import os
import stat

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import cabi as ctypes  # without ctypes' import cost
from corral.oci.linux import syscalls

DEFAULT_UMASK = 0o022

_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _read_in_root(rootfs, relpath):
    """Text of rootfs/relpath, resolved inside rootfs; None if it does not exist."""
    dirfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(os.O_RDONLY | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        try:
            fd = syscalls.syscall(syscalls.SYS_openat2, ctypes.c_int(dirfd), os.fsencode(relpath),
                                  ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)),
                                  what=f"open {relpath} in {rootfs}")
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise RuntimeFailure(f"reading /{relpath} of the container failed: {e.strerror}") from None
    finally:
        os.close(dirfd)
    with os.fdopen(fd, "r", errors="replace") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read(4 << 20)


def _parse(text, fields):
    """Rows of a colon-separated file (passwd/group), skipping comments and short lines."""
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields:
            rows.append(parts)
    return rows


def _num(s):
    return int(s) if s.isdigit() else None


def resolve(user_arg, passwd_text, group_text):
    """Resolve 'user[:group]' (names or numbers) the way runc's user lookup does.

    Returns (uid, gid, supplementary gids, home). A name that is not in the files is an error;
    a number need not be there."""
    user_part, _, group_part = (user_arg or "").partition(":")
    # rows with a non-numeric id are skipped: never guess (it would mean root)
    users = [u for u in _parse(passwd_text, 7) if _num(u[2]) is not None and _num(u[3]) is not None]
    groups = [g for g in _parse(group_text, 4) if _num(g[2]) is not None]
    want = _num(user_part or "0")  # no user named: uid 0, as runc does
    uid, gid, home, matched = (want or 0), 0, "/", None
    for u in users:
        if (want is not None and _num(u[2]) == want) or (want is None and u[0] == user_part):
            uid, gid, home, matched = _num(u[2]), _num(u[3]), u[5] or "/", u[0]
            break
    else:
        if want is None:
            raise RuntimeFailure(f"user {user_part!r} is not in the container's /etc/passwd: "
                                 "give a known name or a numeric uid")
    sgids = []
    if group_part:
        want = _num(group_part)
        if want is not None:
            gid = want
        else:
            for g in groups:
                if g[0] == group_part:
                    gid = _num(g[2])
                    break
            else:
                raise RuntimeFailure(f"group {group_part!r} is not in the container's /etc/group: "
                                     "give a known name or a numeric gid")
    elif matched:
        sgids = [_num(g[2]) for g in groups if matched in g[3].split(",")]
    return uid, gid, sgids, home


def resolve_in_rootfs(user_arg, rootfs):
    """For `exec --user`: a process.user dict from names in the container's files."""
    passwd = _read_in_root(rootfs, "etc/passwd")
    group = _read_in_root(rootfs, "etc/group")
    uid, gid, sgids, _home = resolve(user_arg, passwd, group)
    user = {"uid": uid, "gid": gid}
    if sgids:
        user["additionalGids"] = sgids
    return user


def home_of(uid):
    """HOME for uid from the (container's) /etc/passwd, '/' if it is not there."""
    try:
        with open("/etc/passwd", errors="replace") as f:
            text = f.read(4 << 20)
    except OSError:
        return "/"
    for u in _parse(text, 7):
        if _num(u[2]) == uid:
            return u[5] or "/"
    return "/"


def _fix_stdio_owner(uid):
    """Give the stdio the container user's uid (as runc does) so it can reopen its tty;
    /dev/null and fds we may not change are left alone."""
    try:
        null_rdev = os.stat("/dev/null").st_rdev
    except OSError:
        null_rdev = None
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid or (null_rdev is not None and stat.S_ISCHR(st.st_mode)
                                and st.st_rdev == null_rdev):
            continue
        try:
            os.fchown(fd, uid, -1)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
                raise RuntimeFailure(f"giving stdio fd {fd} to uid {uid} failed: {e.strerror}") from None


def _setgroups_allowed():
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def switch(user):
    """setgroups(additionalGids), setgid, setuid for process.user (caps kept by the caller)."""
    user = user or {}
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    groups = [int(g) for g in user.get("additionalGids") or ()]
    _fix_stdio_owner(uid)
    if _setgroups_allowed():
        try:
            os.setgroups(groups)
        except OSError as e:
            raise RuntimeFailure(f"setgroups {groups} failed: {e.strerror}") from None
    elif groups:
        raise RuntimeFailure("additionalGids cannot be set: setgroups is denied in this user "
                             "namespace; remove additionalGids from config.json")
    try:
        os.setgid(gid)
    except OSError as e:
        raise RuntimeFailure(f"setgid {gid} failed: {e.strerror} (is the gid mapped in the "
                             "user namespace?)") from None
    try:
        os.setuid(uid)
    except OSError as e:
        raise RuntimeFailure(f"setuid {uid} failed: {e.strerror} (is the uid mapped in the "
                             "user namespace?)") from None


def set_umask(user):
    umask = (user or {}).get("umask")
    # the kernel keeps only the permission bits (umask(2)); any u32 is valid, as in runc
    os.umask(DEFAULT_UMASK if umask is None else int(umask) & 0o777)


def validate(user):
    if user is None:
        return
    if not isinstance(user, dict):
        raise RuntimeFailure("process.user in config.json must be an object with uid and gid")
    for key in ("uid", "gid", "umask"):
        v = user.get(key)
        if (v is not None or (key in user and key != "umask")) and (not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 0xFFFFFFFF):
            raise RuntimeFailure(f"process.user.{key} {v!r} in config.json is not an unsigned 32-bit integer")
    gids = user.get("additionalGids")
    if gids is not None and (not isinstance(gids, list) or not all(
            isinstance(g, int) and not isinstance(g, bool) and 0 <= g <= 0xFFFFFFFF for g in gids)):
        raise RuntimeFailure("process.user.additionalGids in config.json must be a list of gids")
