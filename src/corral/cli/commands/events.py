"""`corral events [--filter F]`: the daemon's events as they happen (one line each, or JSON)."""


def configure(p):
    p.add_argument("--filter", "-f", action="append", default=[], help="containerd event filter, e.g. topic~=/tasks/")
    p.add_argument("--format", default="", help="json for one JSON object per line")


def _detail(event):
    """The event's fields as compact JSON ("" for a type we do not know)."""
    import importlib
    import json
    from google.protobuf import json_format, symbol_database
    for mod in ("container", "task", "image", "snapshot", "namespace", "content"):
        importlib.import_module(f"corral.api.containerd.events.{mod}_pb2")
    try:
        cls = symbol_database.Default().GetSymbol(event.type_url.rsplit("/", 1)[-1])
        return json.dumps(json_format.MessageToDict(cls.FromString(event.value)), separators=(",", ":"))
    except Exception:
        return ""


def run(opts, env):
    import json
    import time
    sub = env.client().events(*opts.filter)
    try:
        for ev in sub:
            detail = _detail(ev.event)
            ts = ev.timestamp.seconds + ev.timestamp.nanos / 1e9
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{ev.timestamp.nanos:09d}Z"
            if opts.format == "json":
                print(json.dumps({"time": when, "namespace": ev.namespace, "topic": ev.topic,
                                  "type": ev.event.type_url}), flush=True)
            else:
                print(f"{when} {ev.namespace} {ev.topic} {detail}".rstrip(), flush=True)
    except KeyboardInterrupt:
        sub.cancel()
        return 0
    return 0
