import json
import subprocess

from corral.oci import state
from corral.oci.errors import RuntimeFailure

HELP = "list the processes of a container (ps arguments after the ID, default -ef)"


def configure(p):
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.add_argument("container_id")
    p.add_argument("ps_args", nargs="...",  # argparse.REMAINDER
                   help="arguments for ps (default -ef)")


def run(ctx, args):
    c = state.load(ctx, args.container_id)
    status = c.status()
    if status in ("stopped", "creating"):
        raise RuntimeFailure(f"cannot list the processes of container {c.id}: it is {status}")
    mgr = c.cgroup_manager()
    if mgr is None:
        raise RuntimeFailure(f"cannot list the processes of container {c.id}: it has no cgroup")
    pids = mgr.pids()
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    ps_args = args.ps_args[1:] if args.ps_args[:1] == ["--"] else args.ps_args
    ps_args = ps_args or ["-ef"]
    try:
        out = subprocess.run(["ps"] + ps_args, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise RuntimeFailure("ps: the host has no ps command; install procps or use --format json") from None
    if out.returncode != 0:
        raise RuntimeFailure(f"ps {' '.join(ps_args)} failed: {out.stderr.strip() or out.returncode}")
    print(filter_table(out.stdout, set(pids)), end="")
    return 0


def filter_table(text, pids):
    """The header and the rows of `ps` output whose PID column is one of pids."""
    lines = text.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    if "PID" not in header:
        raise RuntimeFailure("ps: its output has no PID column; include pid in the -o format")
    col = header.index("PID")
    keep = [lines[0]]
    for line in lines[1:]:
        fields = line.split(None, col + 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            keep.append(line)
    return "\n".join(keep) + "\n"
