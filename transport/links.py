"""The link model: one description of an in-memory network, shared by every network that
only pretends to be one (the in-memory transport, the simulator's engine, the core tests'
router), so they delay, lose, duplicate, cut and hold packets the same way.

Pure code: no trio, no clock, no I/O. The caller passes ``now`` and owns delivery; a
`Links` object only *decides*. Endpoints are any hashable keys: the engine uses member
indices, the in-memory transport and the router `Address` tuples.

What it holds
    Static: a `LinkClass` (delay ``delay_min_s`` plus exponential, uniform or no jitter,
    loss, duplication, stream loss) for links inside a zone and optionally another for
    links between zones; a zone per endpoint (default 0); permanent one-way loss.
    Dynamic: partitions (groups, symmetric or one-way, each with an id to heal it by),
    one-way loss or blocks (until healed or until a given time) and clogs (a link that
    holds its datagrams until a given time).

One datagram (`Links.datagram`), in this order. Random draws come from ``rng`` exactly
where stated and nowhere else, so the same seed and the same sends give the same fates:

1. a partition separating ``src`` from ``dst`` drops it (`Drop.PARTITIONED`, no draw);
2. one-way loss ``p`` from ``src`` to ``dst`` (the larger of the permanent and the
   timed one): ``p >= 1`` drops it without a draw, ``0 < p < 1`` draws once
   (`Drop.ONE_WAY`);
3. the link class's ``loss``, if non-zero: one draw (`Drop.LOST`);
4. its ``duplicate``, if non-zero: one draw; a duplicate is a second copy;
5. each copy's delay, ``delay_min_s`` plus one jitter draw: ``expovariate(1 /
   jitter_s)`` for exponential, ``random() * 2 * jitter_s`` for uniform, no draw for
   none or a zero ``jitter_s``;
6. a clog on ``src -> dst`` until ``t > now`` adds ``t - now`` to every copy.

Fast path. While `Links.impaired` is False (no partition, one-way loss or clog), steps 1,
2 and 6 do nothing and a datagram's fate depends on its link class only; `link_params`
and `cross_params` give it as a `LinkParams` tuple, so a hot loop (the engine's) may run
steps 3-5 inline with the same draws in the same order. A test checks that the engine's
inline path and `datagram` give the same trace.

Streams model TCP: the link's random ``loss`` never applies (TCP retransmits); an
exchange needs both directions (`connectable`: no partition either way, no one-way loss
of 1 either way), may fail at random with the link class's ``stream_loss`` (0 in every
named profile; the core tests' router uses it for "lose everything with probability p"),
and each leg takes `delay` (steps 5 without loss or duplication). Clogs hold datagrams
only. When and how often to ask (at the start of an exchange, at the request's arrival)
is the network's choice; the answers are the model's.

Timed state (a one-way loss with ``until``, a clog) expires by itself: whatever asks at or
after its end no longer sees it.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Final, Generic, Literal, NamedTuple, TypeVar

import attrs

__all__ = [
    "JITTER_EXPONENTIAL",
    "JITTER_NONE",
    "JITTER_UNIFORM",
    "Drop",
    "Fate",
    "Jitter",
    "LinkClass",
    "LinkParams",
    "Links",
]

K = TypeVar("K", bound=Hashable)

Jitter = Literal["exponential", "uniform", "none"]

#: `LinkParams.kind`: no random delay.
JITTER_NONE: Final = 0
#: `LinkParams.kind`: exponential random delay of mean ``jitter_s``.
JITTER_EXPONENTIAL: Final = 1
#: `LinkParams.kind`: uniform random delay on ``[0, 2 * jitter_s]``.
JITTER_UNIFORM: Final = 2

_INF: Final = math.inf


def _probability() -> Any:
    return attrs.field(default=0.0, validator=[attrs.validators.ge(0.0),
                                               attrs.validators.le(1.0)])


@attrs.frozen(kw_only=True)
class LinkClass:
    """Delay, loss and duplication of one kind of link."""

    #: Name shown in results ("lan", "wan"...).
    name: str = "lan"
    #: Fixed part of the one-way delay.
    delay_min_s: float = attrs.field(default=0.0002, validator=attrs.validators.ge(0))
    #: Mean of the random part of the one-way delay.
    jitter_s: float = attrs.field(default=0.0003, validator=attrs.validators.ge(0))
    #: Distribution of the random part.
    jitter: Jitter = attrs.field(
        default="exponential", validator=attrs.validators.in_(("exponential", "uniform", "none"))
    )
    #: Independent probability that a datagram is lost.
    loss: float = _probability()
    #: Independent probability that a datagram is delivered twice.
    duplicate: float = _probability()
    #: Independent probability that a stream exchange fails (as a connection that times
    #: out). 0 in the named profiles: TCP retransmits what the link loses.
    stream_loss: float = _probability()

    @classmethod
    def lan(cls) -> LinkClass:
        """A data-centre LAN: 0.2 ms plus exponential jitter of mean 0.3 ms."""
        return cls(name="lan", delay_min_s=0.0002, jitter_s=0.0003)

    @classmethod
    def wan(cls) -> LinkClass:
        """A wide-area link: 30 ms plus uniform jitter of mean 10 ms."""
        return cls(name="wan", delay_min_s=0.030, jitter_s=0.010, jitter="uniform")

    @classmethod
    def local(cls) -> LinkClass:
        """One host's loopback: 50 us plus exponential jitter of mean 50 us."""
        return cls(name="local", delay_min_s=0.00005, jitter_s=0.00005)

    @classmethod
    def fixed(cls, delay_s: float, *, name: str = "fixed") -> LinkClass:
        """A link of constant delay `delay_s`: no jitter, no loss."""
        return cls(name=name, delay_min_s=delay_s, jitter_s=0.0, jitter="none")

    def mean_delay_s(self) -> float:
        """Expected one-way delay."""
        return self.delay_min_s + (0.0 if self.jitter == "none" else self.jitter_s)

    def params(self) -> LinkParams:
        """This class as the flat tuple a hot loop unpacks."""
        kind = {"exponential": JITTER_EXPONENTIAL, "uniform": JITTER_UNIFORM,
                "none": JITTER_NONE}[self.jitter]
        if self.jitter_s == 0:
            kind = JITTER_NONE
        rate = 1.0 / self.jitter_s if kind == JITTER_EXPONENTIAL else 0.0
        return LinkParams(self.delay_min_s, self.jitter_s, kind, rate, self.loss,
                          self.duplicate)


