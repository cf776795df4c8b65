"""`corral tag SOURCE TARGET`: another name for an image."""


def configure(p):
    p.add_argument("source")
    p.add_argument("target")


def run(opts, env):
    from corral.cli.commands._images import reference
    from corral.cli.errors import CLIError
    from corral.containers.image import ImageNotFound
    reference(opts.source)
    reference(opts.target)
    try:
        env.client().images.tag(opts.source, opts.target)
    except ImageNotFound:
        raise CLIError(f"no such image: {opts.source}") from None
    return 0
