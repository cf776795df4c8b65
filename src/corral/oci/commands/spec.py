import json
import os

from corral.oci.errors import RuntimeFailure

HELP = "write a default config.json into the bundle directory"


def configure(p):
    p.add_argument("-b", "--bundle", default=".", help="bundle directory")
    p.add_argument("--rootless", action="store_true", help="a spec for a rootless container")


def run(ctx, args):
    from corral.oci.specgen import default_spec

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise RuntimeFailure(f"spec: {path} already exists; remove it first")
    try:
        with open(path, "x") as f:
            json.dump(default_spec(rootless=args.rootless), f, indent="\t")
            f.write("\n")
    except OSError as e:
        raise RuntimeFailure(f"spec: cannot write {path}: {e.strerror}")
    return 0
