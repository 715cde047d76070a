"""swim: SWIM cluster membership and failure detection with HashiCorp's Lifeguard.

The protocol lives in `swim.core` (sans-IO); drivers run it over real sockets (`Node`,
the trio runtime, and `ThreadedNode` for non-trio applications) or a simulated network
(`simulations`).

``import swim`` loads only the sans-IO core. The runtime's names (`Node`, `ThreadedNode`,
`EventOverflow`, ...) are attributes of this package too, but `swim.runtime`, and with
it trio and `transport`, is imported on first use of one of them (PEP 562), so a program
that only encodes messages or drives `Core` itself never pays for trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swim.core import (
    Address,
    Config,
    Core,
    Event,
    JoinCompleted,
    MalformedMessage,
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberState,
    MemberStatus,
    MemberSuspected,
    MemberUpdated,
    ProtocolError,
    QueryAcked,
    QueryFinished,
    QueryReceived,
    QueryResponded,
    Stats,
    UserBroadcastReceived,
    UserMessageReceived,
)

#: Names served from `swim.runtime`, imported the first time one is asked for.
_RUNTIME_NAMES = frozenset({
    "DeliveryError",
    "EventOverflow",
    "EventSubscription",
    "KeyReport",
    "Node",
    "NodeStats",
    "QueryResult",
    "QueryResultKind",
    "QueryStream",
    "QuerySummary",
    "ThreadedNode",
})

__version__ = "0.1.0"

if TYPE_CHECKING:
    from swim.runtime import (
        DeliveryError,
        EventOverflow,
        EventSubscription,
        KeyReport,
        Node,
        NodeStats,
        QueryResult,
        QueryResultKind,
        QueryStream,
        QuerySummary,
        ThreadedNode,
    )
else:

    def __getattr__(name: str) -> Any:
        if name not in _RUNTIME_NAMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from swim import runtime

        value = getattr(runtime, name)
        globals()[name] = value  # later lookups find it without calling this
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_RUNTIME_NAMES})


__all__ = [
    "Address",
    "Config",
    "Core",
    "DeliveryError",
    "Event",
    "EventOverflow",
    "EventSubscription",
    "JoinCompleted",
    "KeyReport",
    "MalformedMessage",
    "MemberAlive",
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberState",
    "MemberStatus",
    "MemberSuspected",
    "MemberUpdated",
    "Node",
    "NodeStats",
    "ProtocolError",
    "QueryAcked",
    "QueryFinished",
    "QueryReceived",
    "QueryResponded",
    "QueryResult",
    "QueryResultKind",
    "QueryStream",
    "QuerySummary",
    "Stats",
    "ThreadedNode",
    "UserBroadcastReceived",
    "UserMessageReceived",
    "__version__",
]
