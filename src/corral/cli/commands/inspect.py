"""`corral inspect [--type container|image] NAME...`: JSON like docker's essentials."""

import json


def configure(p):
    p.add_argument("--type", choices=("container", "image"), default=None)
    p.add_argument("-f", "--format", default="", help="a template such as '{{.State.Status}}'")
    p.add_argument("names", nargs="+")


def _image(img):
    cfg = img.config()
    return {"Id": img.manifest()["config"]["digest"], "RepoTags": [img.name], "RepoDigests": [f"{img.name}@{img.digest}"],
            "Architecture": cfg.get("architecture", ""), "Os": cfg.get("os", ""), "Size": img.size(),
            "Config": cfg.get("config", {}), "RootFS": cfg.get("rootfs", {})}


def _lookup(value, path):
    for part in path:
        value = value.get(part, "") if isinstance(value, dict) else ""
    return value


def run(opts, env):
    import re
    import sys
    from corral.client import ClientError
    from corral.containers.api import ContainerError
    from corral.containers.image import ImageNotFound
    client = env.client()
    out, failed = [], False
    for name in opts.names:
        try:
            if opts.type != "image":
                try:
                    out.append(client.containers.get(name).inspect())
                    continue
                except ContainerError:
                    if opts.type == "container":
                        raise
            out.append(_image(client.images.get(name)))
        except (ContainerError, ImageNotFound, ClientError) as e:
            if getattr(e, "code", None) == "UNAVAILABLE":
                raise  # corrald does not answer: one line (main)
            print(f"corral: no such object: {name}", file=sys.stderr)
            failed = True
    if opts.format:
        for obj in out:
            print(re.sub(r"\{\{\s*\.([\w.]+)\s*\}\}",
                         lambda m: (lambda v: json.dumps(v) if isinstance(v, (dict, list)) else str(v))(
                             _lookup(obj, m.group(1).split("."))), opts.format))
    else:
        print(json.dumps(out, indent=4))
    return 1 if failed else 0
