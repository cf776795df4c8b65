from corral.oci import state
from corral.oci.errors import RuntimeFailure

HELP = "suspend every process of a container (cgroup freezer)"


def configure(p):
    p.add_argument("container_id")


def run(ctx, args):
    c = state.load(ctx, args.container_id)
    status = c.status()
    if status != "running":
        raise RuntimeFailure(f"cannot pause container {c.id}: it is {status}, not running")
    mgr = c.cgroup_manager()
    if mgr is None:
        raise RuntimeFailure(f"cannot pause container {c.id}: it has no cgroup")
    mgr.freeze()
    return 0
