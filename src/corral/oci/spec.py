"""Load and check a bundle's config.json.

Only the parts the core owns are checked here (ociVersion, root, process basics, hostname,
namespaces, id mappings, time offsets, hooks, sysctl, annotations); mounts, cgroups and the
security fields are checked by the validate() functions of their modules. Anything we do not
support is refused with one clear line, never ignored.
"""

from corral.oci import jsonfast as json  # json.loads/dumps without importing json (re)
import os

from corral.oci.errors import RuntimeFailure

NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "user", "cgroup", "time")
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
TOP_KEYS = {"ociVersion", "root", "process", "hostname", "domainname", "mounts", "hooks",
            "annotations", "linux"}
LINUX_KEYS = {"namespaces", "uidMappings", "gidMappings", "timeOffsets", "devices", "cgroupsPath",
              "resources", "rootfsPropagation", "seccomp", "sysctl", "maskedPaths",
              "readonlyPaths", "mountLabel"}
PROCESS_KEYS = {"terminal", "consoleSize", "user", "args", "env", "cwd", "capabilities", "rlimits",
                "noNewPrivileges", "apparmorProfile", "oomScoreAdj", "selinuxLabel"}
# sysctl prefixes the kernel keeps per namespace, and the namespace each needs
_SYSCTL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/")
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def _fail(msg):
    raise RuntimeFailure(f"config.json: {msg}")


def load(bundle):
    """Read <bundle>/config.json, check it and return (spec dict, absolute bundle, absolute rootfs)."""
    bundle = os.path.abspath(bundle)
    if not os.path.isdir(bundle):
        raise RuntimeFailure(f"bundle directory {bundle} does not exist: give an existing one with --bundle")
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise RuntimeFailure(f"bundle {bundle} has no config.json: write one (corral-runc spec)") from None
    except OSError as e:
        raise RuntimeFailure(f"cannot read {path}: {e.strerror}") from None
    try:
        spec = json.loads(raw)
    except ValueError as e:
        raise RuntimeFailure(f"{path} is not valid JSON: {e}") from None
    rootfs = validate(spec, bundle)
    return spec, bundle, rootfs


def _str_list(value, where):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(f"{where} must be a list of strings")
    if any("\0" in v for v in value):
        _fail(f"{where} holds a NUL character")


def _is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _optional(obj, key, kind, where, what):
    """obj[key] when it is set (not null) and of type `kind`, else None; any other type is
    refused naming the field ("must be <what>")."""
    value = obj.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        _fail(f"{where} must be {what}")
    return value


def validate(spec, bundle):
    """Check the core's parts of the spec; returns the absolute rootfs path."""
    if not isinstance(spec, dict):
        _fail("the top level must be a JSON object")
    unknown = sorted(set(spec) - TOP_KEYS)
    if unknown:
        _fail(f"unsupported field {unknown[0]!r} (corral-runc runs Linux containers only)")
    version = spec.get("ociVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        _fail(f"ociVersion {version!r} is missing or unsupported: want a 1.x version such as \"1.0.2\"")
    root = spec.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        _fail("root.path is missing: name the rootfs directory (e.g. \"rootfs\")")
    if "readonly" in root and not isinstance(root["readonly"], bool):
        _fail("root.readonly must be true or false")
    rootfs = os.path.normpath(os.path.join(bundle, root["path"]))
    if not os.path.isdir(rootfs):
        _fail(f"root.path {rootfs} is not a directory")
    validate_process(spec.get("process"), "process")
    linux = spec.get("linux")
    if linux is None:
        linux = spec["linux"] = {}
    if not isinstance(linux, dict):
        _fail("linux must be an object")
    unknown = sorted(set(linux) - LINUX_KEYS)
    if unknown:
        _fail(f"linux.{unknown[0]} is not supported by corral-runc; remove it")
    for key, kind, what in (("cgroupsPath", str, "a string"), ("mountLabel", str, "a string"),
                            ("rootfsPropagation", str, "a string"), ("resources", dict, "an object"),
                            ("seccomp", dict, "an object"), ("devices", list, "a list"),
                            ("maskedPaths", list, "a list of paths"),
                            ("readonlyPaths", list, "a list of paths")):
        _optional(linux, key, kind, f"linux.{key}", what)
    kinds = _validate_namespaces(linux)
    for key in ("hostname", "domainname"):
        name = _optional(spec, key, str, key, "a string")
        if name and (len(name) > 64 or "\0" in name):
            _fail(f"{key} {name[:80]!r} is not valid: at most 64 characters, no NUL")
        if name:
            if "uts" not in kinds or kinds["uts"]:
                _fail(f"{key} is set but there is no new uts namespace: add {{\"type\": \"uts\"}} "
                      "to linux.namespaces")
    _validate_sysctl(linux.get("sysctl"), kinds)
    _validate_hooks(spec.get("hooks"))
    ann = spec.get("annotations")
    if ann is not None and (not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values())):
        _fail("annotations must be an object of strings")
    _optional(spec, "mounts", list, "mounts", "a list")
    return rootfs


