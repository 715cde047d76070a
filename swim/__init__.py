"""swim: SWIM cluster membership and failure detection with HashiCorp's Lifeguard.

The protocol lives in `swim.core` (sans-IO); drivers run it over real sockets (`Node`,
the trio runtime, and `ThreadedNode` for non-trio applications) or a simulated network
(`simulations`).
"""

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
    Stats,
    UserBroadcastReceived,
    UserMessageReceived,
)
from swim.runtime import (
    DeliveryError,
    EventOverflow,
    EventSubscription,
    Node,
    NodeStats,
    ThreadedNode,
)

__version__ = "0.1.0"

__all__ = [
    "Address",
    "Config",
    "Core",
    "DeliveryError",
    "Event",
    "EventOverflow",
    "EventSubscription",
    "JoinCompleted",
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
    "Stats",
    "ThreadedNode",
    "UserBroadcastReceived",
    "UserMessageReceived",
    "__version__",
]
