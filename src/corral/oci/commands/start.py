from corral.oci import container

HELP = "start the process of a created container"


def configure(p):
    p.add_argument("container_id")


def run(ctx, args):
    container.start(ctx, args.container_id)
    container.fast_exit(0)
