"""Placement: a ring of the members that are up, mapping keys to owners (issue 9).

Pure code: no I/O, no clock, no randomness. Every member that holds the same membership
builds the same `Ring` and gets the same answers, in every Python process (positions come
from BLAKE2b, never from ``hash()``, and no ``set`` of strings is iterated into output).

Theory of operation
-------------------
*Which members.* `RingOptions` decides who is on the ring: members whose status is in
``statuses`` (alive and suspect by default: a suspect is usually alive, and moving its
keys away on every missed probe would churn; dead and left members never count), that
pass ``include`` and do not match ``exclude`` (by default a ``health`` tag of
``critical`` takes a member off the ring; issue 9's health checks will set it). The
``weight`` tag scales a member's share (``weight=2``: about twice the keys; ``0``: off the
ring, for draining); the ``zone`` tag names its failure domain.

*Where keys go: consistent hashing with virtual nodes.* A member of weight w owns
``round(w * vnodes)`` points, pseudo-random 64-bit positions drawn from BLAKE2b of its
name (``vnodes`` = 256 by default). A key's position is the first 64 bits of
``BLAKE2b(key)``; its owner is the member of the first point at or after it, clockwise.
Point positions depend only on the member's name and its point count, and a member's
first k points are the same whatever the count, so:

* a member leaving moves exactly its own keys, spread over the rest (about 1/n of all
  keys: the minimum); a member joining takes about 1/(n + 1), only from others;
* raising a weight adds points and only moves keys to that member.

*Why a ring and not rendezvous (HRW) hashing.* Weighted HRW (score ``-w / ln(u)``) has the
same minimal movement, needs no virtual nodes and balances better (load spread only
binomial), but a lookup scores every member: O(n) hash evaluations. In pure Python that
measured 3,000-7,000 lookups per second for 100 members on the benchmark machine, against
about 200,000 for the ring (one BLAKE2b plus a bisect over the points: O(log(n *
vnodes))); see benchmarks/ring_bench.py. The ring also gives ranges (arcs of the hash
space) to report as moved, a natural walk for replicas, and is where bounded loads were
defined. The price is balance: each member's share of the hash space varies by about
1/sqrt(vnodes) (6 % at 256), so the most loaded of 100 members holds some 15-20 % above
the mean; `assign` with a load factor removes that excess where it matters.

*Replicas* (`owners`): walk clockwise from the key, taking each member the first time it
is seen; a member whose zone is already taken is set aside. The walk stops when it has n
members in distinct zones, or when every zone is taken and enough members were set aside;
the answer is the zone-distinct members in walk order, then as many set-aside members
(in walk order) as still needed. So replicas span distinct zones where there are enough
zones, and fall back to distinct members. ``owners(key, n)[0] == owner(key)``, and a
member that is not among a key's owners can leave or join without changing them (it is
either never reached or only set aside after the answer is complete).

*Bounded loads* (`assign`): Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with
Bounded Loads" (SODA 2018). With m keys and load factor eps, each member gets a capacity
``ceil((1 + eps) * m * points / total_points)`` (with equal weights that is
``ceil((1 + eps) * mean)``); keys are placed one by one, each on the member of the first
point clockwise whose member is not yet full. The order of placement is the key's
"arrival": the second 64 bits of its digest, so the answer depends only on the set of
keys, not on the order they were given in. Full members' points are skipped with a
union-find "next open point" array, so placing m keys costs O(m log P) rather than a
walk past every full member; when no member's plain load is over its cap nothing can
overflow and the plain placement is returned as it is. Their analysis bounds the expected
movement an update causes to O(1/eps^2) times the minimum; measured over 1,000,000 keys
and 100 members, eps = 0.25 moved exactly the minimum (no member was over its cap) and
eps = 0.05 moved 1.24 times it.

*Checksum* (ringpop's ring checksum): BLAKE2b over the members' names, point counts and
zones, in name order. Two rings with equal checksums give the same `owner`, `owners` and
(for the same load factor) `assign` for every key.

`Ring.diff` reports what changed between two rings: members joined, left or re-weighted,
the exact arcs of the hash space whose owner changed (`RangeMove`), and for a key set
which keys moved from whom to whom (`Move`). `RingTracker` turns membership events and
member lists into `RingChanged` values only when the ring really changes.
"""

