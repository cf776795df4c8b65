"""Running CNI plugins (spec 1.0): one executable per plugin type, the operation in CNI_COMMAND
and friends, the network config on stdin, a result or an error object on stdout.

A conflist is a chain: ADD runs the plugins in order, each given the previous one's result as
`prevResult`; DEL runs them in reverse with the cached ADD result; CHECK in order with it.
Capabilities a plugin declares (`"capabilities": {"portMappings": true}`) get their values in
`runtimeConfig`."""

import json
import os
import subprocess
from dataclasses import dataclass, field

from corral.cni.errors import NetworkError

PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PLUGIN_TIMEOUT = 60


class PluginError(NetworkError):
    """A plugin failed: `code` is the CNI error code (0 when it printed no error object)."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


@dataclass
class RuntimeConf:
    container_id: str
    netns: str                  # path of the network namespace; "" when it is gone (DEL)
    ifname: str = "eth0"
    args: list = field(default_factory=list)             # CNI_ARGS as [(key, value)]
    capability_args: dict = field(default_factory=dict)  # e.g. {"portMappings": [...]}


def plugin_dirs():
    extra = os.environ.get("CNI_PATH")
    dirs = [d for d in extra.split(":") if d] if extra else []
    return dirs + [d for d in PLUGIN_DIRS if d not in dirs]


def find_plugin(plugin_type, dirs=None):
    for d in dirs or plugin_dirs():
        path = os.path.join(d, plugin_type)
        if os.access(path, os.X_OK) and os.path.isfile(path):
            return path
    raise NetworkError(f"CNI plugin {plugin_type!r} not found in {':'.join(dirs or plugin_dirs())} "
                       "(install containernetworking-plugins)")


def plugin_config(conflist, plugin, rt, prev_result=None):
    """The JSON a plugin of the chain gets on stdin."""
    conf = dict(plugin)
    conf["cniVersion"] = conflist["cniVersion"]
    conf["name"] = conflist["name"]
    caps = plugin.get("capabilities") or {}
    runtime = {k: v for k, v in rt.capability_args.items() if caps.get(k)}
    if runtime:
        conf["runtimeConfig"] = runtime
    else:
        conf.pop("runtimeConfig", None)
    if prev_result is not None:
        conf["prevResult"] = prev_result
    else:
        conf.pop("prevResult", None)
    return conf


def environment(command, rt, dirs):
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": rt.container_id,
        "CNI_NETNS": rt.netns,
        "CNI_IFNAME": rt.ifname,
        "CNI_ARGS": ";".join(f"{k}={v}" for k, v in rt.args),
        "CNI_PATH": ":".join(dirs),
        # plugins run iptables and ip from PATH (hooks start with an empty environment)
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
    }


def exec_plugin(command, conf, rt, dirs=None):
    """Run one plugin; its parsed result (ADD), None (DEL/CHECK), or PluginError."""
    dirs = dirs or plugin_dirs()
    path = find_plugin(conf["type"], dirs)
    what = f"CNI plugin {conf['type']} {command} on network {conf.get('name')}"
    try:
        res = subprocess.run([path], input=json.dumps(conf).encode(), capture_output=True,
                             env=environment(command, rt, dirs), timeout=PLUGIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise PluginError(f"{what} timed out after {PLUGIN_TIMEOUT}s") from None
    except OSError as e:
        raise PluginError(f"{what} could not run: {e.strerror}") from None
    out = res.stdout.decode(errors="replace").strip()
    if res.returncode != 0:
        raise _error(what, res.returncode, out, res.stderr.decode(errors="replace"))
    if command != "ADD":
        return None
    try:
        result = json.loads(out)
    except ValueError:
        raise PluginError(f"{what} printed no JSON result: {out[:200]!r}") from None
    if not isinstance(result, dict):
        raise PluginError(f"{what} printed a result that is not an object")
    return result


def _error(what, status, out, err):
    try:
        obj = json.loads(out)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "msg" in obj:
        msg = obj["msg"]
        if obj.get("details"):
            msg += f": {obj['details']}"
        return PluginError(f"{what} failed: {msg}".replace("\n", " "), obj.get("code", 0))
    lines = [line for line in (err or out).strip().splitlines() if line.strip()]
    detail = lines[-1] if lines else f"exit status {status}"
    return PluginError(f"{what} failed: {detail}")


def add(conflist, rt, dirs=None):
    """ADD the chain; the final result."""
    result = None
    for plugin in conflist["plugins"]:
        result = exec_plugin("ADD", plugin_config(conflist, plugin, rt, result), rt, dirs)
    return result


def delete(conflist, rt, prev_result=None, dirs=None):
    """DEL the chain in reverse order. Every plugin runs even if one fails (so that what the
    others made is released); the first failure is raised at the end."""
    first = None
    for plugin in reversed(conflist["plugins"]):
        try:
            exec_plugin("DEL", plugin_config(conflist, plugin, rt, prev_result), rt, dirs)
        except NetworkError as e:
            first = first or e
    if first is not None:
        raise first


def check(conflist, rt, prev_result, dirs=None):
    """CHECK the chain against the cached ADD result (CNI 0.4.0 and later)."""
    if conflist["cniVersion"] in ("0.3.0", "0.3.1"):
        raise NetworkError(f"network {conflist['name']}: CHECK needs cniVersion 0.4.0 or later")
    if conflist.get("disableCheck"):
        return
    if prev_result is None:
        raise NetworkError(f"network {conflist['name']}: no cached result for container {rt.container_id} to check")
    for plugin in conflist["plugins"]:
        exec_plugin("CHECK", plugin_config(conflist, plugin, rt, prev_result), rt, dirs)


def ips(result):
    """The addresses (without prefix) of a result, container interfaces first."""
    if not result:
        return []
    ifaces = result.get("interfaces") or []
    def in_container(ip):
        i = ip.get("interface")
        return i is not None and i < len(ifaces) and bool(ifaces[i].get("sandbox"))
    entries = sorted(result.get("ips") or [], key=lambda ip: not in_container(ip))
    return [ip["address"].split("/")[0] for ip in entries if ip.get("address")]
