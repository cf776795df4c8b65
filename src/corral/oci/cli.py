"""corral-runc: an OCI runtime with runc's command line.

The dispatcher parses the global flags, then imports only the module of the verb asked for
(`corral.oci.commands.<verb>`), so each command pays only for what it uses. A command module
defines HELP, configure(parser) and run(ctx, args) -> exit status. Plain command lines are
parsed by quickargs; argparse is imported only for help, errors and unusual forms. The modules
of the lifecycle verbs are loaded straight from their bytecode first (_preload).
"""

import os
import sys

from corral.oci.errors import RuntimeFailure

VERBS = ("create", "start", "run", "state", "kill", "delete", "exec", "ps", "list", "pause",
         "resume", "events", "update", "spec", "features")

DEFAULT_ROOT = "/run/corral-runc"


class Context:
    """Global options every command sees."""

    def __init__(self, ns):
        self.root = os.path.abspath(ns.root)
        self.log_path = ns.log
        self.log_format = ns.log_format
        self.debug = ns.debug
        self.systemd_cgroup = ns.systemd_cgroup
        self._log = None

    @property
    def log(self):
        """The Logger, made on first use: most commands that succeed never log."""
        if self._log is None:
            from corral.oci.log import Logger
            self._log = Logger(self.log_path, self.log_format, self.debug)
        return self._log


# global options that take a value, and flags
GLOBAL_VALUES = {"--root": "root", "--log": "log", "--log-format": "log_format", "--rootless": "rootless",
                 "--criu": "criu"}
GLOBAL_FLAGS = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup", "-v": "version",
                "--version": "version", "-h": "help", "--help": "help"}


def _quick_globals(argv):
    """(global options, index of the verb) for a plain command line; None for anything else."""
    from corral.oci.quickargs import Namespace

    ns = Namespace(root=DEFAULT_ROOT, log=None, log_format="text", debug=False, systemd_cgroup=False,
                   rootless="auto", criu=None, version=False, help=False)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in VERBS:
            return (ns, i) if not (ns.version or ns.help) else None
        name, eq, value = arg.partition("=")
        if name in GLOBAL_VALUES:
            if not eq:
                if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                    return None
                i += 1
                value = argv[i]
            setattr(ns, GLOBAL_VALUES[name], value)
        elif arg in GLOBAL_FLAGS:
            setattr(ns, GLOBAL_FLAGS[arg], True)
        else:
            return None
        i += 1
    return None


