"""Health (issue 9, item 3): whether a member can do its job, published in its metadata
and kept apart from whether it is alive.

Theory of operation
-------------------
*Liveness and health are distinct.* Liveness is SWIM's: a member that answers probes is
alive, whatever its application thinks of itself, and only the protocol declares members
suspect or dead. Health is the application's own verdict (Consul's check status):
`HealthStatus` passing, warning or critical. Setting it changes the member's metadata and
nothing else: a critical member keeps answering probes and stays ALIVE in every view; it
only leaves placement rings (`swim.ring`'s default ``exclude={"health": "critical"}``)
until it passes again.

*Published compactly in the metadata*, as two tags next to the application's own:
``health=<passing|warning|critical>`` and, only when there is one, ``health_note=<text>``
(at most `NOTE_MAX_BYTES` of UTF-8, cut on a character boundary). That costs 16 to 24
bytes of the 512 the metadata holds (plus the note), and rides the ordinary gossip of a
metadata change: a new incarnation, so every member converges on it like any other
``Alive``. A member without a ``health`` tag, or with a value this module does not know,
counts as passing: members that run no checks are healthy, and a peer's odd tag is
ignored, never raised (the ring, which matches the exact text ``critical``, agrees).

*Sources.* A node's health is the worst of its sources: the status given to
``Node.set_health`` and the latest result of each running check (`swim.runtime.checks`);
`worst` picks it (ties: the first source by name, so the answer does not depend on the
order results came in). Once a node has a health source it owns the two tags:
``Node.update_tags`` keeps them (the mapping's own ``health`` / ``health_note`` are
replaced by the node's), while ``Node.update_metadata`` writes raw bytes and leaves
health to the caller.

*Events.* `HealthChanged` (member, old, new, note, at, wall_time) is what
``Node.health_events()`` yields, one per change of a member's health status, this
member's own included. A peer's health change is a metadata change, so it shows up in
``member_events()`` as an UPDATED event as well; `HealthWatch` is the pure converter that
turns the membership events (and the node's own metadata changes, which the core raises no
event for) into `HealthChanged` values. It remembers each member's last status; a member
seen for the first time (joined, or back after failing or leaving) is news only if it
is not passing, and then has ``old=None``.

Pure code: no trio, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from swim.core.events import Event
from swim.core.messages import MemberState, MemberStatus
from swim.core.tags import tags_of
from swim.runtime.events import MemberEvent, MemberEventKind, Stamped

#: The tag holding a member's health status.
HEALTH_TAG: Final = "health"
#: The tag holding the note of its status (absent when there is none).
HEALTH_NOTE_TAG: Final = "health_note"
#: The longest note published (bytes of UTF-8); longer ones are cut.
NOTE_MAX_BYTES: Final = 64


class HealthStatus(enum.Enum):
    """A member's health, as Consul's checks report it (worst last)."""

    #: Everything is fine.
    PASSING = "passing"
    #: Degraded but serving; placement keeps it (exclude it with a ring filter if not).
    WARNING = "warning"
    #: Not able to serve: off placement rings until it passes again; still alive.
    CRITICAL = "critical"

    @property
    def severity(self) -> int:
        """0 for passing, 1 for warning, 2 for critical."""
        return _SEVERITY[self]

    @classmethod
    def parse(cls, value: HealthStatus | str) -> HealthStatus:
        """`value` as a status (an instance, or its text). Raises `ValueError` for
        anything else (the caller's mistake)."""
        if isinstance(value, HealthStatus):
            return value
        if isinstance(value, str):
            found = _BY_TEXT.get(value)
            if found is not None:
                return found
        names = ", ".join(s.value for s in cls)
        raise ValueError(f"a health status is one of {names}; got {value!r}")


_SEVERITY: Final = {HealthStatus.PASSING: 0, HealthStatus.WARNING: 1, HealthStatus.CRITICAL: 2}
_BY_TEXT: Final = {status.value: status for status in HealthStatus}


@attrs.frozen
class HealthResult:
    """A status and its note (why: a check's error, a timeout, the operator's words)."""

    status: HealthStatus
    note: str = ""


#: The source name of ``Node.set_health``'s status among a node's health sources.
MANUAL_SOURCE: Final = ""


def health_of(tags: Mapping[str, str]) -> HealthStatus:
    """The health a member's tags publish: passing without a (known) ``health`` tag."""
    return _BY_TEXT.get(tags.get(HEALTH_TAG, ""), HealthStatus.PASSING)


def note_of(tags: Mapping[str, str]) -> str:
    """The note of a member's published health ("" if none)."""
    return tags.get(HEALTH_NOTE_TAG, "")


def member_health(member: MemberState) -> HealthStatus:
    """The health `member`'s metadata publishes (see `health_of`)."""
    return health_of(tags_of(member.meta))


def clip_note(note: str) -> str:
    """`note` cut to at most `NOTE_MAX_BYTES` of UTF-8, on a character boundary, with
    line breaks turned into spaces (a note is one line)."""
    note = " ".join(note.split())
    raw = note.encode("utf-8", "replace")
    if len(raw) <= NOTE_MAX_BYTES:
        return note
    return raw[:NOTE_MAX_BYTES].decode("utf-8", "ignore")


def with_health(tags: Mapping[str, str], result: HealthResult | None) -> dict[str, str]:
    """`tags` with the health tags set to `result` (both removed if None), every other
    tag kept as it is."""
    out = {k: v for k, v in tags.items() if k not in (HEALTH_TAG, HEALTH_NOTE_TAG)}
    if result is not None:
        out[HEALTH_TAG] = result.status.value
        note = clip_note(result.note)
        if note:
            out[HEALTH_NOTE_TAG] = note
    return out


def worst(sources: Mapping[str, HealthResult]) -> HealthResult | None:
    """The worst of a node's health sources (None if it has none). Among equally bad
    ones, the first by source name wins, so the order they were set in does not
    matter."""
    best: HealthResult | None = None
    for name in sorted(sources):
        result = sources[name]
        if best is None or result.status.severity > best.status.severity:
            best = result
    return best


@attrs.frozen(kw_only=True)
class HealthChanged:
    """A member's health status changed (see the module docs)."""

    #: The member's state after the change (its metadata holds the new health).
    member: MemberState
    #: Its status before (None: the member was not known, or came back).
    old: HealthStatus | None
    #: Its status now.
    new: HealthStatus
    #: The note published with the new status ("" if none).
    note: str
    #: When it happened, on the runtime's clock.
    at: float
    #: When it happened, on the wall clock.
    wall_time: float

    @property
    def name(self) -> str:
        """The member's name."""
        return self.member.name


#: Statuses whose health `HealthWatch` remembers when seeded.
_UP: Final = frozenset({MemberStatus.ALIVE, MemberStatus.SUSPECT})
#: Membership changes after which the member is gone (its health is forgotten).
_GONE: Final = frozenset({MemberEventKind.FAILED, MemberEventKind.LEFT})


class HealthWatch:
    """The converter behind ``Node.health_events``: remembers each member's last health
    status and turns membership events into `HealthChanged` values when it changes.

    Seed it with the node's members when subscribing, so changes are measured from what
    the node held at that moment. Called with each published event (``(event,
    stamped)``, see `swim.runtime.subscriptions.Converter`); anything but a
    `MemberEvent` gives None.
    """

    def __init__(self, members: Iterable[MemberState] = ()) -> None:
        self._health: dict[str, HealthStatus] = {}
        for member in members:
            if member.status in _UP:
                self._health[member.name] = member_health(member)

    def __call__(self, event: Event, stamped: MemberEvent | Stamped) -> HealthChanged | None:
        if not isinstance(stamped, MemberEvent):
            return None
        return self.observe(stamped)

    def observe(self, event: MemberEvent) -> HealthChanged | None:
        """The health change `event` carries, if any."""
        name = event.name
        if event.kind in _GONE:
            self._health.pop(name, None)
            return None
        tags = tags_of(event.member.meta)
        new = health_of(tags)
        old = self._health.get(name)
        self._health[name] = new
        if old is new or (old is None and new is HealthStatus.PASSING):
            return None
        return HealthChanged(
            member=event.member, old=old, new=new, note=note_of(tags), at=event.at,
            wall_time=event.wall_time,
        )

    def status_of(self, name: str) -> HealthStatus | None:
        """The last status seen for `name` (None: not known or gone)."""
        return self._health.get(name)
