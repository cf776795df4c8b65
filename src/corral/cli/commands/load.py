"""`corral load [-i FILE] [-q]`: load images from a docker-archive or an OCI archive (stdin by
default: `corral load < busybox.tar`); the daemon imports and unpacks them."""

import sys


def configure(p):
    p.add_argument("-i", "--input", default="", help="read from this file instead of stdin")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    p.add_argument("--platform", default="", help="os/arch[/variant] to unpack (default: this machine's)")


def run(opts, env):
    from corral.cli.errors import CLIError
    if opts.input:
        try:
            f = open(opts.input, "rb")
        except OSError as e:
            raise CLIError(f"load: cannot open {opts.input}: {e.strerror}") from None
    else:
        if sys.stdin.isatty():
            raise CLIError("load: stdin is a terminal; give an archive with -i FILE or `< FILE`")
        f = sys.stdin.buffer
    try:
        images = env.client().load(f, platform=opts.platform)
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    if not opts.quiet:
        from corral.images.reference import parse
        for name, digest in images:
            print(f"Loaded image: {parse(name).familiar()}" if name else f"Loaded image ID: {digest}")
    return 0
