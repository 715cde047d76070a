"""Drivers that run the sans-IO core over a network: `Node` (trio) and `ThreadedNode`
(a `Node` in a background thread, for applications that do not run trio)."""

from swim.runtime.node import (
    DeliveryError,
    EventOverflow,
    EventSubscription,
    Node,
    NodeStats,
    TransportFactory,
)
from swim.runtime.threaded import EventCallback, ThreadedNode

__all__ = [
    "DeliveryError",
    "EventCallback",
    "EventOverflow",
    "EventSubscription",
    "Node",
    "NodeStats",
    "ThreadedNode",
    "TransportFactory",
]
