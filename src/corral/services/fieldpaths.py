"""Field-mask helpers for Update calls: "labels" replaces all labels, "labels.KEY" sets or
removes (when absent from the request) one label."""

from .errors import InvalidArgument

MAX_LABEL = 4096


def check_labels(labels):
    for k, v in (labels or {}).items():
        if not k:
            raise InvalidArgument("label key must not be empty")
        if len(k) + len(v) > MAX_LABEL:
            raise InvalidArgument(f"label {k[:40]!r}: key and value exceed {MAX_LABEL} bytes")
    return labels


def update_labels(current, labels, paths, prefix="labels"):
    """The new label map for an update of `labels` with field `paths` (None: replace all)."""
    check_labels(labels)
    if not paths:
        return dict(labels)
    new = dict(current or {})
    for p in paths:
        if p == prefix:
            new = dict(labels)
        elif p.startswith(prefix + "."):
            key = p[len(prefix) + 1:]
            if key in labels:
                new[key] = labels[key]
            else:
                new.pop(key, None)
    return new
