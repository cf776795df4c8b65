"""`-p [ip:]hostPort:containerPort[/tcp|udp]` (docker's syntax, also `hostPort-hostEnd:ctr-ctrEnd`
ranges of equal length) and the check that a host port is free."""

import errno
import ipaddress
import socket

from corral.cni.errors import NetworkError

PROTOCOLS = ("tcp", "udp")


def _port(text, spec):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise NetworkError(f"invalid port spec {spec!r}: {text!r} is not a port number (1-65535)")
    return int(text)


def _range(text, spec):
    first, dash, last = text.partition("-")
    lo = _port(first, spec)
    hi = _port(last, spec) if dash else lo
    if hi < lo:
        raise NetworkError(f"invalid port spec {spec!r}: range {text} ends before it starts")
    return lo, hi


def parse(spec):
    """A list of port dicts {hostIP, hostPort, containerPort, protocol} for one -p value."""
    text, slash, proto = spec.strip().partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOCOLS:
        raise NetworkError(f"invalid port spec {spec!r}: protocol {proto!r} is not tcp or udp")
    host_ip = ""
    if text.startswith("["):  # [v6addr]:host:ctr
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise NetworkError(f"invalid port spec {spec!r}: unclosed [address]")
        host_ip, text = text[1:end], text[end + 2:]
        parts = text.split(":")
    else:
        parts = text.split(":")
        if len(parts) == 3:
            host_ip, parts = parts[0], parts[1:]
        elif len(parts) not in (1, 2):
            raise NetworkError(f"invalid port spec {spec!r}: want [ip:]hostPort:containerPort[/tcp|udp]")
    if len(parts) == 1:
        raise NetworkError(f"invalid port spec {spec!r}: give the host port too (hostPort:containerPort)")
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise NetworkError(f"invalid port spec {spec!r}: {host_ip!r} is not an IP address") from None
    hlo, hhi = _range(parts[0], spec)
    clo, chi = _range(parts[1], spec)
    if hhi - hlo != chi - clo:
        raise NetworkError(f"invalid port spec {spec!r}: host and container ranges differ in length")
    return [{"hostIP": host_ip, "hostPort": h, "containerPort": c, "protocol": proto}
            for h, c in zip(range(hlo, hhi + 1), range(clo, chi + 1))]


def parse_publish(spec):
    """One -p value with a single port (what `corral run` takes); ranges use parse()."""
    ports = parse(spec)
    if len(ports) != 1:
        raise NetworkError(f"invalid port spec {spec!r}: port ranges are not supported by -p here; "
                           "give one -p per port")
    return ports[0]


def check_free(ports, taken=()):
    """Raise if a host port is already published by a container (`taken`, port dicts) or
    bound by a listening socket on the host."""
    for p in ports:
        where = p.get("hostIP") or "0.0.0.0"
        for t in taken:
            if (t["hostPort"], t.get("protocol", "tcp")) == (p["hostPort"], p["protocol"]) and \
                    (not t.get("hostIP") or not p.get("hostIP") or t["hostIP"] == p["hostIP"]):
                by = f" ({t['container']})" if t.get("container") else ""
                raise NetworkError(f"port {where}:{p['hostPort']}/{p['protocol']} is already published "
                                   f"by another container{by}")
        _bind_test(p["hostPort"], p["protocol"], p.get("hostIP") or "")


def _bind_test(port, proto, host_ip):
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    where = host_ip or "0.0.0.0"
    s = socket.socket(family, kind)
    try:
        # SO_REUSEADDR: only a listening (or bound UDP) socket makes the port taken, not
        # connections of the past in TIME_WAIT
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise NetworkError(f"port {where}:{port}/{proto} is already in use on the host") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise NetworkError(f"cannot publish on {where}:{port}/{proto}: {host_ip} is not an address of this host") from None
        raise NetworkError(f"cannot publish {where}:{port}/{proto}: {e.strerror}") from None
    finally:
        s.close()