class LinkParams(NamedTuple):
    """A `LinkClass` flattened for steps 3-5 of the datagram decision."""

    delay_min_s: float
    #: Mean of the random part (uniform draws ``random() * 2 * jitter_s``).
    jitter_s: float
    #: `JITTER_NONE`, `JITTER_EXPONENTIAL` or `JITTER_UNIFORM`.
    kind: int
    #: ``1 / jitter_s`` for exponential jitter (the ``expovariate`` argument), else 0.
    rate: float
    loss: float
    duplicate: float


class Drop(enum.Enum):
    """Why a datagram was dropped, or a stream exchange cannot happen."""

    #: Lost at random on its link class (`LinkClass.loss`, `LinkClass.stream_loss`), or
    #: by a caller's route override.
    LOST = "lost"
    #: A partition separates the two ends.
    PARTITIONED = "partitioned"
    #: One-way loss (or a block) from the sender to the receiver.
    ONE_WAY = "one_way"

    @property
    def blocked(self) -> bool:
        """Dropped by the network's configuration (a partition or one-way loss), not by
        the link's random loss."""
        return self is not Drop.LOST


@attrs.frozen
class Fate:
    """What happens to one datagram: the arrival time of each copy (none: dropped)."""

    #: Absolute arrival times, one per delivered copy, in draw order.
    arrivals: tuple[float, ...]
    #: Why it was dropped (None when delivered).
    drop: Drop | None = None
    #: A second copy was made (step 4).
    duplicated: bool = False
    #: A clog held its copies (step 6).
    clogged: bool = False


