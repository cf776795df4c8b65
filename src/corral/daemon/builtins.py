"""The plugins corrald registers, with their types, ids, requirements and config defaults.

Init functions import their modules lazily so a failing or disabled plugin costs nothing."""

from .plugin import Registration

GRPC = "io.containerd.grpc.v1"
EVENT = "io.containerd.event.v1"
RUNTIME = "io.containerd.runtime.v2"
INTERNAL = "io.containerd.internal.v1"


def _introspection(ic):
    from corral.services.introspection import Introspection, IntrospectionService
    return IntrospectionService(Introspection(ic.registry, ic.daemon_config["root"]))


def _version(ic):
    from corral.services.version import VersionService
    return VersionService()


def _exchange(ic):
    from corral.services.events import Exchange
    return Exchange()


def _events(ic):
    from corral.services.events import EventsService
    return EventsService(ic.get(EVENT))


def _runtime(ic):
    from . import config as configmod
    from .runtime import RuntimeV2
    from .ttrpcbridge import Loop, SyncClient, serve_events
    exchange = ic.get(EVENT)
    cfg = ic.daemon_config
    loop = Loop()
    try:
        server = serve_events(loop, configmod.ttrpc_address(cfg), exchange)
    except Exception:
        loop.close()
        raise
    rt = RuntimeV2(ic.root, ic.state, cfg["grpc"]["address"], configmod.ttrpc_address(cfg),
                   lambda address, ns, timeout: SyncClient(loop, address, ns, timeout),
                   publish=exchange.publish, start_timeout=float(ic.config.get("shim_start_timeout", 30)),
                   load_timeout=float(ic.config.get("shim_load_timeout", 5)),
                   load_wait=float(ic.config.get("shim_load_wait", 2)))
    rt.on_close.append(lambda: loop.run(server.close(), 5))
    rt.on_close.append(loop.close)
    rt.load()
    ic.exports["state"] = ic.state
    return rt


def _restart_monitor(ic):
    from .restart import RestartMonitor
    return RestartMonitor(ic.get(EVENT), ic.daemon_config["grpc"]["address"],
                          interval=float(ic.config.get("interval", 5.0)))


def registrations():
    regs = [
        Registration(EVENT, "exchange", _exchange),
        Registration(GRPC, "events", _events, requires=[EVENT]),
        Registration(GRPC, "version", _version),
        Registration(RUNTIME, "task", _runtime, requires=[EVENT],
                     config={"shim_start_timeout": 30.0,   # seconds for `<shim> start` and `delete`
                             "shim_load_timeout": 5.0,    # per shim: silent this long, it is retried behind
                             "shim_load_wait": 2.0}),     # start-up waits this long for the shims, then serves
        Registration(INTERNAL, "restart", _restart_monitor, requires=[EVENT, RUNTIME],
                     config={"interval": 5.0}),  # seconds between checks of every container
        Registration(GRPC, "introspection", _introspection, requires=["*"]),
    ]
    from . import storage_plugins
    return regs + storage_plugins.registrations()
