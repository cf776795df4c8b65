"""`corral [global flags] COMMAND [flags] [args]`.

Global flags are parsed by hand and only the module of the command asked for is imported, so
that a command pays for no import it does not use (`corral run` is on a latency path).
"""

import os
import sys

from corral.cli.errors import CLIError

# verb -> (module under corral.cli.commands, one-line help). Multi-word commands
# (`network ls`, `volume create`, `system info`) are one module with its own subcommands.
COMMANDS = {
    "version": ("version", "Show the client and daemon versions"),
    "logs": ("logs", "Show a container's output (-f to follow)"),
    "volume": ("volume", "Manage named volumes (create, ls, rm, inspect, prune)"),
    "run": ("run", "Create and start a container"),
    "create": ("create", "Create a container (not started)"),
    "start": ("start", "Start containers"),
    "stop": ("stop", "Stop containers (SIGTERM, then SIGKILL after -t seconds)"),
    "kill": ("kill", "Send a signal to containers"),
    "restart": ("restart", "Restart containers"),
    "rm": ("rm", "Remove containers"),
    "ps": ("ps", "List containers"),
    "exec": ("exec", "Run a command in a running container"),
    "inspect": ("inspect", "Show containers (or images) as JSON"),
    "wait": ("wait", "Wait for containers to exit and print their status"),
    "top": ("top", "Show a container's processes"),
    "stats": ("stats", "Show containers' resource usage"),
    "cp": ("cp", "Copy files between a container and the host"),
    "events": ("events", "Show the daemon's events"),
    "system": ("system", "System info and prune"),
    "images": ("images", "List images"),
    "pull": ("pull", "Pull an image from a registry"),
    "push": ("push", "Push an image to a registry"),
    "tag": ("tag", "Give an image another name"),
    "rmi": ("rmi", "Remove images"),
    "load": ("load", "Load images from a docker-archive or OCI archive (stdin or -i)"),
    "save": ("save", "Save images as a docker-archive or OCI archive (stdout or -o)"),
    "login": ("login", "Log in to a registry"),
    "logout": ("logout", "Log out from a registry"),
    "network": ("network", "Manage networks (ls, create, rm, inspect)"),
}

DEFAULT_ADDRESS = "/run/corral/corrald.sock"
DEFAULT_DATA_ROOT = "/var/lib/corral"

USAGE = """usage: corral [--address SOCK] [--namespace NS] [--data-root DIR] [--debug] COMMAND [ARGS...]

corral runs containers through corrald (containerd's API).

Global flags:
  -a, --address SOCK     corrald's socket (env CORRAL_ADDRESS; default {address})
  -n, --namespace NS     namespace (env CORRAL_NAMESPACE; default "default")
  --data-root DIR        corral's root for volumes, logs and networks (env CORRAL_DATA_ROOT;
                         default {data_root})
  --debug                show tracebacks on errors
  -v, --version          print the version and exit
  -h, --help             this help; `corral COMMAND --help` for a command's flags

Commands:
{commands}
"""


class Env:
    """What every command gets: the global settings and a lazily made client."""

    def __init__(self, address, namespace, data_root, debug):
        self.address = address
        self.namespace = namespace
        self.data_root = data_root
        self.debug = debug
        self._client = None

    def client(self):
        if self._client is None:
            from corral.client import Client
            self._client = Client(self.address, namespace=self.namespace)
            self._client.data_root = self.data_root
        return self._client

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None


def usage():
    width = max(len(v) for v in COMMANDS)
    lines = "\n".join(f"  {verb.ljust(width)}  {COMMANDS[verb][1]}" for verb in sorted(COMMANDS))
    return USAGE.format(address=DEFAULT_ADDRESS, data_root=DEFAULT_DATA_ROOT, commands=lines)


def _global_flags(argv):
    address = os.environ.get("CORRAL_ADDRESS", DEFAULT_ADDRESS)
    namespace = os.environ.get("CORRAL_NAMESPACE", "default")
    data_root = os.environ.get("CORRAL_DATA_ROOT", DEFAULT_DATA_ROOT)
    debug = False
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("-a", "--address", "-n", "--namespace", "--data-root"):
            if not eq:
                i += 1
                if i == len(argv):
                    raise CLIError(f"flag {name} needs a value")
                value = argv[i]
            if not value:
                raise CLIError(f"flag {name} needs a non-empty value")
            if name in ("-a", "--address"):
                address = value
            elif name in ("-n", "--namespace"):
                namespace = value
            else:
                data_root = value
        elif arg == "--debug":
            debug = True
        elif arg in ("-h", "--help"):
            sys.stdout.write(usage())
            raise SystemExit(0)
        elif arg in ("-v", "--version"):
            from corral import __version__
            print(f"corral version {__version__}")
            raise SystemExit(0)
        else:
            raise CLIError(f"unknown flag {arg}; see `corral --help`")
        i += 1
    return Env(address, namespace, os.path.abspath(data_root), debug), argv[i:]


def connect_error(e, env):
    """The one line for a ClientError that says corrald's socket could not be reached, else None."""
    if getattr(e, "code", None) != "UNAVAILABLE" or env is None:
        return None
    msg = getattr(e, "message", "") or ""
    if "connect" not in msg.lower():
        return None
    reason = msg.rsplit("error: ", 1)[-1] if "error: " in msg else msg
    return f"cannot connect to corrald at {env.address}: {reason} (is corrald running?)"


