from corral.oci import state
from corral.oci.errors import RuntimeFailure

HELP = "resume the processes of a paused container"


def configure(p):
    p.add_argument("container_id")


def run(ctx, args):
    c = state.load(ctx, args.container_id)
    status = c.status()
    if status != "paused":
        raise RuntimeFailure(f"cannot resume container {c.id}: it is {status}, not paused")
    c.cgroup_manager().thaw()
    return 0
