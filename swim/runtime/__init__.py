"""Drivers that run the sans-IO core over a network: `Node` (trio) and `ThreadedNode`
(a `Node` in a background thread, for applications that do not run trio).

Prometheus metrics live in `swim.runtime.metrics` (needs prometheus-client). The views
(`MemberView`, filters), the published event shapes (`MemberEvent`, `Stamped`) and health
(`HealthStatus`, `HealthChanged`) are pure modules (`swim.runtime.views`,
`swim.runtime.events`, `swim.runtime.health`) and load no trio; the check runner is
`swim.runtime.checks`.

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
    "Check": "swim.runtime.checks",
    "HealthCheck": "swim.runtime.checks",
    "HealthChanged": "swim.runtime.health",
    "HealthResult": "swim.runtime.health",
    "HealthStatus": "swim.runtime.health",
    "HealthWatch": "swim.runtime.health",
    "KeyCommand": "swim.runtime.keyops",
    "KeyReport": "swim.runtime.keyops",
    "QueryResult": "swim.runtime.queries",
    "QueryResultKind": "swim.runtime.queries",
    "QueryStream": "swim.runtime.queries",
    "QuerySummary": "swim.runtime.queries",
    "BlockingQuery": "swim.runtime.threaded",
    "EventOverflow": "swim.runtime.subscriptions",
    "EventSubscription": "swim.runtime.subscriptions",
    "Subscription": "swim.runtime.subscriptions",
    "EventCallback": "swim.runtime.threaded",
    "StampedCallback": "swim.runtime.threaded",
    "ThreadedNode": "swim.runtime.threaded",
    "MemberEvent": "swim.runtime.events",
    "MemberEventKind": "swim.runtime.events",
    "Stamped": "swim.runtime.events",
    "member_event": "swim.runtime.events",
    "stamp": "swim.runtime.events",
    "MemberView": "swim.runtime.views",
    "UP_STATUSES": "swim.runtime.views",
    "filter_members": "swim.runtime.views",
}

if TYPE_CHECKING:
    from swim.runtime.checks import Check, HealthCheck
    from swim.runtime.events import MemberEvent, MemberEventKind, Stamped, member_event, stamp
    from swim.runtime.health import HealthChanged, HealthResult, HealthStatus, HealthWatch
    from swim.runtime.keyops import KeyCommand, KeyReport
    from swim.runtime.node import DeliveryError, Node, NodeStats, TransportFactory
    from swim.runtime.queries import QueryResult, QueryResultKind, QueryStream, QuerySummary
    from swim.runtime.subscriptions import EventOverflow, EventSubscription, Subscription
    from swim.runtime.threaded import BlockingQuery, EventCallback, StampedCallback, ThreadedNode
    from swim.runtime.views import UP_STATUSES, MemberView, filter_members
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
    "UP_STATUSES",
    "BlockingQuery",
    "Check",
    "DeliveryError",
    "EventCallback",
    "EventOverflow",
    "EventSubscription",
    "HealthChanged",
    "HealthCheck",
    "HealthResult",
    "HealthStatus",
    "HealthWatch",
    "KeyCommand",
    "KeyReport",
    "MemberEvent",
    "MemberEventKind",
    "MemberView",
    "Node",
    "NodeStats",
    "QueryResult",
    "QueryResultKind",
    "QueryStream",
    "QuerySummary",
    "Stamped",
    "StampedCallback",
    "Subscription",
    "ThreadedNode",
    "TransportFactory",
    "filter_members",
    "member_event",
    "stamp",
]