def validate_process(process, where):
    if not isinstance(process, dict):
        _fail(f"{where} is missing: a container needs a process with args")
    unknown = sorted(set(process) - PROCESS_KEYS)
    if unknown:
        _fail(f"{where}.{unknown[0]} is not supported by corral-runc; remove it")
    args = process.get("args")
    if not isinstance(args, list) or not args:
        _fail(f"{where}.args must be a non-empty list of strings")
    _str_list(args, f"{where}.args")
    if "env" in process:
        _str_list(process["env"], f"{where}.env")
        for e in process["env"]:
            if "=" not in e:
                _fail(f"{where}.env entry {e!r} is not KEY=VALUE")
    for key, kind, what in (("noNewPrivileges", bool, "true or false"),
                            ("apparmorProfile", str, "a string"), ("selinuxLabel", str, "a string"),
                            ("capabilities", dict, "an object of lists"), ("rlimits", list, "a list")):
        _optional(process, key, kind, f"{where}.{key}", what)
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd:
        _fail(f"{where}.cwd {cwd!r} must be an absolute path")
    if "terminal" in process and not isinstance(process["terminal"], bool):
        _fail(f"{where}.terminal must be true or false")
    size = process.get("consoleSize")
    if size is not None and (not isinstance(size, dict) or not all(
            _is_uint(size.get(k, 0)) and size.get(k, 0) <= 0xFFFF for k in ("height", "width"))):
        _fail(f"{where}.consoleSize must be {{\"height\": N, \"width\": N}} with N up to 65535")
    user = process.get("user")
    if user is not None and not isinstance(user, dict):
        _fail(f"{where}.user must be an object")


