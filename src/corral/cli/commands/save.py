"""`corral save [-o FILE] [--format docker|oci] IMAGE...`: write images as a docker-archive
(default, as `docker save`) or an OCI archive, to stdout or a file."""

import sys


def configure(p):
    p.add_argument("-o", "--output", default="", help="write to this file instead of stdout")
    p.add_argument("--format", default="docker", choices=["docker", "oci"], help="archive format")
    p.add_argument("--platform", default="", help="os/arch[/variant] (docker format; default: this machine's)")
    p.add_argument("images", nargs="+")


def run(opts, env):
    from corral.cli.commands._images import reference
    from corral.cli.errors import CLIError
    names = [reference(n) and n for n in opts.images]
    if opts.output:
        env.client().save(names, opts.output, format=opts.format, platform=opts.platform)
        return 0
    if sys.stdout.isatty():
        raise CLIError("save: refusing to write an archive to a terminal; use -o FILE or redirect stdout")
    env.client().save(names, sys.stdout.buffer, format=opts.format, platform=opts.platform)
    sys.stdout.buffer.flush()
    return 0
