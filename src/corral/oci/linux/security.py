"""The container process's security setup, in the order runc uses.

    validate(spec, cache_dir=None)
                                 parent, before anything is created; with seccomp it also
                                 builds the program on the host (preload), cached on disk
                                 under cache_dir (root-only, e.g. <runtime root>/seccomp-cache)
    validate_process(process, linux, cache_dir=None)
                                 the same for an `exec` process (before joining namespaces)
    apply_rlimits(process)       container init, early
    last = finalize(process, linux)
                                 container init, after the rootfs is set up (uid 0, all caps)
    last()                       container init, right before execve
    set_oom_score_adj(pid, n)    parent

finalize() is used for `exec` processes too. pyseccomp is imported only for configs that
have linux.seccomp, and only on the host (never from inside a container's rootfs): an init
that is not forked from the validating process calls preload(spec) before it enters the rootfs.
"""

import sys

from corral.oci.errors import RuntimeFailure
from corral.oci.linux import cabi as ctypes  # without ctypes' import cost
from corral.oci.linux import capabilities, lsm, rlimits, syscalls, user


def validate(spec, cache_dir=None):
    """Refuse a bad config with one line; then preload what finalize() needs."""
    linux = spec.get("linux") or {}
    if linux.get("seccomp") is not None:
        from corral.oci.linux import seccomp
        seccomp.validate(linux["seccomp"])
    validate_process(spec.get("process") or {}, linux, cache_dir)


def preload(spec, cache_dir=None):
    """Load on the host what finalize() will need inside the rootfs: libseccomp, and the
    seccomp program built from the config (kept on disk under cache_dir when given)."""
    cfg = (spec.get("linux") or {}).get("seccomp")
    if cfg is not None:
        from corral.oci.linux import seccomp
        seccomp.prepare(cfg, cache_dir)


def validate_process(process, linux=None, cache_dir=None):
    """The process-level checks (also for `exec` processes); then, as the process will run
    under the container's linux.seccomp, preload({"linux": linux}, cache_dir)."""
    caps = process.get("capabilities") or {}
    if not isinstance(caps, dict):
        raise RuntimeFailure("process.capabilities in config.json must be an object of lists")
    for kind, names in caps.items():
        if kind not in capabilities.SETS:
            raise RuntimeFailure(f"unknown capability set {kind!r} in config.json: use "
                                 f"{', '.join(capabilities.SETS)}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RuntimeFailure(f"process.capabilities.{kind} in config.json must be a list of names")
        bad = capabilities.unknown_names(names)
        if bad:
            raise RuntimeFailure(f"unknown capability {bad[0]!r} in process.capabilities.{kind} "
                                 "of config.json: use names like CAP_NET_ADMIN")
    rlimits.validate(process.get("rlimits"))
    user.validate(process.get("user"))
    adj = process.get("oomScoreAdj")
    if adj is not None and (not isinstance(adj, int) or isinstance(adj, bool) or not -1000 <= adj <= 1000):
        raise RuntimeFailure(f"process.oomScoreAdj {adj!r} in config.json is out of range: "
                             "want -1000 to 1000")
    lsm.validate(process, linux)
    preload({"linux": linux or {}}, cache_dir)


def apply_rlimits(process):
    rlimits.apply(process.get("rlimits"))


def finalize(process, linux):
    """Everything after the rootfs: returns last_step(), to call right before execve.

    Also puts HOME=<the user's home> into process['env'] when it has no HOME, as runc does."""
    linux = linux or {}
    proc_user = process.get("user") or {}
    nnp = bool(process.get("noNewPrivileges"))
    # read what we need from /proc and /etc before a filter may forbid it
    last_cap = capabilities.last_cap()
    masks = capabilities.masks_from_spec(process.get("capabilities"), last_cap)
    env = process.get("env")
    if env is not None and not any(e.startswith("HOME=") for e in env):
        env.append("HOME=" + user.home_of(int(proc_user.get("uid", 0))))
    filt = None
    if linux.get("seccomp") is not None:
        # nothing can be imported once the rootfs is our root: preload() did it on the host
        seccomp = sys.modules.get("corral.oci.linux.seccomp")
        if seccomp is None:
            raise RuntimeFailure("internal error: seccomp support was not loaded before entering "
                                 "the container's rootfs (call security.preload(spec) first)")
        filt = seccomp.build(linux["seccomp"])
        if not nnp:
            # without no_new_privs loading a filter needs CAP_SYS_ADMIN: load before the drop
            seccomp.load(filt)
    capabilities.drop_bounding(masks["bounding"], last_cap)
    pdeathsig = _get_pdeathsig()
    capabilities.set_keepcaps(True)
    user.switch(proc_user)
    capabilities.set_keepcaps(False)
    if pdeathsig:  # changing uid/gid clears it
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, pdeathsig)
    capabilities.apply(masks)
    user.set_umask(proc_user)
    if nnp:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    lsm.set_exec_labels(process)

    def last_step():
        if filt is not None and nnp:
            seccomp.load(filt)

    return last_step


def features():
    """The security part of `corral-runc features` (the "linux" object runc prints)."""
    from corral.oci.linux import seccomp
    return {
        "capabilities": list(capabilities.NAMES[:capabilities.last_cap() + 1]),
        "seccomp": {
            "enabled": True,
            "actions": sorted(a for a in seccomp.ACTIONS if a != "SCMP_ACT_NOTIFY"),
            "operators": sorted(seccomp.OPS),
            "archs": sorted(seccomp.ARCHES),
            "knownFlags": list(seccomp.FLAGS),
            "supportedFlags": list(seccomp.FLAGS),
        },
        "apparmor": {"enabled": lsm.apparmor_enabled()},
        "selinux": {"enabled": lsm.selinux_enabled()},
    }


def _get_pdeathsig():
    sig = ctypes.c_int(0)
    syscalls.prctl(_PR_GET_PDEATHSIG, ctypes.addressof(sig))
    return sig.value


_PR_GET_PDEATHSIG = 2


def set_oom_score_adj(pid, value):
    if value is None:
        return
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(int(value)))
    except OSError as e:
        raise RuntimeFailure(f"setting oom_score_adj {value} for pid {pid} failed: {e.strerror} "
                             "(lowering it needs CAP_SYS_RESOURCE)") from None
