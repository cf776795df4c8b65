"""`corral cp CONTAINER:SRC HOST_DEST` / `corral cp HOST_SRC CONTAINER:DEST`: copy files in or
out of a container (running or not); nothing outside the container's root is written."""


def configure(p):
    p.add_argument("source")
    p.add_argument("dest")


def _split(arg):
    if ":" in arg and not arg.startswith(("/", ".")):
        ref, _, path = arg.partition(":")
        return ref, path
    return None, arg


def run(opts, env):
    from corral.cli.commands._common import get
    from corral.cli.errors import CLIError
    from corral.containers import copy
    src_ref, src = _split(opts.source)
    dst_ref, dst = _split(opts.dest)
    if bool(src_ref) == bool(dst_ref):
        raise CLIError("cp copies between a container and the host: exactly one of SOURCE and DEST is CONTAINER:PATH")
    ref = src_ref or dst_ref
    if not (src if src_ref else dst).startswith("/"):
        raise CLIError("the container path must be absolute")
    c = get(env, ref)
    try:
        with copy.container_root(c) as root:
            if src_ref:
                copy.copy_out(root, src, dst)
            else:
                copy.copy_in(root, src, dst)
    except copy.CopyError as e:
        raise CLIError(str(e), 1) from None
    except OSError as e:
        raise CLIError(f"cp failed: {e.strerror or e}: {e.filename or ''}".rstrip(": "), 1) from None
    return 0
