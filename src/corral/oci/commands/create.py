from corral.oci import container

HELP = "create a container from a bundle; its process waits until `start`"


def configure(p):
    p.add_argument("-b", "--bundle", default=".", help="bundle directory (default: the current one)")
    p.add_argument("--pid-file", default=None, help="write the container's init pid here")
    p.add_argument("--console-socket", default=None,
                   help="unix socket that receives the pty master of a terminal container")
    p.add_argument("--no-pivot", action="store_true", help="use MS_MOVE + chroot, not pivot_root")
    p.add_argument("--preserve-fds", type=int, default=0, help="pass N fds after stdio to the container")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted for runc compatibility")
    p.add_argument("container_id")


def run(ctx, args):
    with container.failing_as(f"creating container {args.container_id}"):
        container.create(ctx, args.container_id, args.bundle, pid_file=args.pid_file,
                         console_socket=args.console_socket, no_pivot=args.no_pivot,
                         preserve_fds=args.preserve_fds)
    container.fast_exit(0)
