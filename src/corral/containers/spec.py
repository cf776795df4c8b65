"""The OCI runtime spec of a container, made from its image's config and the run options
(docker's semantics for entrypoint/cmd, env, workdir, user, resources and security)."""

import json
import os
import re
from corral.containers import labels as L


class SpecError(Exception):
    """Bad run options: the message says which one and why."""


# docker's and containerd's default capability set
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

# character devices a container may use (besides those it is given): null, zero, full,
# random, urandom, tty, console, ptmx, pts/*, net/tun
DEFAULT_DEVICES = [("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0),
                   ("c", 5, 1), ("c", 5, 2), ("c", 136, None), ("c", 10, 200)]

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIN_MEMORY = 6 << 20  # docker's minimum


class Mount:
    """One --volume/--mount request: type bind|volume|tmpfs."""

    def __init__(self, type, target, source="", readonly=False, options=None):
        self.type = type
        self.target = target
        self.source = source
        self.readonly = readonly
        self.options = list(options or [])

    def __repr__(self):
        return f"Mount({self.type!r}, {self.target!r}, {self.source!r}, readonly={self.readonly})"


class Options:
    """Everything `run`/`create` can set; defaults are docker's."""

    DEFAULTS = {
        "command": None,        # None: the image's Cmd
        "entrypoint": None,     # None: the image's; "" clears it
        "env": [],              # KEY=VALUE (later wins)
        "workdir": "",
        "user": "",
        "hostname": "",
        "tty": False,
        "stdin_open": False,
        "memory": 0,            # bytes, 0 = no limit
        "cpus": 0.0,
        "pids_limit": 0,        # 0 = no limit
        "read_only": False,
        "cap_add": [],
        "cap_drop": [],
        "privileged": False,
        "seccomp": True,        # docker's default profile; False = unconfined
        "mounts": [],           # Mount
        "network": "bridge",
        "ports": [],            # dicts {hostIP, hostPort, containerPort, protocol}
        "labels": {},
    }

    def __init__(self, **kw):
        unknown = set(kw) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(f"unknown container option(s): {', '.join(sorted(unknown))}")
        for k, v in self.DEFAULTS.items():
            v = kw.get(k, v)
            setattr(self, k, type(v)(v) if isinstance(v, (list, dict)) else v)


# -- option parsing helpers (shared by the CLI and the client API)

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([bkmgt]?)i?b?$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text, what="size"):
    m = _SIZE.match(str(text).strip())
    if not m:
        raise SpecError(f"invalid {what} {text!r}: use a number with an optional unit b, k, m, g (e.g. 512m)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_memory(text):
    n = parse_size(text, "--memory value")
    if n < MIN_MEMORY:
        raise SpecError(f"invalid --memory value {text!r}: the minimum is 6m")
    return n


def parse_cpus(text):
    try:
        n = float(text)
    except ValueError:
        n = -1
    if not n > 0 or n > os.cpu_count() * 1000:
        raise SpecError(f"invalid --cpus value {text!r}: want a positive number such as 0.5 or 2")
    return n


def parse_pids_limit(text):
    try:
        n = int(text)
    except ValueError:
        n = -2
    if n < -1:
        raise SpecError(f"invalid --pids-limit value {text!r}: want a positive integer (or -1 for no limit)")
    return 0 if n == -1 else n


def parse_env_file(path):
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SpecError(f"cannot read env file {path}: {e.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def expand_env(items):
    """`KEY=VALUE` stays; a bare `KEY` takes the host's value (dropped if unset), as docker."""
    out = []
    for item in items:
        key, eq, _ = item.partition("=")
        if not key:
            raise SpecError(f"invalid environment variable {item!r}: empty name")
        if eq:
            out.append(item)
        elif key in os.environ:
            out.append(f"{key}={os.environ[key]}")
    return out


def parse_volume(text):
    """-v SRC:DST[:ro|rw]; SRC absolute = bind (must exist), else a named volume."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise SpecError(f"invalid volume {text!r}: want SOURCE:/container/path[:ro]")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise SpecError(f"invalid volume mode {mode!r} in {text!r}: want ro or rw")
    src, dst = parts[0], parts[1]
    if not dst.startswith("/"):
        raise SpecError(f"invalid volume {text!r}: the container path must be absolute")
    if src.startswith("/"):
        return Mount("bind", dst, src, mode == "ro")
    if src.startswith("."):
        raise SpecError(f"invalid volume {text!r}: a host path must be absolute")
    return Mount("volume", dst, src, mode == "ro")


def parse_mount(text):
    """--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=...]"""
    kv = {}
    for part in text.split(","):
        k, eq, v = part.partition("=")
        kv[k.strip().lower()] = v if eq else "true"
    kind = kv.pop("type", "volume")
    target = kv.pop("target", None) or kv.pop("destination", None) or kv.pop("dst", None)
    source = kv.pop("source", None) or kv.pop("src", None) or ""
    ro = kv.pop("readonly", None) or kv.pop("ro", None)
    readonly = ro is not None and ro.lower() in ("true", "1", "")
    if kind not in ("bind", "volume", "tmpfs"):
        raise SpecError(f"invalid --mount {text!r}: type must be bind, volume or tmpfs")
    if not target or not target.startswith("/"):
        raise SpecError(f"invalid --mount {text!r}: needs an absolute target=")
    opts = []
    if kind == "tmpfs":
        if "tmpfs-size" in kv:
            opts.append(f"size={parse_size(kv.pop('tmpfs-size'), 'tmpfs-size')}")
        if "tmpfs-mode" in kv:
            opts.append(f"mode={kv.pop('tmpfs-mode')}")
    elif not source:
        raise SpecError(f"invalid --mount {text!r}: needs source=")
    elif kind == "bind" and not source.startswith("/"):
        raise SpecError(f"invalid --mount {text!r}: a bind source must be an absolute path")
    if kv:
        raise SpecError(f"invalid --mount {text!r}: unknown key(s) {', '.join(sorted(kv))}")
    return Mount(kind, target, source, readonly, opts)


def _cap_names(names, what):
    if not names:
        return []  # no import of the runtime's capability table for nothing
    from corral.oci.linux.capabilities import NAMES
    out = []
    for n in names:
        name = n.upper()
        if name == "ALL":
            out.append("ALL")
            continue
        if not name.startswith("CAP_"):
            name = "CAP_" + name
        if name not in NAMES:
            raise SpecError(f"invalid {what} {n!r}: unknown capability")
        out.append(name)
    return out


# what --privileged does not take from the host's /dev (runc's and docker's list: the
# container has its own pts, shm, mqueue, console and ptmx)
_HOST_DEV_SKIP = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev", "console", "ptmx"}


def host_devices(top="/dev"):
    """The host's device nodes as OCI linux.devices entries (--privileged gets them all)."""
    import stat
    out = []

    def walk(d):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return
        for name in names:
            if d == top and name in _HOST_DEV_SKIP:
                continue
            path = os.path.join(d, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                walk(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    walk(top)
    return out


def all_capabilities():
    """Every capability the host grants (our bounding set): what --privileged and --cap-add
    ALL give, as docker does; a capability the host withholds (e.g. CAP_SYS_RESOURCE in some
    sandboxes) would make the runtime's capset fail."""
    from corral.oci.linux.capabilities import NAMES
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
                    return [n for i, n in enumerate(NAMES) if mask >> i & 1]
    except (OSError, ValueError, IndexError):
        pass
    return list(NAMES)


def capabilities(opts):
    if opts.privileged:
        return all_capabilities()
    add, drop = _cap_names(opts.cap_add, "--cap-add"), _cap_names(opts.cap_drop, "--cap-drop")
    caps = all_capabilities() if "ALL" in add else list(DEFAULT_CAPS)
    caps += [c for c in add if c != "ALL" and c not in caps]
    if "ALL" in drop:
        caps = [c for c in add if c != "ALL"]
    return [c for c in caps if c not in drop]


# -- image config to process

def command_args(image_config, opts):
    cfg = image_config.get("config") or {}
    if opts.entrypoint is not None:
        entry = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.command or [])
    else:
        entry = list(cfg.get("Entrypoint") or [])
        cmd = list(opts.command) if opts.command else list(cfg.get("Cmd") or [])
    args = entry + cmd
    if not args:
        raise SpecError("no command specified: the image has no Entrypoint or Cmd; give one after the image")
    return args


def merge_env(image_env, extra, hostname, tty):
    env = {}
    order = []
    for item in [PATH_ENV] + list(image_env or []) + [f"HOSTNAME={hostname}"] + (["TERM=xterm"] if tty else []) + list(extra):
        k, _, _ = item.partition("=")
        if k not in env:
            order.append(k)
        env[k] = item
    return [env[k] for k in order]


def _read_rootfs_file(lookup_dirs, rel):
    """A file of the image's rootfs, read from the snapshot's directories (upper first),
    refusing symlinks so nothing outside them is read."""
    for d in lookup_dirs:
        path = os.path.join(d, rel)
        cur = d
        ok = True
        for part in rel.split("/"):
            cur = os.path.join(cur, part)
            if os.path.islink(cur):
                ok = False
                break
        if ok and os.path.isfile(path):
            with open(path, errors="replace") as f:
                return f.read()
    return ""


def resolve_user(user, lookup_dirs):
    """`uid[:gid]` or `name[:group]` to (uid, gid, additional gids) through the image's
    /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")
    passwd = [line.split(":") for line in _read_rootfs_file(lookup_dirs, "etc/passwd").splitlines()]
    groups = [line.split(":") for line in _read_rootfs_file(lookup_dirs, "etc/group").splitlines()]
    uid = gid = None
    username = None
    if name.isdigit():
        uid = int(name)
        for p in passwd:
            if len(p) > 3 and p[2] == name:
                username, gid = p[0], int(p[3]) if p[3].isdigit() else 0
                break
    else:
        for p in passwd:
            if len(p) > 3 and p[0] == name and p[2].isdigit():
                username, uid, gid = name, int(p[2]), int(p[3]) if p[3].isdigit() else 0
                break
        if uid is None:
            raise SpecError(f"invalid user {user!r}: no such user in the image's /etc/passwd")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found = [g for g in groups if len(g) > 2 and g[0] == group and g[2].isdigit()]
            if not found:
                raise SpecError(f"invalid user {user!r}: no such group in the image's /etc/group")
            gid = int(found[0][2])
    gid = 0 if gid is None else gid
    extra = []
    if username:
        for g in groups:
            if len(g) > 3 and username in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid:
                extra.append(int(g[2]))
    return uid, gid, extra


def lookup_dirs(mounts):
    """Directories of a snapshot's mounts, upper first (overlay upperdir, lowerdirs; or a bind)."""
    dirs = []
    for m in mounts:
        if m.type == "overlay":
            opts = dict(o.partition("=")[::2] for o in m.options)
            if opts.get("upperdir"):
                dirs.append(opts["upperdir"])
            dirs += [d for d in opts.get("lowerdir", "").split(":") if d]
        elif m.type == "bind":
            dirs.append(m.source)
    return dirs


# -- the spec

def build(*, image_config, opts, container_id, namespace, rootfs_dirs=(), data_root="", volume_mounts=()):
    """The spec dict. volume_mounts: the OCI mounts of opts.mounts, resolved by
    corral.volumes.mount_for (named volumes made, bind sources checked). rootfs_dirs: the
    rootfs's directories (lookup_dirs), or a function giving them, called only when a user
    name must be looked up in the image's /etc/passwd."""
    from corral.oci.specgen import MASKED_PATHS, READONLY_PATHS, default_spec

    cfg = image_config.get("config") or {}
    hostname = opts.hostname or container_id[:12]
    spec = default_spec(args=command_args(image_config, opts), terminal=opts.tty)
    proc = spec["process"]
    proc["env"] = merge_env(cfg.get("Env"), opts.env, hostname, opts.tty)
    workdir = opts.workdir or cfg.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise SpecError(f"invalid working directory {workdir!r}: must be absolute")
    proc["cwd"] = workdir
    user = opts.user or cfg.get("User") or ""
    if user:
        uid, gid, extra = resolve_user(user, rootfs_dirs() if callable(rootfs_dirs) else rootfs_dirs)
        proc["user"] = {"uid": uid, "gid": gid}
        if extra:
            proc["user"]["additionalGids"] = extra
    caps = capabilities(opts)
    proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    proc["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    proc["noNewPrivileges"] = not opts.privileged
    spec["root"] = {"path": "rootfs", "readonly": bool(opts.read_only)}
    spec["hostname"] = hostname

    linux = spec["linux"]
    linux["cgroupsPath"] = f"/{namespace}/{container_id}"
    res = linux["resources"]
    if opts.privileged:
        res["devices"] = [{"allow": True, "access": "rwm"}]
        linux["devices"] = host_devices()
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
        for m in spec["mounts"]:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    else:
        res["devices"] = [{"allow": False, "access": "rwm"}] + [
            {"allow": True, "type": t, "major": a, **({"minor": b} if b is not None else {}), "access": "rwm"}
            for t, a, b in DEFAULT_DEVICES]
        linux["maskedPaths"], linux["readonlyPaths"] = list(MASKED_PATHS), list(READONLY_PATHS)
        if opts.seccomp:
            from corral.oci.linux.seccomp_default import default_profile
            linux["seccomp"] = default_profile(caps)
    if opts.memory:
        res["memory"] = {"limit": opts.memory}
    if opts.cpus:
        res["cpu"] = {"quota": int(opts.cpus * 100000), "period": 100000}
    if opts.pids_limit:
        res["pids"] = {"limit": opts.pids_limit}

    spec["mounts"] += list(volume_mounts)

    annotations = spec.setdefault("annotations", {})
    annotations[L.NAME] = opts.labels.get(L.NAME, "")
    annotations[L.HOSTNAME] = hostname
    _network(spec, opts, data_root=data_root, namespace=namespace, container_id=container_id, hostname=hostname)
    return spec


def _network(spec, opts, *, data_root, namespace, container_id, hostname):
    """Network namespace, hooks, /etc files: corral.cni.spec.apply (bridge, host, none, NAME)."""
    from corral.cni import spec as cni_spec
    try:
        cni_spec.apply(spec, data_root=data_root, namespace=namespace, container_id=container_id,
                       networks=[opts.network], ports=opts.ports, hostname=hostname,
                       name=opts.labels.get(L.NAME) or None)
    except ValueError as e:  # corral.cni's NetworkError: one line for a person
        raise SpecError(str(e)) from None


def to_json(spec):
    return json.dumps(spec, separators=(",", ":")).encode()
