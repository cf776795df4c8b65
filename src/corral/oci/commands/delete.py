from corral.oci import container

HELP = "delete a stopped container (--force: kill it first)"


def configure(p):
    p.add_argument("-f", "--force", action="store_true", help="kill a running container and delete it")
    p.add_argument("container_id")


def run(ctx, args):
    with container.failing_as(f"deleting container {args.container_id}"):
        container.delete(ctx, args.container_id, force=args.force)
    container.fast_exit(0)
