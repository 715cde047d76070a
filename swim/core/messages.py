"""Wire messages: small immutable values, compared by value.

Only :mod:`swim.core.codec` turns them into bytes and back. A datagram carries one or
more messages: a probe message (`Ping`, `PingReq`, `Ack`, `Nack`) and piggybacked news
(`Alive`, `Suspect`, `Dead`, `UserBroadcast`). Streams (TCP in production) carry
`PushPull` state exchanges, fallback pings and reliable `UserMessage` values.
"""

from __future__ import annotations

import enum

import attrs

from swim.core.vivaldi import Coordinate

#: A network address as (host, port); the host is an IPv4 or IPv6 literal.
Address = tuple[str, int]


class MemberStatus(enum.IntEnum):
    """A member's status in some member's view (SWIM plus memberlist's *left*)."""

    #: Answering probes, or not yet suspected.
    ALIVE = 0
    #: Missed a probe; will be declared dead unless it refutes in time.
    SUSPECT = 1
    #: Declared failed: its suspicion timed out (SWIM's *confirm*).
    DEAD = 2
    #: Left gracefully (announced its own death).
    LEFT = 3


@attrs.frozen(slots=True)
class MemberState:
    """One member as a member knows it; the entry of a membership table.

    Also the payload of `Alive` and of push-pull exchanges, so that one value can be
    shared between the tables of simulated members that learn the same news.
    """

    name: str
    addr: Address
    incarnation: int
    status: MemberStatus = MemberStatus.ALIVE
    meta: bytes = b""


@attrs.frozen(slots=True)
class Ping:
    """Direct probe. `target` names the member meant, so a stale address is caught;
    `source` names the prober (empty if unknown), so a member that holds the prober dead
    can tell it (see `Membership.notify_rumour`)."""

    seq: int
    target: str
    source: str = ""


@attrs.frozen(slots=True)
class PingReq:
    """Ask a helper to probe `target` on our behalf and relay the ack (SWIM ping-req).

    `source` names the requester: a helper serves only members it knows at the address
    the request came from, and only for targets it knows at `target_addr`, so a
    stranger cannot make it ping arbitrary addresses.
    """

    seq: int
    target: str
    target_addr: Address
    #: The requester wants a nack if the target stays silent (Lifeguard).
    nack: bool
    source: str = ""


@attrs.frozen(slots=True)
class Ack:
    """Answer to a `Ping` (or relayed answer to a `PingReq`) with the same `seq`.

    A direct answer carries the answering member's network coordinate (Vivaldi), so the
    prober learns it and updates its own from the round trip."""

    seq: int
    coord: Coordinate | None = None


@attrs.frozen(slots=True)
class Nack:
    """A helper's report that the target of a `PingReq` has not answered (Lifeguard)."""

    seq: int


@attrs.frozen(slots=True)
class Alive:
    """News: `member` is alive at its incarnation, with its address and metadata."""

    member: MemberState


@attrs.frozen(slots=True)
class Suspect:
    """News: `accuser` suspects `name` at `incarnation`."""

    name: str
    incarnation: int
    accuser: str


@attrs.frozen(slots=True)
class Dead:
    """News: `name` is dead at `incarnation`. ``accuser == name`` means it left."""

    name: str
    incarnation: int
    accuser: str


@attrs.frozen(slots=True)
class UserBroadcast:
    """An application payload gossiped to every member; (origin, id) is unique."""

    origin: str
    id: int
    payload: bytes


@attrs.frozen(slots=True)
class UserMessage:
    """An application payload sent to one member, by datagram or stream."""

    source: str
    payload: bytes


@attrs.frozen(slots=True)
class PushPull:
    """Full-state exchange: the request (or response) carries the sender's table.

    It also carries the sender's most recent user broadcasts, so that one a member
    missed (gossip is best-effort) reaches it at the next exchange.
    """

    join: bool
    members: tuple[MemberState, ...]
    broadcasts: tuple[UserBroadcast, ...] = ()