def _global_parser():
    import argparse

    p = argparse.ArgumentParser(prog="corral-runc", add_help=False,
                                description="corral-runc: run containers from OCI bundles")
    p.add_argument("--root", default=DEFAULT_ROOT, help="directory for container state")
    p.add_argument("--log", default=None, help="log file (default: stderr)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default="auto", help="accepted for runc compatibility")
    p.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    return p


def _usage():
    lines = ["usage: corral-runc [global options] COMMAND [options] [args]", "", "commands:"]
    for verb in VERBS:
        lines.append(f"  {verb}")
    lines += ["", "global options: --root DIR --log FILE --log-format text|json --debug "
              "--systemd-cgroup --version", "run 'corral-runc COMMAND --help' for a command's options"]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    quick = _quick_globals(argv)
    if quick is not None and quick[0].log_format in ("text", "json"):
        ns, verb_at = quick
        return _dispatch(ns, argv[verb_at], argv[verb_at + 1:])
    gp = _global_parser()
    ns, rest = gp.parse_known_args(argv)
    # global flags must precede the verb; parse_known_args may have taken later ones too,
    # so find the verb position in argv and re-parse only what precedes it
    verb_at = next((i for i, a in enumerate(argv) if a in VERBS), None)
    if verb_at is not None:
        ns, unknown = gp.parse_known_args(argv[:verb_at])
        if unknown:
            sys.stderr.write(f"corral-runc: unknown global option {unknown[0]}\n")
            return 2
        rest = argv[verb_at:]
    if ns.version:
        from corral import __version__
        from corral.oci.specgen import OCI_VERSION
        print(f"corral-runc version {__version__}\nspec: {OCI_VERSION}")
        return 0
    if verb_at is None:
        if rest and not ns.help:
            sys.stderr.write(f"corral-runc: unknown command {rest[0]!r}\n{_usage()}\n")
            return 2
        print(_usage())
        return 0 if ns.help else 2
    return _dispatch(ns, rest[0], rest[1:])


# the corral modules of the verbs containerd's shim runs for every container (the exec'd
# runtime's hot path) and of exec, each after the corral modules it imports
_COMMON = ("quickargs", "commands", "jsonfast", "state", "container")
_CREATE = ("linux", "linux.cabi", "linux.syscalls", "spec", "linux.namespaces", "init",
           "linux.cgroups", "linux.capabilities", "linux.lsm", "linux.rlimits", "linux.user",
           "linux.security", "linux.paths", "linux.devices", "linux.mounts", "linux.rootfs",
           "linux.cgroups.values", "linux.cgroups.fs")
_HOT = {"run": _COMMON + _CREATE + ("commands.run",), "create": _COMMON + _CREATE + ("commands.create",),
        "start": _COMMON + ("commands.start",), "kill": _COMMON + ("commands.kill",),
        "delete": _COMMON + ("commands.delete", "linux", "linux.cgroups", "linux.cgroups.fs"),
        "state": ("quickargs", "commands", "jsonfast", "state", "commands.state"),
        "exec": _COMMON + ("commands.exec", "linux", "linux.cabi", "linux.syscalls", "linux.namespaces",
                           "init", "linux.cgroups", "linux.cgroups.fs", "spec", "linux.capabilities",
                           "linux.lsm", "linux.rlimits", "linux.user", "linux.security", "commands.run")}
_PACKAGES = {"commands", "linux", "linux.cgroups"}


def _preload(names):
    """Import corral.oci.<name> for each name as the import system would, but straight from
    its __pycache__ file when that matches the source (mtime and size, the import system's
    own check): the finders and loaders cost about 55 us a module, 1.5 ms of a `run`. At the
    first module that is not that simple (no bytecode, stale bytecode, another format) the
    import system is left to do the rest."""
    if sys.flags.optimize or sys.pycache_prefix or not sys.implementation.cache_tag:
        return  # the bytecode would be elsewhere or of another kind
    import marshal
    from _frozen_importlib import ModuleSpec
    from _frozen_importlib_external import MAGIC_NUMBER, SourceFileLoader

    modules = sys.modules
    base = os.path.dirname(__file__)
    suffix = "." + sys.implementation.cache_tag + ".pyc"
    for rel in names:
        name = "corral.oci." + rel
        if name in modules:
            continue
        parent, _, short = name.rpartition(".")
        if parent not in modules:
            return  # a package is imported before its modules
        path = base + "/" + rel.replace(".", "/")
        pkg = rel in _PACKAGES
        if pkg:
            src, pyc = path + "/__init__.py", path + "/__pycache__/__init__" + suffix
        else:
            head, _, tail = path.rpartition("/")
            src, pyc = path + ".py", head + "/__pycache__/" + tail + suffix
        try:
            st = os.stat(src)
            with open(pyc, "rb") as f:
                data = f.read()
        except OSError:
            return
        if (data[:4] != MAGIC_NUMBER or data[4:8] != b"\0\0\0\0"
                or int.from_bytes(data[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
                or int.from_bytes(data[12:16], "little") != st.st_size & 0xFFFFFFFF):
            return
        try:
            code = marshal.loads(memoryview(data)[16:])
        except (ValueError, EOFError, TypeError):
            return
        loader = SourceFileLoader(name, src)
        spec = ModuleSpec(name, loader, origin=src, is_package=pkg)
        spec.has_location = True
        spec.cached = pyc
        module = type(sys)(name)
        module.__spec__ = spec
        module.__loader__ = loader
        module.__file__ = src
        module.__cached__ = pyc
        if pkg:
            spec.submodule_search_locations = module.__path__ = [path]
            module.__package__ = name
        else:
            module.__package__ = name.rpartition(".")[0]
        modules[name] = module
        try:
            exec(code, module.__dict__)
        except BaseException:
            modules.pop(name, None)
            raise
        setattr(modules[parent], short, module)


def _dispatch(ns, verb, argv):
    if verb in _HOT:
        _preload(_HOT[verb])
    from corral.oci import quickargs

    module = getattr(__import__(f"corral.oci.commands.{verb}").oci.commands, verb)
    recorder = quickargs.Recorder()
    module.configure(recorder)
    args = quickargs.parse(recorder.calls, argv)
    if args is None:
        import argparse
        parser = argparse.ArgumentParser(prog=f"corral-runc {verb}", description=module.HELP)
        args = recorder.replay(parser).parse_args(argv)
    ctx = Context(ns)
    try:
        return module.run(ctx, args) or 0
    except RuntimeFailure as e:
        ctx.log.error(str(e))
        if ctx.log_path is None or ctx.log_format != "json":
            sys.stderr.write(f"corral-runc: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
