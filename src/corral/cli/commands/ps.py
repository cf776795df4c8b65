"""`corral ps [-a] [-q] [--format TEMPLATE|json]`: list containers (running ones unless -a).

--format takes a go-template-like string with fields {{.ID}} {{.Image}} {{.Command}}
{{.CreatedAt}} {{.RunningFor}} {{.Status}} {{.State}} {{.Ports}} {{.Names}} {{.Labels}}, or
`json` (one JSON object per line)."""

import json
import re
import time


def configure(p):
    p.add_argument("-a", "--all", action="store_true", help="all containers (default: running ones)")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    p.add_argument("--format", default="", help="a template such as '{{.ID}} {{.Names}}', or json")


def ago(seconds):
    d = max(0, time.time() - seconds)
    for unit, n in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if d >= 2 * n:
            return f"{int(d // n)} {unit}"
    return "About a minute" if d >= 60 else f"{int(d)} seconds"


def row(c, no_trunc=False):
    from corral.images.reference import parse
    t = c.task()
    status = c.status
    created = c.record.created_at.seconds
    if status == "running":
        text = f"Up {ago(created if t is None else created)}"
    elif status == "exited":
        text = f"Exited ({c.exit_code}) {ago(c.finished_at)} ago"
    elif status == "paused":
        text = "Up (Paused)"
    else:
        text = "Created"
    args = c.spec().get("process", {}).get("args", [])
    cmd = " ".join(args)
    if not no_trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    try:
        image = parse(c.image).familiar()
    except ValueError:
        image = c.image
    ports = ", ".join(f"{p.get('hostIP') or '0.0.0.0'}:{p['hostPort']}->{p['containerPort']}/{p.get('protocol', 'tcp')}"
                      for p in json.loads(c.labels.get("corral/ports", "[]")))
    labels = ",".join(f"{k}={v}" for k, v in sorted(c.labels.items()) if not k.startswith(("corral/", "containerd.io/")))
    return {"ID": c.id if no_trunc else c.id[:12], "Image": image, "Command": f'"{cmd}"',
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
            "RunningFor": ago(created) + " ago", "Status": text, "State": status, "Ports": ports,
            "Names": c.name, "Labels": labels}


def render(template, fields):
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    if template.startswith("table "):
        template = template[len("table "):]

    def field(m):
        name = m.group(1)
        if name not in fields:
            from corral.cli.errors import CLIError
            raise CLIError(f"--format: unknown field .{name}; known: {', '.join('.' + k for k in fields)}")
        return str(fields[name])
    return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", field, template)


def run(opts, env):
    cs = env.client().containers.list(all=opts.all)
    if opts.quiet:
        for c in cs:
            print(c.id if opts.no_trunc else c.id[:12])
        return 0
    rows = [row(c, opts.no_trunc) for c in cs]
    cols = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("CREATED", "RunningFor"),
            ("STATUS", "Status"), ("PORTS", "Ports"), ("NAMES", "Names")]
    print_rows(rows, opts.format, cols)
    return 0


def print_rows(rows, fmt, cols):
    """Rows (dicts) as JSON lines (`json`), through a template, or as a table of cols
    [(heading, field)]: the one output convention of ps, images and friends."""
    if fmt in ("json", "{{json .}}"):
        for r in rows:
            print(json.dumps(r))
        return
    if fmt:
        for r in rows:
            print(render(fmt, r))
        return
    widths = [max([len(h)] + [len(str(r[k])) for r in rows]) for h, k in cols]
    print("   ".join(h.ljust(w) for (h, _), w in zip(cols, widths)).rstrip())
    for r in rows:
        print("   ".join(str(r[k]).ljust(w) for (_, k), w in zip(cols, widths)).rstrip())
