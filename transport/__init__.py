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

from transport.base import Address, StreamHandler, Transport, TransportError, TransportStats
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
