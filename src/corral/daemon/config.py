"""corrald's TOML configuration: defaults, loading and merging, `corrald config default`."""

import copy
import os
import tomllib

DEFAULT_CONFIG_PATH = "/etc/corral/config.toml"

DEFAULTS = {
    "version": 2,
    "root": "/var/lib/corral",
    "state": "/run/corral",
    "disabled_plugins": [],
    "required_plugins": [],
    "grpc": {
        "address": "/run/corral/corrald.sock",
        "uid": 0,
        "gid": 0,
        "max_recv_message_size": 16 * 1024 * 1024,
        "max_send_message_size": 16 * 1024 * 1024,
        "max_workers": 128,  # threads for ordinary calls
        # threads for calls that last as long as the client wants (Tasks.Wait, Events.Subscribe),
        # made as needed; beyond this many at once, further ones wait for one to end
        "max_stream_workers": 4096,
    },
    "ttrpc": {
        # empty: the gRPC address with ".ttrpc" appended, as containerd does
        "address": "",
    },
    "debug": {
        "level": "info",
        "format": "text",
    },
    "plugins": {},
}


class ConfigError(Exception):
    pass


def _merge(base, over, where=""):
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = value


def load(path=None, plugin_defaults=None):
    """Defaults, then each plugin's config section defaults, then the file (if any)."""
    cfg = copy.deepcopy(DEFAULTS)
    for pid, section in (plugin_defaults or {}).items():
        cfg["plugins"][pid] = copy.deepcopy(section)
    explicit = path is not None
    path = path or DEFAULT_CONFIG_PATH
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}; fix the file or pass --config") from None
        if data.get("version", 2) != 2:
            raise ConfigError(f"config {path}: unsupported version {data.get('version')!r}, expected 2")
        _merge(cfg, data)
    elif explicit:
        raise ConfigError(f"config file {path} does not exist; create it (`corrald config default`) or drop --config")
    return cfg


def ttrpc_address(cfg):
    return cfg["ttrpc"]["address"] or cfg["grpc"]["address"] + ".ttrpc"


def dump(cfg):
    import tomli_w
    return tomli_w.dumps(cfg)
