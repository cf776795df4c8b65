"""`corral rmi [-f] IMAGE...`: remove image names (the content and snapshots go when nothing
references them). An image that a container uses is kept unless -f."""

import sys


def configure(p):
    p.add_argument("-f", "--force", action="store_true", help="remove even if containers use the image")
    p.add_argument("images", nargs="+")


def _users(client, name):
    return [c.id for c in client.list_containers() if c.image == name]


def run(opts, env):
    from corral.cli.commands._images import reference
    from corral.client import ClientError
    from corral.cli.errors import CLIError
    client = env.client()
    failed = False
    for name in opts.images:
        try:
            full = str(reference(name))
            try:
                client.image(full)
            except ClientError as e:
                if e.code == "NOT_FOUND":
                    raise CLIError(f"no such image: {name}") from None
                raise
            users = _users(client, full)
            if users and not opts.force:
                raise CLIError(f"conflict: unable to remove {name}: container {users[0][:12]} uses it "
                               "(remove the container, or use -f)")
            client.delete_image(full)
            print(f"Untagged: {reference(name).familiar()}")
        except (CLIError, ClientError) as e:
            if getattr(e, "code", None) == "UNAVAILABLE":
                raise  # corrald does not answer: one line (main)
            print(f"corral: {getattr(e, 'message', None) or e}", file=sys.stderr)
            failed = True
    return 1 if failed else 0
