"""Runtime options: which OCI runtime binary and state root to use.

containerd sends them as a typed Any, on the stdin of `start` and in Create:
containerd.runc.v1.Options (binary_name, root, systemd_cgroup), or runtimeoptions.v1.Options
(what `ctr run --runtime-config-path FILE` sends) whose TOML file may set BinaryName, Root and
SystemdCgroup. `start` saves the Any in the bundle so `delete` after a dead shim uses the same one.
"""

import os

DEFAULT_BINARY = "corral-runc"
SAVED = "corral-options.pb"


def runtime_root(namespace, root=""):
    return os.path.join(root or "/run/containerd/runc", namespace)


def from_any(any_msg):
    """{'binary_name', 'root', 'systemd_cgroup'} from an Any (or None): empty values mean defaults."""
    opts = {"binary_name": "", "root": "", "systemd_cgroup": False}
    if any_msg is None or not any_msg.type_url:
        return opts
    name = any_msg.type_url.rsplit("/", 1)[-1]
    if name in ("containerd.runc.v1.Options", "io.containerd.runc.v1.Options"):
        from corral.api.containerd.runc.options.oci_pb2 import Options

        o = Options.FromString(any_msg.value)
        opts.update(binary_name=o.binary_name, root=o.root, systemd_cgroup=o.systemd_cgroup)
    elif name == "runtimeoptions.v1.Options":
        from corral.api.runtimeoptions.v1.api_pb2 import Options

        o = Options.FromString(any_msg.value)
        if o.config_path:
            import tomllib

            try:
                with open(o.config_path, "rb") as f:
                    conf = tomllib.load(f)
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot read runtime config {o.config_path}: {e}") from None
            opts.update(binary_name=conf.get("BinaryName", conf.get("binary_name", "")),
                        root=conf.get("Root", conf.get("root", "")),
                        systemd_cgroup=bool(conf.get("SystemdCgroup", conf.get("systemd_cgroup", False))))
    return opts


def save_raw(bundle, data):
    """Keep the serialized Any that `start` got on stdin (parsed later, by the server or `delete`)."""
    if data:
        with open(os.path.join(bundle, SAVED), "wb") as f:
            f.write(data)


def load(bundle, create_any=None):
    """The options for a container: the Create request's, else the ones `start` saved."""
    if create_any is not None and create_any.type_url:
        return from_any(create_any)
    try:
        with open(os.path.join(bundle, SAVED), "rb") as f:
            data = f.read()
    except OSError:
        data = b""
    if not data:
        return from_any(None)
    from google.protobuf.any_pb2 import Any

    return from_any(Any.FromString(data))


RESOLVED = "corral-runtime"


def save_resolved(bundle, binary, root):
    """The runtime binary and root a container uses, for a quick `delete` (no protobuf, no json:
    two lines)."""
    with open(os.path.join(bundle, RESOLVED), "w") as f:
        f.write(f"{binary}\n{root}\n")


def load_resolved(bundle, namespace):
    """(binary, root) saved at Create, else worked out from the options `start` saved."""
    try:
        with open(os.path.join(bundle, RESOLVED)) as f:
            lines = f.read().split("\n")
        if len(lines) == 3 and lines[0] and lines[1] and not lines[2]:
            return lines[0], lines[1]
    except OSError:
        pass
    opts = load(bundle)
    return opts["binary_name"] or DEFAULT_BINARY, runtime_root(namespace, opts["root"])
