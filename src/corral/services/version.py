"""containerd.services.version.v1.Version: the daemon's version."""

import corral
from corral.api.containerd.services.version.v1 import version_pb2, version_pb2_grpc

from .grpcutil import rpc

REVISION = ""


class VersionService(version_pb2_grpc.VersionServicer):
    @rpc
    def Version(self, request, context):
        return version_pb2.VersionResponse(version=corral.__version__, revision=REVISION)

    def add_to_server(self, server):
        version_pb2_grpc.add_VersionServicer_to_server(self, server)
