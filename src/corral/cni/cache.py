"""The result cache: one JSON file per (network, container, interface) under
`<data-root>/cni/results/`, written before ADD (so a half-done ADD can still be undone) and
completed with its result after. DEL takes config, capability args and prevResult from here,
so it undoes exactly what ADD did even if the network's conflist changed since."""

import glob
import json
import os

KIND = "corral-cni-cache-v1"


def results_dir(data_root):
    return os.path.join(data_root, "cni", "results")


def path_of(data_root, network, container_id, ifname):
    return os.path.join(results_dir(data_root), f"{network}-{container_id}-{ifname}.json")


def save(data_root, entry):
    d = results_dir(data_root)
    os.makedirs(d, mode=0o700, exist_ok=True)
    path = path_of(data_root, entry["networkName"], entry["containerId"], entry["ifName"])
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(entry, f)
    os.rename(tmp, path)


def load(data_root, network, container_id, ifname):
    return _read(path_of(data_root, network, container_id, ifname))


def remove(data_root, entry):
    try:
        os.unlink(path_of(data_root, entry["networkName"], entry["containerId"], entry["ifName"]))
    except FileNotFoundError:
        pass


def _read(path):
    try:
        with open(path) as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and entry.get("kind") == KIND else None


def entries(data_root, container_id=None):
    """Every cached entry (of one container when container_id is given)."""
    pattern = f"*-{container_id}-*.json" if container_id else "*.json"
    out = []
    for path in sorted(glob.glob(os.path.join(results_dir(data_root), pattern))):
        entry = _read(path)
        if entry and (container_id is None or entry.get("containerId") == container_id):
            out.append(entry)
    return out


def published(data_root, except_id=None):
    """Host ports published by the attached containers (those with a cache entry: attached
    now, or being attached), but `except_id`: port dicts with the container's name added."""
    out = []
    for e in entries(data_root):
        if e.get("containerId") == except_id:
            continue
        for p in (e.get("capabilityArgs") or {}).get("portMappings", []):
            out.append(dict(p, container=e.get("name") or (e.get("containerId") or "")[:12]))
    return out