_LOST: Final = Fate((), Drop.LOST)
_PARTITIONED: Final = Fate((), Drop.PARTITIONED)
_ONE_WAY: Final = Fate((), Drop.ONE_WAY)


class _Partition(Generic[K]):
    __slots__ = ("one_way", "rest", "side")

    def __init__(self, side: dict[K, int], rest: int, one_way: bool) -> None:
        self.side = side
        self.rest = rest
        self.one_way = one_way

    def cuts(self, src: K, dst: K) -> bool:
        s = self.side.get(src, self.rest)
        return s != self.side.get(dst, self.rest) and (not self.one_way or s == 0)


class Links(Generic[K]):
    """The network between endpoints of type `K` (see the module docstring).

    `rng` is the only source of randomness. `link` and `cross_zone` may be replaced at
    any time (the parameters are recomputed).
    """

    def __init__(
        self,
        *,
        rng: random.Random,
        link: LinkClass | None = None,
        cross_zone: LinkClass | None = None,
        zones: Mapping[K, int] | None = None,
        one_way: Mapping[tuple[K, K], float] | None = None,
    ) -> None:
        self.rng = rng
        self._link = link if link is not None else LinkClass.lan()
        self._cross: LinkClass | None = cross_zone
        self._zone: dict[K, int] = dict(zones or {})
        #: Parameters of links inside a zone.
        self.link_params = self._link.params()
        #: Parameters of links between zones (None: there is no cross-zone class).
        self.cross_params: LinkParams | None = None if cross_zone is None else cross_zone.params()
        self._static_loss: dict[tuple[K, K], float] = {}
        for key, loss in (one_way or {}).items():
            _check_probability(loss)
            if loss > 0:
                self._static_loss[key] = loss
        # (src, dst) -> (loss, until).
        self._loss: dict[tuple[K, K], tuple[float, float]] = {}
        self._clogs: dict[tuple[K, K], float] = {}
        self._partitions: dict[int, _Partition[K]] = {}
        self._next_pid = 1
        # Ends of timed state, earliest first: (until, kind, key); stale entries are
        # skipped when popped.
        self._expiries: list[tuple[float, int, tuple[K, K]]] = []
        self._next_expiry = _INF
        #: True while a partition, one-way loss or clog exists: the fast path (steps 3-5
        #: inline from `link_params` / `cross_params`) is then not enough.
        self.impaired = False
        self._refresh()

    # ------------------------------------------------------------------ static part

    @property
    def link(self) -> LinkClass:
        """The link class inside a zone."""
        return self._link

    @link.setter
    def link(self, value: LinkClass) -> None:
        self._link = value
        self.link_params = value.params()

    @property
    def cross_zone(self) -> LinkClass | None:
        """The link class between zones (None: the same as `link`)."""
        return self._cross

    @cross_zone.setter
    def cross_zone(self, value: LinkClass | None) -> None:
        self._cross = value
        self.cross_params = None if value is None else value.params()

    def set_zone(self, key: K, zone: int) -> None:
        """Put endpoint `key` in `zone` (every endpoint starts in zone 0)."""
        self._zone[key] = zone

    def zone_of(self, key: K) -> int:
        return self._zone.get(key, 0)

    def link_between(self, src: K, dst: K) -> LinkClass:
        """The link class from `src` to `dst`."""
        if self._cross is None or self._zone.get(src, 0) == self._zone.get(dst, 0):
            return self._link
        return self._cross

    def params(self, src: K, dst: K) -> LinkParams:
        """`link_between` as `LinkParams`."""
        cross = self.cross_params
        if cross is None or self._zone.get(src, 0) == self._zone.get(dst, 0):
            return self.link_params
        return cross

    # ------------------------------------------------------------------ dynamic part

    def partition(self, groups: Iterable[Iterable[K]], *, one_way: bool = False) -> int:
        """Split the endpoints into `groups` (the unlisted form one more); returns the
        partition's id for `heal`. Partitions add up: a packet passes only if no
        partition cuts it. With `one_way`, only traffic from ``groups[0]`` to the other
        groups is cut (streams, which need both directions, are cut both ways).
        """
        side: dict[K, int] = {}
        count = 0
        for index, group in enumerate(groups):
            count = index + 1
            for key in group:
                if side.setdefault(key, index) != index:
                    raise ValueError(f"{key} is in two partition groups")
        pid = self._next_pid
        self._next_pid += 1
        self._partitions[pid] = _Partition(side, count, one_way)
        self._refresh()
        return pid

    def heal(self, pid: int) -> bool:
        """End partition `pid`; False if there is no such partition (any more)."""
        healed = self._partitions.pop(pid, None) is not None
        self._refresh()
        return healed

    def heal_all(self) -> None:
        """End every partition, one-way loss set by `set_loss` and clog (the permanent
        one-way loss given to the constructor stays)."""
        self._partitions.clear()
        self._loss.clear()
        self._clogs.clear()
        self._expiries.clear()
        self._next_expiry = _INF
        self._refresh()

    def set_loss(self, src: K, dst: K, loss: float, *, until: float = _INF) -> None:
        """One-way loss `loss` from `src` to `dst` (1: a block) until `until` (replacing
        any set before on that direction; 0 removes it). It adds to the permanent one:
        the larger applies."""
        _check_probability(loss)
        key = (src, dst)
        if loss > 0:
            self._loss[key] = (loss, until)
            self._expire_at(until, 0, key)
        else:
            self._loss.pop(key, None)
        self._refresh()

    def clog(self, src: K, dst: K, until: float) -> None:
        """Hold every datagram sent from `src` to `dst` until `until`, then let it go
        with its normal delay (replacing any clog on that direction)."""
        key = (src, dst)
        self._clogs[key] = until
        self._expire_at(until, 1, key)
        self._refresh()

    def one_way_loss(self, src: K, dst: K, now: float) -> float:
        """The one-way loss from `src` to `dst` at `now` (permanent or timed)."""
        if now >= self._next_expiry:
            self._expire(now)
        key = (src, dst)
        loss = self._static_loss.get(key, 0.0)
        timed = self._loss.get(key)
        if timed is not None and timed[0] > loss:
            loss = timed[0]
        return loss

    def cut(self, src: K, dst: K) -> bool:
        """A partition cuts the way from `src` to `dst`."""
        return any(p.cuts(src, dst) for p in self._partitions.values())

    def reachable(self, src: K, dst: K, now: float) -> bool:
        """Neither a partition nor a one-way block (loss 1) stops `src` -> `dst` now."""
        return not self.cut(src, dst) and self.one_way_loss(src, dst, now) < 1

    def _expire_at(self, until: float, kind: int, key: tuple[K, K]) -> None:
        if until != _INF:
            heapq.heappush(self._expiries, (until, kind, key))
            self._next_expiry = self._expiries[0][0]

    def _expire(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            until, kind, key = heapq.heappop(expiries)
            if kind == 0:
                timed = self._loss.get(key)
                if timed is not None and timed[1] == until:
                    del self._loss[key]
            elif self._clogs.get(key) == until:
                del self._clogs[key]
        self._next_expiry = expiries[0][0] if expiries else _INF
        self._refresh()

    def _refresh(self) -> None:
        self.impaired = bool(self._partitions or self._static_loss or self._loss
                             or self._clogs)

    # ------------------------------------------------------------------ decisions

    def datagram(
        self, src: K, dst: K, now: float,
        route: Callable[[], Sequence[float]] | None = None,
    ) -> Fate:
        """The fate of one datagram sent from `src` to `dst` at `now` (steps 1-6).

        `route`, if given, replaces steps 3-5 (loss, duplication, jitter): it is called
        only if the datagram got past steps 1-2 and returns each copy's delay beyond
        ``delay_min_s`` (negative counts as 0; empty: lost, `Drop.LOST`).
        """
        if now >= self._next_expiry:
            self._expire(now)
        if self._partitions and self.cut(src, dst):
            return _PARTITIONED
        rng = self.rng
        if self._static_loss or self._loss:
            loss = self.one_way_loss(src, dst, now)
            if loss > 0 and (loss >= 1 or rng.random() < loss):
                return _ONE_WAY
        dmin, jit, kind, rate, loss, dup = self.params(src, dst)
        duplicated = False
        if route is not None:
            extras = route()
            if not extras:
                return _LOST
            duplicated = len(extras) > 1
            arrivals = tuple(now + dmin + (e if e > 0.0 else 0.0) for e in extras)
        else:
            if loss and rng.random() < loss:
                return _LOST
            duplicated = bool(dup) and rng.random() < dup
            if kind == JITTER_EXPONENTIAL:
                first = now + dmin + rng.expovariate(rate)
                arrivals = (first, now + dmin + rng.expovariate(rate)) if duplicated \
                    else (first,)
            elif kind == JITTER_UNIFORM:
                first = now + dmin + rng.random() * 2.0 * jit
                arrivals = (first, now + dmin + rng.random() * 2.0 * jit) if duplicated \
                    else (first,)
            else:
                first = now + dmin
                arrivals = (first, first) if duplicated else (first,)
        clogged = False
        if self._clogs:
            until = self._clogs.get((src, dst))
            if until is not None and until > now:
                clogged = True
                arrivals = tuple(t + (until - now) for t in arrivals)
        if not duplicated and not clogged:
            return Fate(arrivals)
        return Fate(arrivals, None, duplicated, clogged)

    def sample(self, src: K, dst: K) -> tuple[float, ...]:
        """Steps 3-5 alone: each copy's delay beyond ``delay_min_s`` (empty: lost), as
        `datagram` would draw them on an unimpaired network."""
        _, jit, kind, rate, loss, dup = self.params(src, dst)
        rng = self.rng
        if loss and rng.random() < loss:
            return ()
        copies = 2 if dup and rng.random() < dup else 1
        return tuple(_jitter(rng, kind, jit, rate) for _ in range(copies))

    def jitter(self, src: K, dst: K) -> float:
        """One draw of the random part of the delay from `src` to `dst` (step 5)."""
        _, jit, kind, rate, _, _ = self.params(src, dst)
        return _jitter(self.rng, kind, jit, rate)

    def delay(self, src: K, dst: K) -> float:
        """One leg of a stream from `src` to `dst`: ``delay_min_s`` plus one jitter
        draw (no loss, no duplication, no clog)."""
        dmin, jit, kind, rate, _, _ = self.params(src, dst)
        return dmin + _jitter(self.rng, kind, jit, rate)

    def connectable(self, src: K, dst: K, now: float) -> Drop | None:
        """Whether a stream between `src` and `dst` can be set up: both directions must
        pass partitions and one-way blocks (TCP needs both). None: it can. No draw."""
        if self._partitions and (self.cut(src, dst) or self.cut(dst, src)):
            return Drop.PARTITIONED
        if (self._static_loss or self._loss) and (
            self.one_way_loss(src, dst, now) >= 1 or self.one_way_loss(dst, src, now) >= 1
        ):
            return Drop.ONE_WAY
        return None

    def stream_lost(self, src: K, dst: K) -> bool:
        """Draw whether a stream exchange from `src` to `dst` fails at random (one draw
        if the link class's ``stream_loss`` is non-zero, none otherwise)."""
        p = self.link_between(src, dst).stream_loss
        return bool(p) and self.rng.random() < p

    def stream(self, src: K, dst: K, now: float) -> Drop | None:
        """`connectable`, then `stream_lost`: why the exchange fails, or None."""
        drop = self.connectable(src, dst, now)
        if drop is None and self.stream_lost(src, dst):
            return Drop.LOST
        return drop


def _jitter(rng: random.Random, kind: int, jit: float, rate: float) -> float:
    if kind == JITTER_EXPONENTIAL:
        return rng.expovariate(rate)
    if kind == JITTER_UNIFORM:
        return rng.random() * 2.0 * jit
    return 0.0


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a loss probability must be in [0, 1]: {p!r}")
