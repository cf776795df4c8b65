from corral.oci import container

HELP = "send a signal (default TERM) to a container's init, or with --all to all its processes"


def configure(p):
    p.add_argument("-a", "--all", action="store_true", help="signal every process of the container")
    p.add_argument("container_id")
    p.add_argument("signal", nargs="?", default="TERM")


def run(ctx, args):
    with container.failing_as(f"signalling container {args.container_id}"):
        container.kill(ctx, args.container_id, container.parse_signal(args.signal), all_processes=args.all)
    return 0
