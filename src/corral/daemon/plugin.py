"""The plugin registry: each plugin has a type, an id, the types it requires and a config
section; plugins start in dependency order. A plugin that fails (or is disabled, or asks to be
skipped) is recorded with its error, shown by introspection, and only takes down the plugins
that require its type (or the daemon, if it is listed in required_plugins)."""

import os


class SkipPlugin(Exception):
    """Raised by an init function when the plugin does not apply here (not an error)."""


# introspection reports skipped plugins with this text, which ctr shows as "skip"
SKIP_MESSAGE = "skip plugin"


class Registration:
    def __init__(self, type, id, init, requires=(), config=None):
        self.type = type
        self.id = id
        self.init = init
        self.requires = list(requires)  # plugin types; "*" means every other plugin
        self.config = config or {}

    @property
    def uri(self):
        return f"{self.type}.{self.id}"


class Plugin:
    """One registration's outcome."""

    def __init__(self, reg):
        self.reg = reg
        self.instance = None
        self.error = None  # exception, None when it started
        self.skipped = False
        self.exports = {}
        self.capabilities = []


class InitContext:
    def __init__(self, registry, plugin, cfg):
        self.registry = registry
        self.plugin = plugin
        self.daemon_config = cfg
        self.config = cfg.get("plugins", {}).get(plugin.reg.uri, {})
        self.root = os.path.join(cfg["root"], plugin.reg.uri)
        self.state = os.path.join(cfg["state"], plugin.reg.uri)
        self.exports = plugin.exports

    def get(self, type):
        """The first started instance of a type; raises LookupError when none started."""
        for p in self.registry.plugins:
            if p.reg.type == type and p.instance is not None:
                return p.instance
        raise LookupError(f"no plugin of type {type} is available")

    def get_by_type(self, type):
        return {p.reg.id: p.instance for p in self.registry.plugins
                if p.reg.type == type and p.instance is not None}


def sort_registrations(regs):
    """Dependency order (by required types), stable in registration order otherwise."""
    by_type = {}
    for r in regs:
        by_type.setdefault(r.type, []).append(r)
    ordered, state = [], {}

    def visit(r):
        mark = state.get(r.uri)
        if mark == "done":
            return
        if mark == "visiting":
            raise ValueError(f"plugin dependency cycle through {r.uri}")
        state[r.uri] = "visiting"
        needs = [t for t in by_type if t != r.type] if "*" in r.requires else r.requires
        for t in needs:
            for dep in by_type.get(t, []):
                if dep is not r:
                    visit(dep)
        state[r.uri] = "done"
        ordered.append(r)

    for r in regs:
        visit(r)
    return ordered


class Registry:
    def __init__(self, registrations, log):
        self.registrations = sort_registrations(registrations)
        self.plugins = []
        self.log = log

    def start(self, cfg):
        disabled = set(cfg.get("disabled_plugins", []))
        for reg in self.registrations:
            p = Plugin(reg)
            self.plugins.append(p)
            if reg.uri in disabled:
                p.skipped = True
                p.error = SkipPlugin(f"{SKIP_MESSAGE}: disabled in the config")
                self.log.info("plugin %s disabled", reg.uri)
                continue
            missing = [t for t in ([] if "*" in reg.requires else reg.requires)
                       if not any(q.reg.type == t and q.instance is not None for q in self.plugins)]
            if missing:
                p.error = RuntimeError(f"required plugin type {', '.join(missing)} is not available")
                self.log.warning("plugin %s not started: %s", reg.uri, p.error)
                continue
            try:
                p.instance = reg.init(InitContext(self, p, cfg))
                self.log.debug("plugin %s started", reg.uri)
            except SkipPlugin as e:
                p.skipped = True
                p.error = SkipPlugin(f"{SKIP_MESSAGE}: {e}")
                self.log.info("plugin %s skipped: %s", reg.uri, e)
            except Exception as e:  # a plugin's failure is reported, not fatal
                p.error = e
                self.log.warning("plugin %s failed to start: %s", reg.uri, e)
        for uri in cfg.get("required_plugins", []):
            p = self.find(uri)
            if p is None or p.instance is None:
                why = "not registered" if p is None else str(p.error)
                raise RuntimeError(f"required plugin {uri} did not start: {why}")
        return self.plugins

    def find(self, uri):
        for p in self.plugins:
            if p.reg.uri == uri:
                return p
        return None

    def instances(self, type):
        return [(p.reg.id, p.instance) for p in self.plugins if p.reg.type == type and p.instance is not None]

    def close(self):
        """Close started plugins in reverse order (those with a close method)."""
        for p in reversed(self.plugins):
            close = getattr(p.instance, "close", None)
            if p.instance is not None and callable(close):
                try:
                    close()
                except Exception as e:
                    self.log.warning("plugin %s close failed: %s", p.reg.uri, e)