@attrs.frozen(slots=True)
class Refusal:
    """The answer to a join that claims `name`, held by a live member at `addr`: the
    joiner must not take a name another running process holds (stream only)."""

    name: str
    addr: Address


@attrs.frozen(slots=True)
class Query:
    """A question gossiped to every member (Serf's query); those that match its filters
    deliver it to their application, which may answer.

    (origin, id) is unique. Filters: `filter_names` (empty: any member) and
    `filter_tags`, ``(key, pattern)`` pairs matched against the member's tags as
    shell-style patterns (fnmatch, never a regex, so a filter cannot cost a member
    exponential time). Answers go to `reply_to` directly (and through `relay_factor`
    random members too, for lossy paths), within `timeout_ms` of receipt.
    """

    origin: str
    id: int
    name: str
    payload: bytes
    reply_to: Address
    timeout_ms: int
    want_ack: bool = False
    relay_factor: int = 0
    filter_names: tuple[str, ...] = ()
    filter_tags: tuple[tuple[str, str], ...] = ()


@attrs.frozen(slots=True)
class QueryResponse:
    """`source`'s answer (or, with `ack`, receipt) to query (`origin`, `id`); `via` names
    the member that relayed it, if any."""

    origin: str
    id: int
    source: str
    ack: bool
    payload: bytes
    via: str = ""


@attrs.frozen(slots=True)
class Relay:
    """Ask a member to forward `response` to `dest` (the asker's address)."""

    dest: Address
    response: QueryResponse


@attrs.frozen(slots=True)
class StableAlert:
    """Stable views: `observer` reports its edge to `subject`, on `rings`, in the
    configuration `config_id`: broken (``up=False``, the subject is a member) or, for
    an outsider it watches as a temporary observer, healthy (``up=True``: a join).
    ``observer == subject`` with ``up=False`` is a graceful leave."""

    config_id: int
    observer: str
    subject: str
    up: bool
    rings: tuple[int, ...] = ()


@attrs.frozen(slots=True)
class StableAlerts:
    """Stable views: every alert about `subject` in `config_id` that the sender has
    counted, as one message. Bit ``i`` of `rings` (least significant first) is the
    report of the subject's observer on ring ``i`` of that configuration: its edge to
    the subject broken (``up=False``, the subject is a member) or, as a temporary
    observer of an outsider, healthy (``up=True``: a join). The observers are the
    configuration's, so they need not be named; a graceful leave (the subject's own
    alert) travels as a `StableAlert`."""

    config_id: int
    subject: str
    up: bool
    rings: int


@attrs.frozen(slots=True)
class StableVote:
    """Stable views: votes in `config_id` for `cut` (``(name, up)`` pairs sorted by
    name: True joins, False leaves). `voters` is a bitmap over the configuration's
    sorted members (bit ``i`` of byte ``i // 8``, least significant first): the
    members whose vote for this cut the sender has counted, its own included, so one
    message carries many votes."""

    config_id: int
    cut: tuple[tuple[str, bool], ...]
    voters: bytes
    #: The voting round (see `swim.core.stable.agreement`: a new one after a split).
    round: int = 1


@attrs.frozen(slots=True)
class ViewDigest:
    """Stable views: the configuration the sender holds (epoch 0: none yet) and how
    many alerts and votes it holds for it, so the two ends can tell which one is
    behind (anti-entropy for views, alerts and votes)."""

    config_id: int
    epoch: int
    evidence: int = 0


@attrs.frozen(slots=True)
class ViewSync:
    """Stable views: part `part` of `parts` of configuration `config_id` at `epoch`,
    sent to a member that is behind. `names` is a slice of the sorted members; the
    whole is checked against `config_id` before it is used."""

    config_id: int
    epoch: int
    part: int
    parts: int
    names: tuple[str, ...]


#: Every message kind the codec knows.
Message = (
    Ping | PingReq | Ack | Nack | Alive | Suspect | Dead | UserBroadcast | UserMessage
    | PushPull | Refusal | Query | QueryResponse | Relay
    | StableAlert | StableAlerts | StableVote | ViewDigest | ViewSync
)