def parser(verb, help_text):
    """An argparse parser whose usage errors are one line and exit 125."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise CLIError(f"{self.prog}: {message}; see `{self.prog} --help`")

    return Parser(prog=f"corral {verb}", description=help_text)


# The global flags a command also takes after its verb (nerdctl's persistent flags):
# (option strings, key in Env, argparse keywords). A short form a command uses for itself
# (`ps -a`, `start -a`, `logs -n`) stays the command's; the long form always works.
_AFTER_VERB = (
    (("-a", "--address"), "address", {"metavar": "SOCK", "help": "corrald's socket"}),
    (("-n", "--namespace"), "namespace", {"metavar": "NS", "help": "namespace"}),
    (("--data-root",), "data_root", {"metavar": "DIR", "help": "corral's root for volumes, logs and networks"}),
    (("--debug",), "debug", {"action": "store_true", "help": "show tracebacks on errors"}),
)


def add_global_flags(p):
    """Add the global flags to parser `p` and to each of its subcommands' parsers, with no
    default (SUPPRESS), so only flags given on the command line reach the parsed options."""
    import argparse
    taken = set(p._option_string_actions)
    group = p.add_argument_group("global flags (before or after the command)")
    for names, key, kw in _AFTER_VERB:
        names = [n for n in names if n not in taken]
        if names:
            group.add_argument(*names, dest="_global_" + key, default=argparse.SUPPRESS, **kw)
    seen = set()
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    add_global_flags(sub)


def _defer_protobuf_internals():
    """protobuf's package imports its pure-Python implementation (python_message, and with it
    text_format, decoder, encoder, containers, pickle...) even when its upb C extension does
    the work: ~7 ms of `corral run`. In this process (the command, not corral.Client as a
    library) those two modules are made lazy with importlib.util.LazyLoader: executed at their
    first use, if any; the upb backend makes none."""
    import importlib.util
    from importlib.machinery import PathFinder
    names = ("google.protobuf.internal.python_message", "google.protobuf.text_format")

    class LazyProtobufInternals:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name not in names:
                return None
            spec = PathFinder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = importlib.util.LazyLoader(spec.loader)
            return spec

    sys.meta_path.insert(0, LazyProtobufInternals)


def _quick_globals(calls):
    """The global flags after the verb, for quickargs: (names, dest, action), as
    add_global_flags gives them to argparse (a name the command uses itself stays its own)."""
    taken = {n for names, _ in calls for n in names}
    out = []
    for names, key, kw in _AFTER_VERB:
        names = [n for n in names if n not in taken]
        if names:
            out.append((names, "_global_" + key, kw.get("action", "store")))
    return out


def apply_global_flags(opts, env):
    """Global flags given after the verb override those before it."""
    for _, key, _ in _AFTER_VERB:
        value = opts.__dict__.pop("_global_" + key, None)
        if value is None:
            continue
        if key == "debug":
            env.debug = env.debug or value
            continue
        if not value:
            raise CLIError(f"flag --{key.replace('_', '-')} needs a non-empty value")
        setattr(env, key, os.path.abspath(value) if key == "data_root" else value)


def main(argv=None):
    """The `corral` command: its exit status. Called with no argv (the process's own command
    line, the entry point), the process ends here: stdout and stderr are flushed and the
    interpreter's teardown of every module and object (5-7 ms once protobuf is loaded) is
    skipped, as nothing is left to run at exit."""
    if argv is not None:
        return _main(argv)
    code = _main(sys.argv[1:])
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else 1)


def _main(argv):
    env = None
    try:
        env, rest = _global_flags(argv)
        if not rest:
            sys.stderr.write(usage())
            return 125
        verb, args = rest[0], rest[1:]
        if verb == "help":
            sys.stdout.write(usage())
            return 0
        if verb not in COMMANDS:
            raise CLIError(f"unknown command {verb!r}; see `corral --help`")
        module_name, help_text = COMMANDS[verb]
        import importlib
        module = importlib.import_module(f"corral.cli.commands.{module_name}")
        opts = recorder = None
        if getattr(module, "QUICK", False):  # a latency path: plain command lines skip argparse
            # and the cyclic GC stays off while the command imports and sets up (protobuf's
            # import alone made it run dozens of times: ~3 ms); corral.cli.attach turns it back
            # on before a long wait
            import gc
            gc.disable()
            _defer_protobuf_internals()
            from corral.oci import quickargs
            recorder = quickargs.Recorder()
            module.configure(recorder)
            opts = quickargs.parse(recorder.calls, args, _quick_globals(recorder.calls))
        if opts is None:
            p = parser(verb, help_text)
            if recorder is not None:
                recorder.replay(p)
            else:
                module.configure(p)
            add_global_flags(p)
            opts = p.parse_args(args)
        apply_global_flags(opts, env)
        return module.run(opts, env) or 0
    except CLIError as e:
        if env is not None and env.debug:
            import traceback
            traceback.print_exc()
        print(f"corral: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except Exception as e:
        from corral.client import ClientError
        if isinstance(e, (ClientError, OSError)) and not (env is not None and env.debug):
            print(f"corral: {connect_error(e, env) or getattr(e, 'message', None) or e}", file=sys.stderr)
            return 125
        raise
    finally:
        if env is not None:
            env.close()


if __name__ == "__main__":
    sys.exit(main())
