"""`corrald`: run the daemon, or `corrald config default` to print the default config."""

import argparse
import json
import logging
import signal
import sys
import time


class _JSONFormatter(logging.Formatter):
    def format(self, record):
        return json.dumps({"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + "Z",
                           "level": record.levelname.lower(), "msg": record.getMessage()})


class _TextFormatter(logging.Formatter):
    def format(self, record):
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + "Z"
        msg = record.getMessage().replace('"', '\\"')
        return f'time="{stamp}" level={record.levelname.lower()} msg="{msg}"'


def setup_logging(level, fmt):
    handler = logging.StreamHandler(sys.stderr)
    f = _JSONFormatter() if fmt == "json" else _TextFormatter()
    f.converter = time.gmtime
    handler.setFormatter(f)
    root = logging.getLogger("corrald")
    root.handlers[:] = [handler]
    root.propagate = False
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "warning": logging.WARNING, "error": logging.ERROR}
    if level not in levels:
        raise SystemExit(f"corrald: unknown log level {level!r}; use debug, info, warning or error")
    root.setLevel(levels[level])


def parser():
    p = argparse.ArgumentParser(prog="corrald", description="corral's container daemon (containerd-compatible API)")
    p.add_argument("--config", "-c", help="TOML config file (default /etc/corral/config.toml)")
    p.add_argument("--address", "-a", help="gRPC unix socket path")
    p.add_argument("--root", help="persistent state directory")
    p.add_argument("--state", help="runtime state directory")
    p.add_argument("--log-level", "-l", help="debug, info, warning or error")
    p.add_argument("--log-format", choices=["text", "json"], help="log format on stderr")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("config", help="configuration")
    csub = c.add_subparsers(dest="config_command", required=True)
    csub.add_parser("default", help="print every setting with its default")
    csub.add_parser("dump", help="print the effective configuration")
    return p


def _plugin_defaults():
    from .builtins import registrations
    return {r.uri: r.config for r in registrations() if r.config}


def main(argv=None):
    args = parser().parse_args(argv)
    from . import config as configmod

    if args.command == "config":
        if args.config_command == "default":
            import copy
            cfg = copy.deepcopy(configmod.DEFAULTS)
            cfg["plugins"] = _plugin_defaults()
        else:
            cfg = configmod.load(args.config, _plugin_defaults())
        sys.stdout.write(configmod.dump(cfg))
        return 0

    try:
        cfg = configmod.load(args.config, _plugin_defaults())
    except configmod.ConfigError as e:
        print(f"corrald: {e}", file=sys.stderr)
        return 1
    if args.address:
        cfg["grpc"]["address"] = args.address
    if args.root:
        cfg["root"] = args.root
    if args.state:
        cfg["state"] = args.state
    if args.log_level:
        cfg["debug"]["level"] = args.log_level
    if args.log_format:
        cfg["debug"]["format"] = args.log_format
    setup_logging(cfg["debug"]["level"], cfg["debug"]["format"])
    log = logging.getLogger("corrald")

    from .server import Daemon, StartError
    daemon = Daemon(cfg)
    import threading
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        daemon.start()
    except (StartError, RuntimeError, OSError) as e:
        log.error("cannot start: %s", e)
        daemon.stop(0)
        return 1
    # a signal interrupts the wait and its handler sets the event: no periodic wake-ups when idle
    while not stop.wait(60):
        pass
    log.info("shutting down (running containers are left running)")
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
