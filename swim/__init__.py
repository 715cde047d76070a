"""swim: SWIM cluster membership and failure detection with HashiCorp's Lifeguard.

The protocol lives in `swim.core` (sans-IO); drivers run it over real sockets (the trio
runtime) or a simulated network (`simulations`).
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

__version__ = "0.1.0"

__all__ = [
    "Address",
    "Config",
    "Core",
    "Event",
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
    "ProtocolError",
    "Stats",
    "UserBroadcastReceived",
    "UserMessageReceived",
    "__version__",
]
