"""Application events: what a member tells its application, drained from the core.

Every membership event carries the member's state after the change and the time it
happened (the `now` of the input that caused it).
"""

from __future__ import annotations

import attrs

from swim.core.messages import Address, MemberState


@attrs.frozen(kw_only=True)
class MemberJoined:
    """A member appeared (or came back after being dead or having left)."""

    member: MemberState
    at: float


@attrs.frozen(kw_only=True)
class MemberSuspected:
    """A member is suspected; it will fail unless it refutes."""

    member: MemberState
    accuser: str
    at: float


@attrs.frozen(kw_only=True)
class MemberAlive:
    """A suspected member refuted the suspicion and is alive again."""

    member: MemberState
    at: float


@attrs.frozen(kw_only=True)
class MemberFailed:
    """A member was declared dead (its suspicion timed out somewhere)."""

    member: MemberState
    accuser: str
    at: float


@attrs.frozen(kw_only=True)
class MemberLeft:
    """A member left the cluster gracefully."""

    member: MemberState
    at: float


@attrs.frozen(kw_only=True)
class MemberUpdated:
    """A member changed its metadata (or address, on reclaim)."""

    member: MemberState
    at: float


@attrs.frozen(kw_only=True)
class UserBroadcastReceived:
    """A user broadcast reached this member (delivered once per (origin, id))."""

    origin: str
    id: int
    payload: bytes
    at: float


@attrs.frozen(kw_only=True)
class UserMessageReceived:
    """A direct user message arrived."""

    source: str
    addr: Address
    payload: bytes
    at: float


@attrs.frozen(kw_only=True)
class JoinCompleted:
    """A join exchange with a seed finished; `ok` is False if the seed did not answer
    or refused us."""

    seed: Address
    ok: bool
    #: Members learned from the seed's state (0 when not ok).
    members: int
    at: float
    #: Why the seed refused the join (our name is held by a live member elsewhere);
    #: empty if it did not. A refused member stops joining: retrying cannot help.
    refused: str = ""


@attrs.frozen(kw_only=True)
class NameConflict:
    """Another process at `addr` claims this member's own name (reported once per
    address): an operator error, such as two agents started with one name."""

    name: str
    addr: Address
    at: float


@attrs.frozen(kw_only=True)
class QueryReceived:
    """A query matched this member: the application may answer it with
    `Core.respond(origin, id, payload)` until `deadline` (the core's clock)."""

    origin: str
    id: int
    name: str
    payload: bytes
    deadline: float
    at: float


@attrs.frozen(kw_only=True)
class QueryAcked:
    """Member `source` received our query `id` (asked for with ``want_ack``)."""

    id: int
    source: str
    at: float


@attrs.frozen(kw_only=True)
class QueryResponded:
    """Member `source` answered our query `id` with `payload` (once per member)."""

    id: int
    source: str
    payload: bytes
    at: float


@attrs.frozen(kw_only=True)
class QueryFinished:
    """Our query `id` timed out: no answer counts after this. `acks` and `responses`
    are the members heard from."""

    id: int
    acks: int
    responses: int
    at: float


@attrs.frozen(kw_only=True)
class ViewChanged:
    """Stable-view mode: this member moved to a new view, by one whole cut.

    One event per view change, however many members it adds or removes: `joined` and
    `removed` are the cut (sorted names), `members` the whole new view. Every member
    that makes the same change reports the same `config_id` and `epoch`. A member
    that learns a newer view it missed (it was behind, or it is joining) reports the
    difference from the view it held.
    """

    config_id: int
    epoch: int
    members: tuple[str, ...]
    joined: tuple[str, ...]
    removed: tuple[str, ...]
    at: float


Event = (
    MemberJoined
    | MemberSuspected
    | MemberAlive
    | MemberFailed
    | MemberLeft
    | MemberUpdated
    | UserBroadcastReceived
    | UserMessageReceived
    | JoinCompleted
    | NameConflict
    | QueryReceived
    | QueryAcked
    | QueryResponded
    | QueryFinished
    | ViewChanged
)
