"""`corral images [-q] [--digests] [--no-trunc] [--format TEMPLATE|json] [REPOSITORY[:TAG]]`:
list images. Template fields: {{.Repository}} {{.Tag}} {{.Digest}} {{.ID}} {{.CreatedAt}}
{{.CreatedSince}} {{.Size}} {{.Name}}."""

import calendar
import time


def configure(p):
    p.add_argument("-q", "--quiet", action="store_true", help="image ids only")
    p.add_argument("--digests", action="store_true", help="show the digests")
    p.add_argument("--no-trunc", action="store_true", help="full ids")
    p.add_argument("--format", default="", help="a template such as '{{.Repository}}:{{.Tag}}', or json")
    p.add_argument("filter", nargs="?", default="", help="only this repository (and tag)")


def _created(config):
    text = config.get("created") or ""
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def row(img, no_trunc):
    from corral.cli.commands._images import human
    from corral.cli.commands.ps import ago
    from corral.images.reference import Reference, parse
    try:
        ref = parse(img.name)
        repo, tag = Reference(ref.domain, ref.path).familiar(), ref.tag or "<none>"
    except ValueError:
        repo, tag = img.name, "<none>"
    try:
        config_digest = img.manifest()["config"]["digest"]
        config = img.config()
        size = human(img.size())
        created = _created(config)
    except Exception:       # content missing (e.g. another platform only): still list the name
        config_digest, size, created = img.digest, "N/A", None
    image_id = config_digest if no_trunc else config_digest.split(":", 1)[-1][:12]
    return {"Repository": repo, "Tag": tag, "Digest": img.digest, "ID": image_id,
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)) if created else "N/A",
            "CreatedSince": (ago(created) + " ago") if created else "N/A", "Size": size, "Name": img.name}


def run(opts, env):
    from corral.cli.commands.ps import print_rows
    images = env.client().images.list()
    rows = [row(i, opts.no_trunc) for i in sorted(images, key=lambda i: i.name)]
    if opts.filter:
        want = opts.filter
        rows = [r for r in rows if want in (r["Repository"], f"{r['Repository']}:{r['Tag']}", r["Name"])]
    if opts.quiet:
        for image_id in dict.fromkeys(r["ID"] for r in rows):
            print(image_id)
        return 0
    cols = [("REPOSITORY", "Repository"), ("TAG", "Tag")] + ([("DIGEST", "Digest")] if opts.digests else []) + \
        [("IMAGE ID", "ID"), ("CREATED", "CreatedSince"), ("SIZE", "Size")]
    print_rows(rows, opts.format, cols)
    return 0
