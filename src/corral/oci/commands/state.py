from corral.oci import jsonfast as json  # json.dumps without importing json (re)

from corral.oci import state

HELP = "print a container's state as JSON"


def configure(p):
    p.add_argument("container_id")


def run(ctx, args):
    print(json.dumps(state.load(ctx, args.container_id).oci_state(), indent=2))
    return 0
