"""swim: SWIM cluster membership and failure detection with HashiCorp's Lifeguard.

The protocol lives in `swim.core` (sans-IO); drivers run it over real sockets (`Node`,
the trio runtime, and `ThreadedNode` for non-trio applications) or a simulated network
(`simulations`).

``import swim`` loads only the sans-IO core. The runtime's names (`Node`, `ThreadedNode`,
`EventOverflow`, ...) are attributes of this package too, but `swim.runtime`, and with
it trio and `transport`, is imported on first use of one of them (PEP 562), so a program
that only encodes messages or drives `Core` itself never pays for trio. The same goes
for `swim.aio`, the asyncio API (a `ThreadedNode` underneath), and `swim.forward`
(request forwarding to a key's owner on a `swim.ring` placement ring). The tag helpers
(`tags_of`, `encode_tags`, ...) are pure and part of the core.
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
from swim.core.events import NameConflict
from swim.core.tags import (
    MalformedTags,
    TagError,
    decode_tags_untrusted,
    encode_tags,
    parse_tag_assignment,
    tags_of,
)

#: Names served from `swim.runtime`, imported the first time one is asked for.
_RUNTIME_NAMES = frozenset({
    "UP_STATUSES",
    "DeliveryError",
    "EventOverflow",
    "EventSubscription",
    "HealthChanged",
    "HealthCheck",
    "HealthStatus",
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
    "Subscription",
    "ThreadedNode",
})
#: Subpackages served as attributes, imported the first time one is asked for.
_SUBMODULES = frozenset({"aio", "forward"})

__version__ = "0.1.0"

if TYPE_CHECKING:
    from swim import aio as aio
    from swim import forward as forward
    from swim.runtime import (
        UP_STATUSES,
        DeliveryError,
        EventOverflow,
        EventSubscription,
        HealthChanged,
        HealthCheck,
        HealthStatus,
        KeyReport,
        MemberEvent,
        MemberEventKind,
        MemberView,
        Node,
        NodeStats,
        QueryResult,
        QueryResultKind,
        QueryStream,
        QuerySummary,
        Stamped,
        Subscription,
        ThreadedNode,
    )
else:

    def __getattr__(name: str) -> Any:
        if name in _SUBMODULES:
            # __import__ rather than importlib.import_module, so -X importtime lists it.
            value = getattr(__import__(f"{__name__}.{name}"), name)
        elif name in _RUNTIME_NAMES:
            from swim import runtime

            value = getattr(runtime, name)
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value  # later lookups find it without calling this
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_RUNTIME_NAMES, *_SUBMODULES})


__all__ = [
    "UP_STATUSES",
    "Address",
    "Config",
    "Core",
    "DeliveryError",
    "Event",
    "EventOverflow",
    "EventSubscription",
    "HealthChanged",
    "HealthCheck",
    "HealthStatus",
    "JoinCompleted",
    "KeyReport",
    "MalformedMessage",
    "MalformedTags",
    "MemberAlive",
    "MemberEvent",
    "MemberEventKind",
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberState",
    "MemberStatus",
    "MemberSuspected",
    "MemberUpdated",
    "MemberView",
    "NameConflict",
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
    "Stamped",
    "Stats",
    "Subscription",
    "TagError",
    "ThreadedNode",
    "UserBroadcastReceived",
    "UserMessageReceived",
    "__version__",
    "decode_tags_untrusted",
    "encode_tags",
    "parse_tag_assignment",
    "tags_of",
]
