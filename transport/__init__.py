"""Transports for swim: move datagrams and request/response streams, nothing more.

The protocol core produces and consumes bytes; a `Transport` carries them. Two
implementations share one interface and the same counters (`TransportStats`):

* `open_udp_tcp_transport` -- UDP datagrams and length-prefixed TCP streams on one port
  number over trio, IPv4 or IPv6 (`transport.udp`);
* `MemoryNetwork` -- an in-process network for tests of many nodes in one trio run under
  `trio.testing.MockClock`, with latency, loss, delay, duplication, partitions and
  one-way blocks (`transport.memory`).

Both are async context managers that own their tasks and sockets::

    async with open_udp_tcp_transport(("127.0.0.1", 0), handler) as transport:
        await transport.send(b"ping", peer)
        async for data, addr in transport.receive():
            ...

A peer's bad input (oversized or garbage frames, stalled streams, a full receive queue)
is dropped and counted; `send` never raises `OSError`; `request` raises only
`TransportError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transport.base import Address, StreamHandler, Transport, TransportError, TransportStats

#: The module each implementation's names come from, imported on first use (PEP 562),
#: so a program that runs over UDP never loads the in-memory network, and the reverse.
_SOURCES = {
    "MemoryNetwork": "transport.memory",
    "MemoryTransport": "transport.memory",
    "NetworkStats": "transport.memory",
    "Packet": "transport.memory",
    "PacketKind": "transport.memory",
    "Route": "transport.memory",
    "RouteHook": "transport.memory",
    "UdpTcpTransport": "transport.udp",
    "open_udp_tcp_transport": "transport.udp",
}

if TYPE_CHECKING:
    from transport.memory import (
        MemoryNetwork,
        MemoryTransport,
        NetworkStats,
        Packet,
        PacketKind,
        Route,
        RouteHook,
    )
    from transport.udp import UdpTcpTransport, open_udp_tcp_transport
else:

    def __getattr__(name: str) -> Any:
        module = _SOURCES.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        # __import__ rather than importlib.import_module, so -X importtime lists it.
        value = getattr(__import__(module, fromlist=[name]), name)
        globals()[name] = value  # later lookups find it without calling this
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})


__all__ = [
    "Address",
    "MemoryNetwork",
    "MemoryTransport",
    "NetworkStats",
    "Packet",
    "PacketKind",
    "Route",
    "RouteHook",
    "StreamHandler",
    "Transport",
    "TransportError",
    "TransportStats",
    "UdpTcpTransport",
    "open_udp_tcp_transport",
]