from __future__ import annotations

import bisect
import enum
import math
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from fractions import Fraction
from hashlib import blake2b
from typing import Final, Generic, TypeAlias, TypeVar

import attrs

from swim.core.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    MemberUpdated,
)
from swim.core.messages import MemberState, MemberStatus
from swim.core.tags import tags_match, tags_of

__all__ = [
    "DEFAULT_EXCLUDE",
    "DEFAULT_VNODES",
    "MAX_WEIGHT",
    "UP_STATUSES",
    "Assignment",
    "EmptyRingError",
    "Key",
    "MemberFilter",
    "Move",
    "RangeMove",
    "Ring",
    "RingChanged",
    "RingDiff",
    "RingMember",
    "RingOptions",
    "RingTracker",
    "position",
]

#: A key: bytes, or text (placed as its UTF-8 bytes, so ``"a"`` and ``b"a"`` place alike).
Key: TypeAlias = bytes | str
K = TypeVar("K", bound=bytes | str)

#: Who is on the ring: a predicate on the member, or tag patterns that must all match
#: (``{"role": "cache*"}``: shell-style patterns, as in query filters).
MemberFilter: TypeAlias = Callable[[MemberState], bool] | Mapping[str, str]
_StoredFilter: TypeAlias = Callable[[MemberState], bool] | tuple[tuple[str, str], ...]

#: Statuses counted as up by default: a suspect is usually alive, so its keys stay put.
UP_STATUSES: Final = frozenset({MemberStatus.ALIVE, MemberStatus.SUSPECT})
#: Members excluded by default: a failing health check (issue 9) takes a member off.
DEFAULT_EXCLUDE: Final[Mapping[str, str]] = {"health": "critical"}
#: Points per unit of weight.
DEFAULT_VNODES: Final = 256
#: Weights above this are taken as this (a peer's tag must not allocate without bound).
MAX_WEIGHT: Final = 100.0
_MAX_VNODES: Final = 4096

#: Size of the hash space: positions are 0 <= p < 2**64.
SPACE: Final = 1 << 64
_MASK64: Final = SPACE - 1
#: Bumped on any change to positions, points or the checksum.
_VERSION: Final = 1
_KEY_PERSON: Final = b"swim.ring.key"
_POINT_PERSON: Final = b"swim.ring.point"
_SUM_PERSON: Final = b"swim.ring.sum"
_EIGHT_POINTS: Final = struct.Struct(">8Q")
#: `Ring.owners` remembers its answers per point for n up to this.
_MEMO_REPLICAS: Final = 8


class EmptyRingError(LookupError):
    """No member is on the ring, so a key has no owner."""


class _Default(enum.Enum):
    #: "Use the ring's own setting."
    RING = enum.auto()


def position(key: Key) -> int:
    """The key's position on the ring, 0 <= p < 2**64: the first 64 bits of its digest."""
    data = key.encode() if isinstance(key, str) else key
    return int.from_bytes(blake2b(data, digest_size=16, person=_KEY_PERSON).digest()[:8])


def _name_bytes(text: str) -> bytes:
    # Names and zones come from peers; never fail on a lone surrogate.
    return text.encode("utf-8", "surrogatepass")


def _points_of(name: str, count: int) -> list[int]:
    """A member's first `count` point positions. Each BLAKE2b-512 of (name, block) gives
    eight; the first k are the same for every count >= k (weights change minimally)."""
    raw = _name_bytes(name)
    out: list[int] = []
    for block in range((count + 7) // 8):
        digest = blake2b(raw + block.to_bytes(4, "big"), digest_size=64, person=_POINT_PERSON)
        out.extend(_EIGHT_POINTS.unpack(digest.digest()))
    del out[count:]
    return out


def _weight_of(text: str | None) -> float:
    """A member's weight from its tag: absent or malformed (not a finite number >= 0)
    means 1; capped at `MAX_WEIGHT`. A peer's bad tag is ignored, never raised."""
    if text is None:
        return 1.0
    try:
        weight = float(text)
    except ValueError:
        return 1.0
    if not math.isfinite(weight) or weight < 0:
        return 1.0
    return min(weight, MAX_WEIGHT)


def _store_filter(value: MemberFilter | _StoredFilter | None) -> _StoredFilter | None:
    if value is None or callable(value):
        return value
    pairs = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in pairs))


