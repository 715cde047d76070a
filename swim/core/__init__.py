"""The sans-IO SWIM + Lifeguard protocol core.

Nothing in this package reads a clock, touches a socket or starts a task: time comes in
as ``now``, randomness as a seeded ``random.Random``, datagrams in as method calls, and
datagrams, streams and events go out as drained values (see `Core`).
"""

from swim.core.codec import MalformedMessage, decode_untrusted, encode
from swim.core.config import Config
from swim.core.core import Core
from swim.core.effects import Effects
from swim.core.errors import ProtocolError
from swim.core.events import (
    Event,
    JoinCompleted,
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    MemberUpdated,
    NameConflict,
    QueryAcked,
    QueryFinished,
    QueryReceived,
    QueryResponded,
    UserBroadcastReceived,
    UserMessageReceived,
)
from swim.core.messages import Address, MemberState, MemberStatus
from swim.core.outputs import Datagram, Output, StreamKind, StreamReply, StreamRequest
from swim.core.policy import DriverPolicy
from swim.core.stats import Stats

__all__ = [
    "Address",
    "Config",
    "Core",
    "Datagram",
    "DriverPolicy",
    "Effects",
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
    "NameConflict",
    "Output",
    "ProtocolError",
    "QueryAcked",
    "QueryFinished",
    "QueryReceived",
    "QueryResponded",
    "Stats",
    "StreamKind",
    "StreamReply",
    "StreamRequest",
    "UserBroadcastReceived",
    "UserMessageReceived",
    "decode_untrusted",
    "encode",
]
