"""The daemon object: plugins started in order, the gRPC server on a unix socket, shutdown."""

import logging
import os
import socket
import threading
from concurrent import futures

import grpc

from . import builtins, config as configmod
from .plugin import Registry

log = logging.getLogger("corrald")


class StartError(Exception):
    pass


def _socket_in_use(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def prepare_socket(path):
    """Make the socket's directory; remove a stale socket, refuse a live one."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
    if os.path.exists(path):
        if _socket_in_use(path):
            raise StartError(f"address {path} is in use by another daemon; stop it or choose another --address")
        os.unlink(path)


def _gid(value):
    """A group id from the config: a number or a group name."""
    if isinstance(value, int):
        return value
    import grp
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise StartError(f"grpc.gid: group {value!r} does not exist; create it or give a numeric gid") from None


class Daemon:
    def __init__(self, cfg, registrations=None):
        self.cfg = cfg
        self.registry = Registry(registrations if registrations is not None else builtins.registrations(), log)
        self.server = None
        self.long_pool = None
        self.stopped = threading.Event()
        self.address = cfg["grpc"]["address"]
        self.listening = False

    def start(self):
        cfg = self.cfg
        for d in (cfg["root"], cfg["state"]):
            os.makedirs(d, mode=0o711, exist_ok=True)
        prepare_socket(self.address)
        self.registry.start(cfg)
        g = cfg["grpc"]
        # long-lived calls on their own pool: 150 `ctr events` or waiting `ctr run`s once held
        # all 128 workers and every other call waited behind them
        self.long_pool = futures.ThreadPoolExecutor(max_workers=g.get("max_stream_workers", 4096),
                                                    thread_name_prefix="grpc-long")
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=g["max_workers"], thread_name_prefix="grpc"),
            options=[("grpc.max_receive_message_length", g["max_recv_message_size"]),
                     ("grpc.max_send_message_length", g["max_send_message_size"]),
                     ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=None)
        for p in self.registry.plugins:
            add = getattr(p.instance, "add_to_server", None)
            if p.instance is not None and callable(add):
                self._route_long_calls(p.instance)
                add(self.server)
        # the socket is created with the process umask; keep it private while we set its mode
        old = os.umask(0o177)
        try:
            if self.server.add_insecure_port("unix:" + self.address) == 0:
                raise StartError(f"cannot listen on {self.address}; check the directory and permissions")
            self.listening = True
            self.server.start()
        finally:
            os.umask(old)
        os.chown(self.address, g["uid"], _gid(g["gid"]))
        os.chmod(self.address, 0o660)
        for p in self.registry.plugins:
            serve = getattr(p.instance, "serve", None)
            if p.instance is not None and callable(serve):
                serve()
        log.info("corrald serving on %s", self.address)

    def _route_long_calls(self, servicer):
        """grpc runs a method on the pool its handler's function names in experimental_thread_pool
        (looked up through the bound method), else on the server's pool."""
        for name in dir(type(servicer)):
            fn = getattr(type(servicer), name, None)
            if callable(fn) and getattr(fn, "corral_long_lived", False):
                fn.experimental_thread_pool = self.long_pool

    def stop(self, grace=2.0):
        """Stop serving and close plugins; running containers are not touched."""
        if self.server is not None:
            self.server.stop(grace).wait(grace + 1)
        self.registry.close()
        if self.long_pool is not None:
            self.long_pool.shutdown(wait=False, cancel_futures=True)
        if self.listening:
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass
        self.stopped.set()
        log.info("corrald stopped")


def build(cfg):
    return Daemon(cfg)


__all__ = ["Daemon", "StartError", "build", "configmod"]
