"""`corral volume create|ls|rm|inspect|prune`: named volumes under the data root."""

import json
import sys


def configure(p):
    sub = p.add_subparsers(dest="action", metavar="COMMAND", required=True)
    c = sub.add_parser("create", help="Create a volume")
    c.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    c.add_argument("name", nargs="?")
    ls = sub.add_parser("ls", aliases=["list"], help="List volumes")
    ls.add_argument("-q", "--quiet", action="store_true", help="only names")
    rm = sub.add_parser("rm", aliases=["remove"], help="Remove volumes")
    rm.add_argument("-f", "--force", action="store_true", help="remove even if a container uses it")
    rm.add_argument("names", nargs="+")
    i = sub.add_parser("inspect", help="Show volumes as JSON")
    i.add_argument("names", nargs="+")
    pr = sub.add_parser("prune", help="Remove the volumes no container uses")
    pr.add_argument("-f", "--force", action="store_true", help="do not ask (accepted; corral never asks)")
    for s in (c, ls, rm, i, pr):
        s.error = p.error  # one-line usage errors, exit 125


def _labels(items):
    from corral.cli.errors import CLIError
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not k:
            raise CLIError(f"invalid label {item!r}: want KEY=VALUE")
        out[k] = v
    return out


def run(opts, env):
    from corral import volumes
    from corral.cli.errors import CLIError
    root, ns = env.data_root, env.namespace
    try:
        if opts.action == "create":
            print(volumes.create(root, ns, opts.name, _labels(opts.label)).name)
            return 0
        if opts.action in ("ls", "list"):
            vols = volumes.list_volumes(root, ns)
            if opts.quiet:
                for v in vols:
                    print(v.name)
            else:
                print(f"{'DRIVER':<10}VOLUME NAME")
                for v in vols:
                    print(f"{'local':<10}{v.name}")
            return 0
        if opts.action == "prune":
            removed = volumes.prune(root, ns, env.client())
            if removed:
                print("Deleted Volumes:")
                print("\n".join(removed))
            print(f"Total reclaimed volumes: {len(removed)}")
            return 0
    except volumes.VolumeError as e:
        raise CLIError(str(e)) from None
    failed = False
    found = []
    for name in opts.names:
        try:
            if opts.action == "inspect":
                found.append(volumes.get(root, ns, name).inspect())
            else:
                volumes.remove(root, ns, name, client=env.client(), force=opts.force)
                print(name)
        except volumes.VolumeError as e:
            print(f"corral: {e}", file=sys.stderr)
            failed = True
    if opts.action == "inspect":
        print(json.dumps(found, indent=4))
    return 1 if failed else 0
