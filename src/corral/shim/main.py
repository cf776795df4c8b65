"""The command line containerd runs: `containerd-shim-corral-v2 [flags] start|delete`.

`start` (bundle as working directory) starts or reuses the long-lived shim server for the
container's group, writes the bundle's `address` file and prints the socket address; `delete`
cleans up after a dead shim and prints a DeleteResponse. With no subcommand the process is the
server itself (used by `start`). Only the server imports asyncio: the subcommands stay lean.
"""

import os
import sys

VERSION = "0.1.0"
VALUE_FLAGS = ("namespace", "address", "publish-binary", "id", "bundle", "socket")
BOOL_FLAGS = ("debug", "v", "version")


class Flags:
    def __init__(self):
        self.namespace = ""
        self.address = ""
        self.publish_binary = ""
        self.id = ""
        self.bundle = ""
        self.socket = ""
        self.debug = False
        self.version = False
        self.action = ""


def parse(argv):
    """Go flag-package syntax: -name value, --name value, -name=value, boolean -name."""
    flags = Flags()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            flags.action = arg
            i += 1
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name in VALUE_FLAGS:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise SystemExit(f"containerd-shim-corral-v2: flag needs an argument: -{name}")
                value = argv[i]
            setattr(flags, name.replace("-", "_"), value)
        elif name in BOOL_FLAGS:
            on = value.lower() not in ("false", "0") if eq else True
            if name == "debug":
                flags.debug = on
            else:
                flags.version = on
        else:
            raise SystemExit(f"containerd-shim-corral-v2: flag provided but not defined: -{name}")
        i += 1
    flags.namespace = flags.namespace or os.environ.get("NAMESPACE", "")
    flags.address = flags.address or os.environ.get("GRPC_ADDRESS", "")
    return flags


def main():
    """The command: `start` and `delete` run on containerd's critical path for every container,
    so leave without the interpreter's teardown (several ms)."""
    code = dispatch(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def dispatch(argv):
    flags = parse(argv)
    if flags.version:
        print(f"containerd-shim-corral-v2:\n  Version:  {VERSION}\n  Runtime:  io.containerd.corral.v2")
        return 0
    if flags.action in ("start", "delete") and not flags.namespace:
        print("containerd-shim-corral-v2: -namespace is required", file=sys.stderr)
        return 1
    if flags.action in ("start", "delete"):
        from corral.shim import start

        return getattr(start, flags.action)(flags)
    if flags.action == "":
        from corral.shim.server import serve_from_env

        return serve_from_env(flags)
    print(f"containerd-shim-corral-v2: unknown action {flags.action!r} (want start or delete)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