def _matches(flt: _StoredFilter, member: MemberState, tags: Mapping[str, str]) -> bool:
    if callable(flt):
        return bool(flt(member))
    return tags_match(tags, flt)


def _statuses(value: Iterable[MemberStatus]) -> frozenset[MemberStatus]:
    return frozenset(value)


def _check_statuses(_: object, __: object, value: frozenset[MemberStatus]) -> None:
    if not value or not value <= UP_STATUSES:
        raise ValueError(
            f"statuses must be ALIVE and/or SUSPECT (dead and left members are never up), "
            f"got {sorted(s.name for s in value)}"
        )


def _check_load_factor(_: object, __: object, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"load_factor must be a finite number >= 0 or None, got {value!r}")


@attrs.frozen
class RingMember:
    """One member as the ring sees it: its name, zone ("" without a zone tag) and number
    of points (its weight times `RingOptions.vnodes`, at least 1)."""

    name: str
    zone: str
    points: int


@attrs.frozen(kw_only=True)
class RingOptions:
    """How a ring is built from members. `Ring.build` takes these as keywords."""

    #: Replicas `Ring.owners` returns when not told.
    replicas_default: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    #: Points per unit of weight: more balance the hash space better (spread about
    #: 1/sqrt(vnodes)) and cost memory and build time.
    vnodes: int = attrs.field(
        default=DEFAULT_VNODES,
        validator=[attrs.validators.ge(1), attrs.validators.le(_MAX_VNODES)],
    )
    #: Tag holding a member's weight (a number >= 0; absent or malformed means 1).
    weight_tag: str = "weight"
    #: Tag holding a member's zone (its failure domain; absent means the unnamed zone).
    zone_tag: str = "zone"
    #: Only members this matches are on the ring (None: every member that is up).
    include: _StoredFilter | None = attrs.field(default=None, converter=_store_filter)
    #: Members this matches are off the ring (default: a ``health`` tag of ``critical``).
    exclude: _StoredFilter | None = attrs.field(
        default=_store_filter(DEFAULT_EXCLUDE), converter=_store_filter
    )
    #: Statuses that count as up: ALIVE and/or SUSPECT (default both).
    statuses: frozenset[MemberStatus] = attrs.field(
        default=UP_STATUSES, converter=_statuses, validator=_check_statuses
    )
    #: The eps of bounded loads `Ring.assign` uses by default (None: plain placement).
    load_factor: float | None = attrs.field(default=None, validator=_check_load_factor)

    def entry(self, member: MemberState) -> RingMember | None:
        """How `member` sits on a ring built with these options (None: not on it).

        The include predicate, if any, must be a pure function of the member."""
        if member.status not in self.statuses:
            return None
        tags = tags_of(member.meta)
        if self.include is not None and not _matches(self.include, member, tags):
            return None
        if self.exclude is not None and _matches(self.exclude, member, tags):
            return None
        weight = _weight_of(tags.get(self.weight_tag))
        if weight == 0:
            return None
        points = max(1, round(weight * self.vnodes))
        return RingMember(member.name, tags.get(self.zone_tag, ""), points)

    def build(self, members: Iterable[MemberState]) -> Ring:
        """The ring of `members` (see `Ring.build`)."""
        return Ring._from_entries(_entries(self, members).values(), self, _points_of)


def _entries(options: RingOptions, members: Iterable[MemberState]) -> dict[str, RingMember]:
    """Ring entries by name. A name listed twice counts once, by SWIM precedence (higher
    incarnation; at equal ones left over dead over suspect over alive), whatever the
    order of the list."""
    latest: dict[str, MemberState] = {}
    for member in members:
        held = latest.get(member.name)
        if held is None or (member.incarnation, member.status) > (held.incarnation, held.status):
            latest[member.name] = member
    found: dict[str, RingMember] = {}
    for name in sorted(latest):
        entry = options.entry(latest[name])
        if entry is not None:
            found[name] = entry
    return found


