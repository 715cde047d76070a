"""Drivers that run the sans-IO core over a network: `Node` (trio) and `ThreadedNode`
(a `Node` in a background thread, for applications that do not run trio).

Prometheus metrics live in `swim.runtime.metrics` (needs prometheus-client).

Each name's module is imported on first use (PEP 562), so ``from swim.runtime import
Node`` does not load `ThreadedNode`'s module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: The module each public name comes from.
_SOURCES = {
    "DeliveryError": "swim.runtime.node",
    "Node": "swim.runtime.node",
    "NodeStats": "swim.runtime.node",
    "TransportFactory": "swim.runtime.node",
    "KeyCommand": "swim.runtime.keyops",
    "KeyReport": "swim.runtime.keyops",
    "QueryResult": "swim.runtime.queries",
    "QueryResultKind": "swim.runtime.queries",
    "QueryStream": "swim.runtime.queries",
    "QuerySummary": "swim.runtime.queries",
    "BlockingQuery": "swim.runtime.threaded",
    "EventOverflow": "swim.runtime.subscriptions",
    "EventSubscription": "swim.runtime.subscriptions",
    "EventCallback": "swim.runtime.threaded",
    "ThreadedNode": "swim.runtime.threaded",
}

if TYPE_CHECKING:
    from swim.runtime.keyops import KeyCommand, KeyReport
    from swim.runtime.node import DeliveryError, Node, NodeStats, TransportFactory
    from swim.runtime.queries import QueryResult, QueryResultKind, QueryStream, QuerySummary
    from swim.runtime.subscriptions import EventOverflow, EventSubscription
    from swim.runtime.threaded import BlockingQuery, EventCallback, ThreadedNode
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
    "BlockingQuery",
    "DeliveryError",
    "EventCallback",
    "EventOverflow",
    "EventSubscription",
    "KeyCommand",
    "KeyReport",
    "Node",
    "NodeStats",
    "QueryResult",
    "QueryResultKind",
    "QueryStream",
    "QuerySummary",
    "ThreadedNode",
    "TransportFactory",
]
