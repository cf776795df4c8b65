"""corral-runc in-process: the shim forks and runs corral-runc's command line in the child,
from modules it (or its zygote) has already imported, instead of exec'ing a new interpreter
that imports them again (about 25 ms per runtime call measured).

The child looks like an exec'd corral-runc to everything around it: stdio on fds 0-2, every
other fd closed, default signal dispositions, no asyncio wakeup fd, comm `corral-runc`.
Set CORRAL_SHIM_INPROCESS=0 in the daemon's environment to exec the binary instead.
"""

import os
import sys

BINARY = "corral-runc"

# what corral-runc's lifecycle commands import: preloaded by the zygote so each server (and
# each forked runtime call) shares them instead of importing them again
MODULES = (
    "argparse", "json", "shutil", "select", "resource", "fnmatch",
    "corral.oci.cli", "corral.oci.quickargs", "corral.oci.container", "corral.oci.init", "corral.oci.log",
    "corral.oci.spec", "corral.oci.state", "corral.oci.errors",
    "corral.oci.commands.create", "corral.oci.commands.start", "corral.oci.commands.delete",
    "corral.oci.commands.kill", "corral.oci.commands.state", "corral.oci.commands.exec",
    "corral.oci.commands.pause", "corral.oci.commands.resume", "corral.oci.commands.ps",
    "corral.oci.commands.update", "corral.oci.commands.events",
    "corral.oci.linux.capabilities", "corral.oci.linux.cgroups", "corral.oci.linux.cgroups.devices",
    "corral.oci.linux.cgroups.fs", "corral.oci.linux.cgroups.v1", "corral.oci.linux.cgroups.values",
    "corral.oci.linux.devices", "corral.oci.linux.lsm", "corral.oci.linux.mounts",
    "corral.oci.linux.namespaces", "corral.oci.linux.paths", "corral.oci.linux.rlimits",
    "corral.oci.linux.rootfs", "corral.oci.linux.security", "corral.oci.linux.syscalls",
    "corral.oci.linux.user",
)


def enabled(binary):
    """True if `binary` is corral-runc and in-process runs are not switched off."""
    return os.path.basename(binary) == BINARY and os.environ.get("CORRAL_SHIM_INPROCESS", "1") != "0"


def preload():
    import importlib

    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # the runtime's layout changed: the child imports what it needs itself


def spawn(argv, stdin, stdout, stderr):
    """Fork a child that runs `corral-runc argv[1:]` with the given fds as its stdio; its pid.
    The caller reaps it (and registers for its exit before returning to the loop)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _become_runtime(stdin, stdout, stderr)
        from corral.oci.cli import main

        code = main(argv[1:]) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _become_runtime(stdin, stdout, stderr):
    import signal

    signal.set_wakeup_fd(-1)  # the loop's: a signal here must not wake the shim's loop
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as a fresh interpreter has it
    # stdio to 0-2 through fds above 2, so that one target fd never overwrites another source
    fds = [os.dup(fd) for fd in (stdin, stdout, stderr)]
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 1 << 16)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    try:
        with open("/proc/self/comm", "wb") as f:
            f.write(BINARY.encode())
    except OSError:
        pass