@attrs.frozen(eq=False)
class Assignment(Mapping[K, str]):
    """Keys placed by `Ring.assign`: a read-only mapping key -> owner, with the loads.

    Compares equal to any mapping with the same items."""

    #: Owner of each key, in the order the keys were first given.
    owners: Mapping[K, str]
    #: Keys per member, every member of the ring in name order (zeros included).
    loads: Mapping[str, int]
    #: Capacity of each member under bounded loads (None: unbounded placement).
    caps: Mapping[str, int] | None
    #: The eps used (None: plain consistent hashing).
    load_factor: float | None
    #: Keys not on their plain owner (moved there by full members); 0 when unbounded.
    displaced: int

    def __getitem__(self, key: K) -> str:
        return self.owners[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self.owners)

    def __len__(self) -> int:
        return len(self.owners)

    @property
    def max_load(self) -> int:
        """The most keys any member holds."""
        return max(self.loads.values(), default=0)

    @property
    def mean_load(self) -> float:
        """Keys per member on average."""
        return len(self.owners) / len(self.loads) if self.loads else 0.0


@attrs.frozen
class Move(Generic[K]):
    """A key whose owner changed (None: the ring was empty on that side)."""

    key: K
    old_owner: str | None
    new_owner: str | None


@attrs.frozen
class RangeMove:
    """The keys whose position p has ``start <= p < end`` moved from `old_owner` to
    `new_owner` (None: the ring was empty on that side). See `position`."""

    start: int
    end: int
    old_owner: str | None
    new_owner: str | None

    def __contains__(self, pos: int) -> bool:
        return self.start <= pos < self.end

    @property
    def share(self) -> float:
        """The fraction of the hash space (and so, on average, of all keys) it covers."""
        return (self.end - self.start) / SPACE


@attrs.frozen
class RingDiff(Generic[K]):
    """What changed from one ring to another (`Ring.diff`)."""

    #: Members on the new ring only, by name.
    joined: tuple[str, ...]
    #: Members on the old ring only, by name.
    left: tuple[str, ...]
    #: Members on both whose weight (points) or zone changed, by name.
    changed: tuple[str, ...]
    #: Every arc of the hash space whose owner changed, in position order, adjacent arcs
    #: with the same old and new owner merged.
    ranges: tuple[RangeMove, ...]
    #: The keys asked about whose owner changed, in the order they were given.
    moves: tuple[Move[K], ...]

    @property
    def moved_share(self) -> float:
        """The fraction of the hash space whose owner changed (ideal on one failure: the
        failed member's share, about 1/n)."""
        return sum(r.end - r.start for r in self.ranges) / SPACE


