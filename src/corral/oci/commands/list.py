import json
import os

from corral.oci import state
from corral.oci.errors import RuntimeFailure

HELP = "list the containers under --root"


def configure(p):
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the IDs")


def run(ctx, args):
    rows = []
    for cid in state.list_ids(ctx):
        try:
            rows.append(state.load(ctx, cid).oci_state())
        except RuntimeFailure:
            continue  # removed while we were listing
    if args.quiet:
        for r in rows:
            print(r["id"])
    elif args.format == "json":
        print(json.dumps(rows))
    else:
        lines = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        lines += [(r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], r["owner"] or "root")
                  for r in rows]
        widths = [max(len(l[i]) for l in lines) for i in range(6)]
        for l in lines:
            print("   ".join(v.ljust(w) for v, w in zip(l, widths)).rstrip())
    return 0
