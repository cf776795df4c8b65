"""containerd.services.introspection.v1.Introspection: the plugin list and server identity."""

import os
import uuid

from corral.api.containerd.services.introspection.v1 import introspection_pb2, introspection_pb2_grpc
from corral.api.containerd.types import platform_pb2
from corral.api.google.rpc import status_pb2

from . import filters
from .grpcutil import rpc

# google.rpc codes
_UNKNOWN, _FAILED_PRECONDITION = 2, 9


def _host_platform():
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    variant = "v7" if machine == "armv7l" else ""
    return platform_pb2.Platform(os="linux", architecture=arch, variant=variant)


class Introspection:
    """The local object: plugin records and the server's persistent UUID."""

    def __init__(self, registry, root):
        self.registry = registry
        self.root = root

    def plugins(self, filter_strings=()):
        match = filters.parse(filter_strings)
        out = []
        for p in self.registry.plugins:
            reg = p.reg
            fields = {"type": reg.type, "id": reg.id}
            if not match(filters.getter(fields)):
                continue
            msg = introspection_pb2.Plugin(type=reg.type, id=reg.id, requires=reg.requires,
                                           exports=p.exports, capabilities=p.capabilities)
            if reg.type.startswith("io.containerd.snapshotter.") or reg.type.startswith("io.containerd.runtime."):
                msg.platforms.append(_host_platform())
            if p.error is not None:
                code = _FAILED_PRECONDITION if p.skipped else _UNKNOWN
                msg.init_err.CopyFrom(status_pb2.Status(code=code, message=str(p.error)))
            out.append(msg)
        return out

    def uuid(self):
        path = os.path.join(self.root, "uuid")
        try:
            with open(path) as f:
                value = f.read().strip()
            if value:
                return value
        except FileNotFoundError:
            pass
        os.makedirs(self.root, exist_ok=True)
        value = str(uuid.uuid4())
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(value)
        os.replace(tmp, path)
        return value


class IntrospectionService(introspection_pb2_grpc.IntrospectionServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Plugins(self, request, context):
        return introspection_pb2.PluginsResponse(plugins=self.local.plugins(list(request.filters)))

    @rpc
    def Server(self, request, context):
        return introspection_pb2.ServerResponse(uuid=self.local.uuid(), pid=os.getpid())

    def add_to_server(self, server):
        introspection_pb2_grpc.add_IntrospectionServicer_to_server(self, server)