class Ring:
    """An immutable view of the members that are up, mapping keys to owners.

    Build one with `Ring.build` (or `RingOptions.build`); a `RingTracker` keeps one
    current from membership events. Rings compare equal when their checksums and
    default settings are equal.
    """

    __slots__ = (
        "_checksum",
        "_entries",
        "_members",
        "_options",
        "_point_name",
        "_point_owner",
        "_points",
        "_walks",
        "_zone_of",
        "_zones",
    )

    _options: RingOptions
    _entries: tuple[RingMember, ...]
    _members: tuple[str, ...]
    _zones: tuple[str, ...]
    _zone_of: list[int]
    _points: list[int]
    _point_owner: list[int]
    _point_name: list[str]
    _checksum: str
    _walks: dict[int, tuple[str, ...]]

    def __init__(self) -> None:
        raise TypeError("build a Ring with Ring.build(members) or RingOptions.build(members)")

    @classmethod
    def build(
        cls,
        members: Iterable[MemberState],
        *,
        replicas_default: int = 3,
        vnodes: int = DEFAULT_VNODES,
        weight_tag: str = "weight",
        zone_tag: str = "zone",
        include: MemberFilter | None = None,
        exclude: MemberFilter | None = DEFAULT_EXCLUDE,
        statuses: Iterable[MemberStatus] = UP_STATUSES,
        load_factor: float | None = None,
    ) -> Ring:
        """The ring of `members` that are up (see `RingOptions` for each keyword).

        `members` is a node's view (``node.members()``): dead and left entries are
        skipped, a name listed twice counts once by SWIM precedence. Placement depends
        only on the members' names, weights and zones, never on their order or address.
        """
        options = RingOptions(
            replicas_default=replicas_default, vnodes=vnodes, weight_tag=weight_tag,
            zone_tag=zone_tag, include=include, exclude=exclude,
            statuses=frozenset(statuses), load_factor=load_factor,
        )
        return options.build(members)

    @classmethod
    def _from_entries(
        cls,
        entries: Iterable[RingMember],
        options: RingOptions,
        points_of: Callable[[str, int], list[int]],
    ) -> Ring:
        self = object.__new__(cls)
        members = sorted(entries, key=lambda e: e.name)
        self._options = options
        self._entries = tuple(members)
        self._members = tuple(e.name for e in members)
        self._zones = tuple(sorted({e.zone for e in members}))
        zone_index = {zone: i for i, zone in enumerate(self._zones)}
        self._zone_of = [zone_index[e.zone] for e in members]
        # Sort (position, member index) pairs packed into one int: ints sort much faster
        # than tuples. Equal positions (2**-64 odds) go to the lower name, deterministically.
        shift = max(1, len(members).bit_length())
        mask = (1 << shift) - 1
        packed: list[int] = []
        for index, entry in enumerate(members):
            packed.extend((p << shift) | index for p in points_of(entry.name, entry.points))
        packed.sort()
        self._points = [v >> shift for v in packed]
        self._point_owner = [v & mask for v in packed]
        names = self._members
        self._point_name = [names[i] for i in self._point_owner]
        if self._point_name:
            # A position after the last point wraps to the first: bisect may return len.
            self._point_name.append(self._point_name[0])
        digest = blake2b(bytes([_VERSION]), digest_size=8, person=_SUM_PERSON)
        for entry in members:
            for text in (entry.name, entry.zone):
                raw = _name_bytes(text)
                digest.update(len(raw).to_bytes(4, "big") + raw)
            digest.update(entry.points.to_bytes(4, "big"))
        self._checksum = digest.hexdigest()
        self._walks = {}
        return self

    # ------------------------------------------------------------------ the view

    @property
    def options(self) -> RingOptions:
        """The options it was built with."""
        return self._options

    @property
    def members(self) -> tuple[str, ...]:
        """Names of the members on the ring, sorted."""
        return self._members

    @property
    def entries(self) -> tuple[RingMember, ...]:
        """The members on the ring with their zones and points, by name."""
        return self._entries

    @property
    def zones(self) -> tuple[str, ...]:
        """The distinct zones of the members, sorted ("" is the unnamed zone)."""
        return self._zones

    @property
    def checksum(self) -> str:
        """16 hex digits: a digest of the members' names, weights (points) and zones.

        Members that compute the same checksum place every key alike; compare it (or
        publish it in a tag) to know that views agree (ringpop's ring checksum)."""
        return self._checksum

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, name: object) -> bool:
        index = bisect.bisect_left(self._members, name) if isinstance(name, str) else -1
        return 0 <= index < len(self._members) and self._members[index] == name

    def _index(self, name: str) -> int:
        index = bisect.bisect_left(self._members, name)
        if index == len(self._members) or self._members[index] != name:
            raise KeyError(name)
        return index

    def weight(self, name: str) -> float:
        """A member's effective weight (its points / vnodes). KeyError if not on the ring."""
        return self._entries[self._index(name)].points / self._options.vnodes

    def zone(self, name: str) -> str:
        """A member's zone. KeyError if not on the ring."""
        return self._entries[self._index(name)].zone

    def shares(self) -> dict[str, float]:
        """Each member's fraction of the hash space (its expected fraction of keys), by
        name. Sums to 1 unless the ring is empty."""
        owned = [0] * len(self._members)
        points = self._points
        previous = points[-1] - SPACE if points else 0
        for pos, owner in zip(points, self._point_owner, strict=True):
            owned[owner] += pos - previous  # the arc (previous, pos] is this point's
            previous = pos
        return {name: owned[i] / SPACE for i, name in enumerate(self._members)}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return (
            self._checksum == other._checksum
            and self._options.replicas_default == other._options.replicas_default
            and self._options.load_factor == other._options.load_factor
        )

    def __hash__(self) -> int:
        return hash(self._checksum)

    def __repr__(self) -> str:
        return f"<Ring of {len(self._members)} members, checksum {self._checksum}>"

    # ------------------------------------------------------------------ placement

    def owner(self, key: Key) -> str:
        """The member that owns `key`. Raises `EmptyRingError` if no member is up."""
        if not self._points:
            raise EmptyRingError("no member is on the ring")
        data = key.encode() if isinstance(key, str) else key
        pos = int.from_bytes(blake2b(data, digest_size=16, person=_KEY_PERSON).digest()[:8])
        return self._point_name[bisect.bisect_left(self._points, pos)]

    def owner_at(self, pos: int) -> str:
        """The member that owns position `pos` (see `position`)."""
        if not self._points:
            raise EmptyRingError("no member is on the ring")
        return self._point_name[bisect.bisect_left(self._points, pos)]

    def owners(self, key: Key, n: int | None = None) -> list[str]:
        """`n` owners of `key` (default `RingOptions.replicas_default`), the owner first:
        distinct members, in distinct zones as far as the zones go (see the module
        docstring). Fewer than `n` if fewer members are on the ring; [] if none."""
        if n is None:
            n = self._options.replicas_default
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not self._points:
            return []
        start = bisect.bisect_left(self._points, position(key))
        if start == len(self._points):
            start = 0
        want = min(n, len(self._members))
        # Every key whose first point is `start` has the same owners: remember them (at
        # most one entry per point and n, so lookups after the first cost a dict get).
        memo = (want << 32) | start
        found = self._walks.get(memo)
        if found is None:
            found = tuple(self._members[m] for m in self._walk(start, want))
            if want <= _MEMO_REPLICAS:
                self._walks[memo] = found
        return list(found)

    def _walk(self, start: int, want: int) -> list[int]:
        """Member indices of `want` owners for a key whose first point is `start`."""
        owner = self._point_owner
        count = len(owner)
        if len(self._zones) == 1:
            # No zones to spread over: the first `want` distinct members clockwise.
            found: list[int] = []
            seen_one: set[int] = set()
            i = start
            while len(found) < want:
                if i >= count:
                    i = 0
                m = owner[i]
                i += 1
                if m not in seen_one:
                    seen_one.add(m)
                    found.append(m)
            return found
        zone_of = self._zone_of
        zones_total = len(self._zones)
        picked: list[int] = []  # the first member seen of each zone, in walk order
        spare: list[int] = []  # members of zones already taken, in walk order
        seen: set[int] = set()
        taken: set[int] = set()
        i = start
        for _ in range(count):  # at most once round the ring
            if i >= count:
                i = 0
            m = owner[i]
            i += 1
            if m in seen:
                continue
            seen.add(m)
            zone = zone_of[m]
            if zone in taken:
                spare.append(m)
            else:
                taken.add(zone)
                picked.append(m)
                if len(picked) == want:
                    break
            # Every zone taken: later members can only be spares, and enough are in hand.
            if len(taken) == zones_total and len(picked) + len(spare) >= want:
                break
        return picked + spare[: want - len(picked)]

    def assign(
        self,
        keys: Iterable[K],
        *,
        load_factor: float | _Default | None = _Default.RING,
    ) -> Assignment[K]:
        """Place `keys` with bounded loads: no member gets more than
        ``ceil((1 + eps) * len(keys) * weight / total weight)`` keys (with equal weights,
        ``ceil((1 + eps) * mean)``), eps being `load_factor` (default: the ring's; None
        places each key on its plain `owner`).

        Deterministic: the answer depends on the set of keys and the ring, not on the
        order of `keys` (duplicates count once). Raises `EmptyRingError` if there are
        keys and no member is on the ring.
        """
        eps = self._options.load_factor if load_factor is _Default.RING else load_factor
        _check_load_factor(None, None, eps)
        unique = list(dict.fromkeys(keys))
        names = self._members
        if not self._points:
            if unique:
                raise EmptyRingError("no member is on the ring")
            return Assignment(owners={}, loads={}, caps=None, load_factor=eps, displaced=0)
        points = self._points
        count = len(points)
        found = bisect.bisect_left
        from_bytes = int.from_bytes
        # Position (high 64 bits) and arrival order (low 64 bits) of every key.
        digests = [
            from_bytes(
                blake2b(
                    key.encode() if isinstance(key, str) else key,
                    digest_size=16, person=_KEY_PERSON,
                ).digest()
            )
            for key in unique
        ]
        starts = [found(points, d >> 64) for d in digests]
        owner_of_start = [*self._point_owner, self._point_owner[0]]  # len(points) wraps
        plain = [owner_of_start[s] for s in starts]
        counted = Counter(plain)
        loads = [counted[m] for m in range(len(names))]
        caps: list[int] | None = None
        if eps is not None:
            total_points = sum(e.points for e in self._entries)
            # Exact arithmetic on eps as written (repr: 0.05 is 5/100, not the binary
            # float just above it), so a cap of exactly 300 is 300 on every platform.
            scale = (1 + Fraction(repr(eps))) * len(unique)
            caps = [math.ceil(scale * e.points / total_points) for e in self._entries]
        if caps is None or all(load <= cap for load, cap in zip(loads, caps, strict=True)):
            # No member is over its cap with plain placement, so none ever overflows.
            return Assignment(
                owners={key: names[m] for key, m in zip(unique, plain, strict=True)},
                loads=dict(zip(names, loads, strict=True)),
                caps=None if caps is None else dict(zip(names, caps, strict=True)),
                load_factor=eps, displaced=0,
            )

        points_of_member: list[list[int]] = [[] for _ in names]
        for index, m in enumerate(self._point_owner):
            points_of_member[m].append(index)
        # Arrival order: the low 64 bits of each digest (ties, which need a 128-bit
        # collision, by position and then bytes before text).
        rank = [
            ((d & _MASK64) << 65) | ((d >> 64) << 1) | isinstance(key, str)
            for key, d in zip(unique, digests, strict=True)
        ]
        order = sorted(range(len(unique)), key=rank.__getitem__)

        # nxt[i] == i while point i's member has room; a full member's points link to the
        # next point clockwise. Following links (with path halving) from a key's first
        # point finds the first open point. Some member always has room while keys remain
        # (the caps sum to at least the key count), so the search ends.
        nxt = list(range(count))
        point_owner = self._point_owner
        loads = [0] * len(names)
        placed = plain  # overwritten in arrival order
        displaced = 0
        for k in order:
            i = starts[k]
            if i == count:
                i = 0
            if nxt[i] != i:
                while nxt[i] != i:
                    nxt[i] = nxt[nxt[i]]
                    i = nxt[i]
                m = point_owner[i]
                if m != placed[k]:
                    displaced += 1
                    placed[k] = m
            else:
                m = point_owner[i]
            loads[m] += 1
            if loads[m] == caps[m]:
                for p in points_of_member[m]:
                    nxt[p] = p + 1 if p + 1 < count else 0
        return Assignment(
            owners={key: names[m] for key, m in zip(unique, placed, strict=True)},
            loads=dict(zip(names, loads, strict=True)),
            caps=dict(zip(names, caps, strict=True)),
            load_factor=eps,
            displaced=displaced,
        )

    # ------------------------------------------------------------------ changes

    @staticmethod
    def diff(
        old: Ring, new: Ring, keys: Iterable[K] | None = None, *, bounded: bool = False
    ) -> RingDiff[K]:
        """What changed from `old` to `new`: members joined, left or changed, the arcs
        of the hash space that moved, and, if `keys` are given, which of them moved
        (by `owner`, or with ``bounded=True`` by each ring's `assign`)."""
        old_names = set(old._members)
        new_names = set(new._members)
        joined = tuple(sorted(new_names - old_names))
        left = tuple(sorted(old_names - new_names))
        changed = tuple(
            e.name for e in new._entries
            if e.name in old_names and old._entries[old._index(e.name)] != e
        )
        moves: list[Move[K]] = []
        if keys is not None:
            unique = list(dict.fromkeys(keys))
            if bounded:
                before = old.assign(unique) if old._points else None
                after = new.assign(unique) if new._points else None
                for key in unique:
                    was = before[key] if before is not None else None
                    now = after[key] if after is not None else None
                    if was != now:
                        moves.append(Move(key, was, now))
            else:
                for key in unique:
                    was = old.owner(key) if old._points else None
                    now = new.owner(key) if new._points else None
                    if was != now:
                        moves.append(Move(key, was, now))
        return RingDiff(
            joined=joined, left=left, changed=changed,
            ranges=_moved_ranges(old, new), moves=tuple(moves),
        )


