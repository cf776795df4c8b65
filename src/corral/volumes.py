"""Named volumes under corral's data root, and the OCI mounts for `-v` / `--mount` requests.

Layout:  <data-root>/volumes/<namespace>/<name>/_data        what the container sees
         <data-root>/volumes/<namespace>/<name>/volume.json  {"name", "created", "labels"}

A volume is in use while a container record of its namespace names it in its `corral/volumes`
label (JSON list of {"name", "target", "readonly"}), whether or not the container runs.
"""

import json
import os
import re
import shutil
import time

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
VOLUMES_LABEL = "corral/volumes"
NAME_LABEL = "corral/name"


class VolumeError(Exception):
    pass


class VolumeNotFound(VolumeError):
    pass


class VolumeInUse(VolumeError):
    pass


def check_name(name):
    if not NAME_RE.fullmatch(name or "") or len(name) > 255:
        raise VolumeError(f"invalid volume name {name!r}: use letters, digits and _ . - "
                          "(starting with a letter or digit)")


def _ns_dir(data_root, namespace):
    return os.path.join(data_root, "volumes", namespace)


class Volume:
    def __init__(self, data_root, namespace, name, meta):
        self.namespace = namespace
        self.name = name
        self.dir = os.path.join(_ns_dir(data_root, namespace), name)
        self.mountpoint = os.path.join(self.dir, "_data")
        self.created = meta.get("created", "")
        self.labels = dict(meta.get("labels") or {})

    def inspect(self):
        """docker's `volume inspect` fields."""
        return {"CreatedAt": self.created, "Driver": "local", "Labels": self.labels,
                "Mountpoint": self.mountpoint, "Name": self.name, "Options": {}, "Scope": "local"}


def _load(data_root, namespace, name):
    d = os.path.join(_ns_dir(data_root, namespace), name)
    try:
        with open(os.path.join(d, "volume.json")) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise VolumeNotFound(f"no such volume: {name}") from None
    except ValueError:
        meta = {}  # damaged metadata: the data is still the volume's
    return Volume(data_root, namespace, name, meta)


def get(data_root, namespace, name):
    check_name(name)
    return _load(data_root, namespace, name)


def create(data_root, namespace, name=None, labels=None):
    """A new volume (a random name when none is given); an existing one of that name is
    returned as it is, as docker does."""
    if name is None:
        name = os.urandom(32).hex()
    check_name(name)
    base = _ns_dir(data_root, namespace)
    final = os.path.join(base, name)
    if os.path.exists(os.path.join(final, "volume.json")):
        return _load(data_root, namespace, name)
    os.makedirs(base, mode=0o711, exist_ok=True)
    # made complete beside its final place, then renamed: a volume is there whole or not at all
    tmp = os.path.join(base, f".tmp-{name}-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        os.mkdir(tmp, 0o711)
        os.mkdir(os.path.join(tmp, "_data"), 0o755)
        now = time.time()
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + "Z"
        with open(os.path.join(tmp, "volume.json"), "w") as f:
            json.dump({"name": name, "created": created, "labels": dict(labels or {})}, f)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.exists(os.path.join(final, "volume.json")):
                raise
            # made at the same time by another caller: theirs is the volume
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _load(data_root, namespace, name)


def list_volumes(data_root, namespace):
    try:
        names = sorted(os.listdir(_ns_dir(data_root, namespace)))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if NAME_RE.fullmatch(name):
            try:
                out.append(_load(data_root, namespace, name))
            except VolumeNotFound:
                continue
    return out


def users(client, name):
    """Names of the containers (of the client's namespace) whose records use the volume."""
    found = []
    for rec in client.list_containers():
        try:
            used = json.loads(rec.labels.get(VOLUMES_LABEL, "[]"))
        except ValueError:
            continue
        if any(isinstance(v, dict) and v.get("name") == name for v in used):
            found.append(rec.labels.get(NAME_LABEL, rec.id[:12]))
    return found


def remove(data_root, namespace, name, *, client=None, force=False):
    """Remove a volume and its data. With a client, a volume a container uses is refused
    unless force."""
    vol = get(data_root, namespace, name)
    if client is not None and not force:
        using = users(client, name)
        if using:
            raise VolumeInUse(f"volume {name} is in use by container(s) {', '.join(sorted(using))}: "
                              "remove them first or use --force")
    # renamed away first, so a half-removed volume is never seen under its name
    trash = os.path.join(os.path.dirname(vol.dir), f".rm-{name}-{os.urandom(4).hex()}")
    os.rename(vol.dir, trash)
    shutil.rmtree(trash, ignore_errors=True)


def unused(data_root, namespace, client):
    used = set()
    for rec in client.list_containers():
        try:
            used.update(v.get("name") for v in json.loads(rec.labels.get(VOLUMES_LABEL, "[]")) if isinstance(v, dict))
        except ValueError:
            continue
    return [v for v in list_volumes(data_root, namespace) if v.name not in used]


def prune(data_root, namespace, client):
    """Remove every volume no container uses; returns their names (for `system prune`)."""
    removed = []
    for v in unused(data_root, namespace, client):
        try:
            remove(data_root, namespace, v.name, client=client)
            removed.append(v.name)
        except (VolumeError, OSError):
            continue
    return removed


def mount_for(request, *, data_root, namespace):
    """The OCI mount for one -v/--mount request (an object with type, target, source, readonly
    and options, as corral.containers.spec.Mount): a named volume (created on first use), a
    bind of a host path that must exist, or a tmpfs."""
    kind = request.type
    ro = "ro" if request.readonly else "rw"
    if kind == "volume":
        vol = create(data_root, namespace, request.source)
        return {"destination": request.target, "type": "bind", "source": vol.mountpoint,
                "options": ["rbind", "rprivate", ro]}
    if kind == "bind":
        src = request.source
        if not os.path.isabs(src):
            raise VolumeError(f"bind source {src!r} must be an absolute path")
        if not os.path.exists(src):
            raise VolumeError(f"bind source path does not exist: {src}")
        return {"destination": request.target, "type": "bind", "source": src,
                "options": ["rbind", "rprivate", ro]}
    if kind == "tmpfs":
        return {"destination": request.target, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", ro] + list(getattr(request, "options", []) or [])}
    raise VolumeError(f"unknown mount type {kind!r}: want volume, bind or tmpfs")


class Volumes:
    """`client.volumes`: the named volumes of the client's namespace under its data root.

        vol = client.volumes.create("data", labels={"app": "db"})
        print(vol.name, vol.mountpoint)
        client.volumes.remove("data")     # refused while a container uses it (force=True: anyway)
    """

    def __init__(self, client, data_root=None):
        self.client = client
        self.data_root = data_root or getattr(client, "data_root", None) or "/var/lib/corral"

    def create(self, name=None, labels=None):
        return create(self.data_root, self.client.namespace, name, labels)

    def get(self, name):
        return get(self.data_root, self.client.namespace, name)

    def list(self):
        return list_volumes(self.data_root, self.client.namespace)

    def remove(self, name, force=False):
        remove(self.data_root, self.client.namespace, name, client=self.client, force=force)

    def prune(self):
        return prune(self.data_root, self.client.namespace, self.client)
