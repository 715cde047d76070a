"""Addresses as the agent's commands take them: ``HOST:PORT``, where HOST is an IP
literal (``[v6]:PORT`` for IPv6) or a host name such as ``localhost`` or
``db1.example``.

Reading an address (`parse_host_port`) checks its form only, so a malformed one is a
usage error of the command line or the config file. A name is looked up with the system
resolver (`resolve`: ``getaddrinfo``, so ``/etc/hosts`` and DNS as configured) once,
when the command starts; a failed lookup is a clear error of the command, not a usage
error. A name with both kinds of address gives its first IPv4 one, as Go's resolver
(and so Serf) does, so ``localhost`` means 127.0.0.1 even where it also names ::1. The
node itself only ever sees IP literals.
"""

from __future__ import annotations

import ipaddress
import socket

from swim.core.messages import Address

#: The longest host name DNS allows.
MAX_HOST_NAME = 253


class AddressError(ValueError):
    """An address is malformed or its name cannot be resolved; the message says why."""


def _is_host_name(host: str) -> bool:
    if not host or len(host) > MAX_HOST_NAME:
        return False
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return all(
        0 < len(label) <= 63
        and not label.startswith("-")
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in label)
        for label in labels
    )


def parse_host_port(text: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """(host, port) from ``HOST:PORT``; the host is an IP literal in its normal form, or
    a host name (unresolved). Raises `AddressError`.

    Port 0 (any free port) is accepted only with `allow_port_zero` (for ``--bind``)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise AddressError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise AddressError(f"expected an IPv6 address in the brackets of {text!r}") from None
    else:
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            if not _is_host_name(host):
                raise AddressError(
                    f"expected HOST:PORT with an IP address or a host name as HOST, "
                    f"got {text!r}"
                ) from None
    low = 0 if allow_port_zero else 1
    if not port_text.isascii() or not port_text.isdigit() or not low <= int(port_text) < 65536:
        raise AddressError(f"port must be {low}..65535 in {text!r}")
    return host, int(port_text)


def is_ip(host: str) -> bool:
    """Whether `host` is an IP literal (nothing to resolve)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int) -> Address:
    """The address of `host` (an IP literal is returned as it is; a name is looked up
    with the system resolver, IPv4 preferred). Raises `AddressError` naming the host and
    the resolver's reason."""
    if is_ip(host):
        return host, port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else exc
        raise AddressError(f"cannot resolve {host!r}: {str(reason).lower()}") from None
    # A scoped IPv6 result ("fe80::1%eth0") cannot be a member address: skipped.
    ips = [
        str(info[4][0]) for info in infos
        if info[0] in (socket.AF_INET, socket.AF_INET6) and "%" not in str(info[4][0])
    ]
    if not ips:
        raise AddressError(f"cannot resolve {host!r}: no usable IPv4 or IPv6 address")
    ipv4 = [ip for ip in ips if ":" not in ip]
    return (ipv4 or ips)[0], port


def resolve_text(text: str, *, allow_port_zero: bool = False) -> Address:
    """`parse_host_port` then `resolve`."""
    return resolve(*parse_host_port(text, allow_port_zero=allow_port_zero))