def _moved_ranges(old: Ring, new: Ring) -> tuple[RangeMove, ...]:
    # Point p owns the arc (previous point, p], i.e. positions [previous + 1, p + 1). Cut
    # the space at every point + 1 of either ring: each piece has one owner in each.
    cuts = sorted({0, *(p + 1 for p in old._points), *(p + 1 for p in new._points)})
    if cuts[-1] == SPACE:
        cuts.pop()
    ranges: list[RangeMove] = []
    for index, start in enumerate(cuts):
        end = cuts[index + 1] if index + 1 < len(cuts) else SPACE
        was = old.owner_at(start) if old._points else None
        now = new.owner_at(start) if new._points else None
        if was == now:
            continue
        last = ranges[-1] if ranges else None
        if last is not None and last.end == start and (last.old_owner, last.new_owner) == (
            was, now,
        ):
            ranges[-1] = RangeMove(last.start, end, was, now)
        else:
            ranges.append(RangeMove(start, end, was, now))
    return tuple(ranges)


@attrs.frozen(kw_only=True)
class RingChanged:
    """The ring changed: from `old` to `new` (whose checksum is `checksum`), at the time
    of the event that changed it (None for a member list given without one)."""

    old: Ring
    new: Ring
    checksum: str
    at: float | None = None

    def diff(self, keys: Iterable[K] | None = None, *, bounded: bool = False) -> RingDiff[K]:
        """`Ring.diff` of this change."""
        return Ring.diff(self.old, self.new, keys, bounded=bounded)


