"""Drivers that run the sans-IO core over a network: `Node` (trio) and `ThreadedNode`
(a `Node` in a background thread, for applications that do not run trio).

Prometheus metrics live in `swim.runtime.metrics` (needs prometheus-client).
"""

from swim.runtime.node import DeliveryError, Node, NodeStats, TransportFactory
from swim.runtime.subscriptions import EventOverflow, EventSubscription
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
