"""`corral push [-q] [--plain-http] [--insecure-registry] NAME[:TAG]`: push a local image to
its registry (the daemon uploads it; blobs the registry has are skipped)."""


def configure(p):
    from corral.cli.commands._images import registry_flags
    p.add_argument("-q", "--quiet", action="store_true", help="print only the pushed digest")
    registry_flags(p)
    p.add_argument("name")


def run(opts, env):
    from corral.cli.commands._images import progress_display, reference
    ref = reference(opts.name)
    show = progress_display(opts.quiet)
    if show is not None:
        print(f"The push refers to repository [{ref.repository}]")
    try:
        r = env.client().push(str(ref), progress=show, plain_http=opts.plain_http, insecure=opts.insecure_registry)
    finally:
        if show is not None:
            show.close()
    if opts.quiet:
        print(r["digest"])
    else:
        print(f"{ref.tag or 'latest'}: digest: {r['digest']}")
    return 0