def _validate_namespaces(linux):
    """Returns {type: path or None}."""
    nss = _optional(linux, "namespaces", list, "linux.namespaces", "a list") or []
    kinds = {}
    for ns in nss:
        if not isinstance(ns, dict) or not isinstance(ns.get("type"), str):
            _fail("each linux.namespaces entry needs a \"type\"")
        kind = ns["type"]
        if kind not in NAMESPACES:
            _fail(f"unknown namespace type {kind!r} in linux.namespaces: use {', '.join(NAMESPACES)}")
        if kind in kinds:
            _fail(f"namespace {kind!r} appears twice in linux.namespaces")
        path = ns.get("path")
        if path == "":
            path = None
        if path is not None:
            if not isinstance(path, str) or not os.path.isabs(path):
                _fail(f"linux.namespaces {kind} path {path!r} must be an absolute path")
            if not os.path.exists(path):
                _fail(f"the {kind} namespace to join, {path}, does not exist")
        kinds[kind] = path
    if kind_new(kinds, "time") and not os.path.exists("/proc/self/ns/time"):
        _fail("this kernel has no time namespaces: remove {\"type\": \"time\"}")
    if kind_new(kinds, "cgroup") and not os.path.exists("/proc/self/ns/cgroup"):
        _fail("this kernel has no cgroup namespaces: remove {\"type\": \"cgroup\"}")
    for key in ("uidMappings", "gidMappings"):
        maps = _optional(linux, key, list, f"linux.{key}", "a list")
        if not maps:
            continue
        if "user" not in kinds:
            _fail(f"linux.{key} is set but there is no user namespace: add {{\"type\": \"user\"}}")
        if not isinstance(maps, list) or not all(
                isinstance(m, dict) and all(_is_uint(m.get(f)) for f in ("containerID", "hostID", "size"))
                for m in maps):
            _fail(f"linux.{key} entries need containerID, hostID and size as numbers")
    if kind_new(kinds, "user") and not (linux.get("uidMappings") and linux.get("gidMappings")):
        _fail("a new user namespace needs linux.uidMappings and linux.gidMappings")
    offsets = _optional(linux, "timeOffsets", dict, "linux.timeOffsets", "an object")
    if offsets:
        if not kind_new(kinds, "time"):
            _fail("linux.timeOffsets is set but there is no new time namespace: add {\"type\": \"time\"}")
        for clock, off in offsets.items():
            if clock not in ("monotonic", "boottime"):
                _fail(f"linux.timeOffsets clock {clock!r} is unknown: use monotonic or boottime")
            secs = off.get("secs", 0) if isinstance(off, dict) else None
            if not isinstance(secs, int) or isinstance(secs, bool) or not -2**63 <= secs < 2**63 \
                    or not _is_uint(off.get("nanosecs", 0)) or off.get("nanosecs", 0) >= 10**9:
                _fail(f"linux.timeOffsets.{clock} needs integer secs and nanosecs below 1e9")
    if "mount" not in kinds and (linux.get("maskedPaths") or linux.get("readonlyPaths")):
        pass  # the rootfs module decides; runc refuses mounts without a mount namespace there too
    return kinds


def kind_new(kinds, kind):
    """True if the spec asks for a new namespace of this kind (listed, without a path)."""
    return kind in kinds and not kinds[kind]


def _validate_sysctl(sysctl, kinds):
    if sysctl is not None and (not isinstance(sysctl, dict)
                               or not all(isinstance(v, str) for v in sysctl.values())):
        _fail("linux.sysctl must be an object of strings")
    if not sysctl:
        return
    for key in sysctl:
        if not key or ".." in key or key.startswith("/") or not set(key) <= _SYSCTL_CHARS:
            _fail(f"linux.sysctl key {key!r} is not a valid name")
        key = key.replace("/", ".")
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            need = "ipc"
        elif key.startswith("net."):
            need = "network"
        elif key in ("kernel.hostname", "kernel.domainname"):
            need = "uts"
        else:
            _fail(f"linux.sysctl {key} is not namespaced: it would change the host, so it is refused")
        if need not in kinds:
            _fail(f"linux.sysctl {key} needs a {need} namespace for the container: add "
                  f"{{\"type\": \"{need}\"}} to linux.namespaces")


def _validate_hooks(hooks):
    if hooks is None:
        return
    if not isinstance(hooks, dict):
        _fail("hooks must be an object")
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            _fail(f"unknown hook kind {kind!r}: use {', '.join(HOOK_KINDS)}")
        if not isinstance(entries, list):
            _fail(f"hooks.{kind} must be a list")
        for h in entries:
            if not isinstance(h, dict) or not isinstance(h.get("path"), str) or not os.path.isabs(h["path"]):
                _fail(f"each hooks.{kind} entry needs an absolute \"path\"")
            if "args" in h:
                _str_list(h["args"], f"hooks.{kind} args")
            if "env" in h:
                _str_list(h["env"], f"hooks.{kind} env")
            t = h.get("timeout")
            if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t <= 0):
                _fail(f"hooks.{kind} timeout {t!r} must be a positive number of seconds")