_UP_EVENTS: Final = (MemberJoined, MemberAlive, MemberUpdated, MemberSuspected)


@attrs.define(eq=False)
class RingTracker:
    """Keeps a `Ring` current from membership events; reports only real changes.

    Feed it a node's member list (``update(node.members())``), then every event
    (``observe(event)``). Each returns a `RingChanged` when the ring changed and None
    otherwise: a metadata change that leaves weight, zone and filters alone, or a member
    turning suspect while suspects count as up, is not a change. Pure: no I/O, no clock;
    the runtime or an application drives it.
    """

    options: RingOptions = attrs.field(factory=RingOptions)
    _entries: dict[str, RingMember] = attrs.field(init=False, factory=dict)
    # Point positions by member name, so a rebuild only merges and sorts.
    _points: dict[str, list[int]] = attrs.field(init=False, factory=dict)
    _ring: Ring = attrs.field(init=False)

    @_ring.default
    def _empty_ring(self) -> Ring:
        return self.options.build(())

    @property
    def ring(self) -> Ring:
        """The current ring."""
        return self._ring

    def observe(self, event: object) -> RingChanged | None:
        """Apply one event: MemberJoined, MemberAlive, MemberUpdated, MemberSuspected,
        MemberFailed or MemberLeft. Any other value is ignored (None)."""
        if isinstance(event, _UP_EVENTS):
            member = event.member
        elif isinstance(event, MemberFailed):
            member = attrs.evolve(event.member, status=MemberStatus.DEAD)
        elif isinstance(event, MemberLeft):
            member = attrs.evolve(event.member, status=MemberStatus.LEFT)
        else:
            return None
        entry = self.options.entry(member)
        if self._entries.get(member.name) == entry:
            return None
        entries = dict(self._entries)
        if entry is None:
            del entries[member.name]
        else:
            entries[member.name] = entry
        return self._rebuild(entries, event.at)

    def update(self, members: Iterable[MemberState], *, at: float | None = None) -> (
        RingChanged | None
    ):
        """Replace the whole membership with `members` (a node's ``members()``)."""
        entries = _entries(self.options, members)
        if entries == self._entries:
            return None
        return self._rebuild(entries, at)

    def _rebuild(self, entries: dict[str, RingMember], at: float | None) -> RingChanged | None:
        cache = self._points
        for name in [name for name in cache if name not in entries]:
            del cache[name]

        def points_of(name: str, count: int) -> list[int]:
            held = cache.get(name)
            if held is None or len(held) < count:
                held = cache[name] = _points_of(name, count)
            return held[:count]

        old = self._ring
        new = Ring._from_entries(entries.values(), self.options, points_of)
        self._entries = entries
        self._ring = new
        if new.checksum == old.checksum:
            return None
        return RingChanged(old=old, new=new, checksum=new.checksum, at=at)
