from corral.oci import container

HELP = "start the process of a created container"


def configure(p):
    p.add_argument("container_id")


def run(ctx, args):
    with container.failing_as(f"starting container {args.container_id}"):
        container.start(ctx, args.container_id)
    container.fast_exit(0)
