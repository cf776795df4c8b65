"""`corral pull [-q] [--platform OS/ARCH] [--plain-http] [--insecure-registry] NAME[:TAG|@DIGEST]`:
pull an image into corrald (fetched and unpacked by the daemon) with a progress bar per layer
(plain lines when stdout is not a terminal)."""


def configure(p):
    from corral.cli.commands._images import registry_flags
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image's name")
    p.add_argument("--platform", default="", help="os/arch[/variant] to pull (default: this machine's)")
    registry_flags(p)
    p.add_argument("name")


def run(opts, env):
    from corral.cli.commands._images import progress_display, reference
    ref = reference(opts.name)
    show = progress_display(opts.quiet)
    fetched = []
    if show is not None:
        inner = show

        def show(msg):
            if msg.status == "downloaded":
                fetched.append(msg.digest)
            inner(msg)
        show.close = inner.close
        if not ref.digest and ":" not in opts.name.rsplit("/", 1)[-1]:
            print(f"Using default tag: {ref.tag}")
        print(f"{ref.tag or ref.digest}: Pulling from {ref.path if ref.domain == 'docker.io' else ref.repository}")
    try:
        r = env.client().pull(str(ref), progress=show, platform=opts.platform, plain_http=opts.plain_http,
                              insecure=opts.insecure_registry)
    finally:
        if show is not None:
            show.close()
    if show is not None:
        print(f"Digest: {r['digest']}")
        print(f"Status: {'Downloaded newer image' if fetched else 'Image is up to date'} for {ref.familiar()}")
    print(r["name"])
    return 0
