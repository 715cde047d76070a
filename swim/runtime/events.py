"""Events as the runtime publishes them: one shape for membership changes, and a
wall-clock time on every event.

The core's events (`swim.core.events`) are stamped with the core's ``now``: in a
`Node` that is ``trio.current_time()``, a monotonic clock with an arbitrary origin, good
for intervals, meaningless next to ``time.time()``. The core has no wall clock, so the
runtime adds one when it publishes an event:

* `MemberEvent`: any of the six membership changes (`MemberJoined`, `MemberSuspected`,
  `MemberAlive`, `MemberFailed`, `MemberLeft`, `MemberUpdated`) in one shape: a `kind`,
  the `member`'s state after the change, `at` (the runtime clock), `wall_time` and the
  `accuser` (for suspicions and failures);
* `Stamped`: any other event (broadcasts, messages, joins, queries...) with its
  `wall_time`.

`wall_time` is the wall-clock time of `at`: the node's wall clock (``time.time`` unless
the node was given another) at publication, less the time elapsed since `at` on the
runtime clock. A simulation passing ``wall_clock=trio.current_time`` gets
``wall_time == at``.

The node's ``events()`` subscriptions still yield the core's events unchanged (the
agent and older code read those); ``member_events()`` yields `MemberEvent` values only,
``stamped_events()`` every event as a `MemberEvent` or a `Stamped`. The mapping is the
pure `stamp` / `member_event`.

Pure code: no trio, no clock.
"""

from __future__ import annotations

import enum
from typing import Final, TypeGuard

import attrs

from swim.core.events import (
    Event,
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    MemberUpdated,
)
from swim.core.messages import Address, MemberState, MemberStatus
from swim.core.tags import tags_of


class MemberEventKind(enum.Enum):
    """What happened to a member (one per core membership event)."""

    #: It appeared, or came back after being dead or having left (`MemberJoined`).
    JOINED = "joined"
    #: It missed probes and is suspected; it fails unless it refutes (`MemberSuspected`).
    SUSPECT = "suspect"
    #: It refuted a suspicion and is alive again (`MemberAlive`).
    ALIVE = "alive"
    #: It was declared dead (`MemberFailed`).
    FAILED = "failed"
    #: It left gracefully (`MemberLeft`).
    LEFT = "left"
    #: Its metadata (or address) changed (`MemberUpdated`).
    UPDATED = "updated"


#: The core's membership events.
MembershipEvent = (
    MemberJoined | MemberSuspected | MemberAlive | MemberFailed | MemberLeft | MemberUpdated
)

_KINDS: Final[dict[type[MembershipEvent], MemberEventKind]] = {
    MemberJoined: MemberEventKind.JOINED,
    MemberSuspected: MemberEventKind.SUSPECT,
    MemberAlive: MemberEventKind.ALIVE,
    MemberFailed: MemberEventKind.FAILED,
    MemberLeft: MemberEventKind.LEFT,
    MemberUpdated: MemberEventKind.UPDATED,
}


def is_membership_event(event: Event) -> TypeGuard[MembershipEvent]:
    """Whether `event` is one of the six membership changes."""
    return type(event) in _KINDS


@attrs.frozen(kw_only=True)
class MemberEvent:
    """A membership change, whichever it is (see the module docs)."""

    kind: MemberEventKind
    #: The member's state after the change.
    member: MemberState
    #: When it happened, on the runtime's clock (the core event's ``at``).
    at: float
    #: When it happened, on the wall clock (seconds since the epoch by default).
    wall_time: float
    #: The member that suspected or declared it failed (SUSPECT and FAILED only).
    accuser: str | None = None

    @property
    def name(self) -> str:
        """The member's name."""
        return self.member.name

    @property
    def status(self) -> MemberStatus:
        """The member's status after the change."""
        return self.member.status

    @property
    def addr(self) -> Address:
        """The member's address."""
        return self.member.addr

    @property
    def tags(self) -> dict[str, str]:
        """The member's tags (empty if its metadata holds none)."""
        return tags_of(self.member.meta)


@attrs.frozen(kw_only=True)
class Stamped:
    """Any event that is not a membership change, with its wall-clock time."""

    #: The core's event, unchanged.
    event: Event
    #: When it happened, on the wall clock.
    wall_time: float

    @property
    def at(self) -> float:
        """When it happened, on the runtime's clock (the event's own ``at``)."""
        return self.event.at


def member_event(event: Event, wall_time: float) -> MemberEvent | None:
    """`event` as a `MemberEvent`, or None if it is not a membership change."""
    if not is_membership_event(event):
        return None
    accuser = event.accuser if isinstance(event, MemberSuspected | MemberFailed) else None
    return MemberEvent(
        kind=_KINDS[type(event)], member=event.member, at=event.at, wall_time=wall_time,
        accuser=accuser,
    )


def stamp(event: Event, wall_time: float) -> MemberEvent | Stamped:
    """`event` as the runtime publishes it: a `MemberEvent` for a membership change,
    else a `Stamped`."""
    found = member_event(event, wall_time)
    return Stamped(event=event, wall_time=wall_time) if found is None else found

