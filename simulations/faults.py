"""Faults a scenario schedules: frozen values, so a scenario pickles and compares by value.

Members are named by index (member ``i`` is ``node-i`` at ``10.x.y.z:7946``). Times are
simulated seconds from the start of the run.

Node faults
    `Crash` (the process is gone: it neither sends, receives nor runs timers),
    `Restart` (a fresh process under the same name and address: new `Core`,
    incarnation 0, joins through the seeds), `Leave` (graceful), `Join` (a member that
    starts late), `Pause` (the process is frozen for ``duration_s``: datagrams to it are
    dropped, its timers do not run; optionally repeated, as in Lifeguard's experiments),
    `Slow` (every datagram and stream it receives is handled ``delay_s`` late),
    `Stall` (one or more processes blocked in lock step, as under SIGSTOP, a long GC
    pause or CPU starvation: nothing runs, arrivals wait in a bounded socket buffer,
    and on resume the overdue timers fire and the buffered datagrams are handled; or,
    with ``mode="input"``, only message processing is blocked while timers run and
    the member sends, the Lifeguard paper's slow message processing),
    `Churn` (random crash + restart cycles, expanded from the run's seed).

`Pause` and `Stall` differ in what the world sees: a paused member's datagrams are
dropped and its timers are frozen (they resume where they were, as if no time had
passed for it); a stalled member's datagrams queue (up to ``buffer_datagrams``, the rest
dropped and counted as ``NetworkCounters.overflowed``) and its timers keep their
absolute deadlines, so on resume every overdue one fires at once. `Stall` is the
Lifeguard paper's anomaly; `Pause` is kept for the runs that used it.

Anomalous members
    The metrics tell false positives about *healthy* members from those about members a
    fault acts on (`anomalous_members`): the members of a `Pause`, `Slow` or `Stall`,
    both ends of a `Clog` or `LossWindow`, and the cut-off side of a `Partition`. As
    in the Lifeguard paper's experiments, a member is anomalous for the whole run.

Network faults
    `Partition` (groups that cannot reach each other, symmetric or one-way, with a start
    and a heal time), `Clog` (a link that holds its datagrams until it unclogs, then
    delivers them), `LossWindow` (one-way loss between two members for a while). They
    act on the run's link model (`transport.links.Links`), the same one in the engine
    and in trio mode.

Trio mode (`simulations.trio_mode`) plays every fault except `Pause` and `Stall` (a
`swim.Node` cannot be frozen from outside) with real nodes; `simulations.real_stall`
plays a `Stall` on real processes with SIGSTOP and SIGCONT.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Literal

import attrs

_INF = float("inf")


@attrs.frozen(kw_only=True)
class Crash:
    """Member `member` stops for good at `at`."""

    member: int
    at: float


@attrs.frozen(kw_only=True)
class Restart:
    """Member `member` comes back at `at` as a fresh process (crashing it first if up)."""

    member: int
    at: float


@attrs.frozen(kw_only=True)
class Leave:
    """Member `member` leaves gracefully at `at` (stops once the news went out)."""

    member: int
    at: float


@attrs.frozen(kw_only=True)
class Join:
    """Member `member` is not started with the cluster; it starts and joins at `at`."""

    member: int
    at: float


@attrs.frozen(kw_only=True)
class Pause:
    """Member `member` freezes for `duration_s` from `at`; then runs for `interval_s`;
    `cycles` times in all (Lifeguard's D on / I off anomaly)."""

    member: int
    at: float
    duration_s: float = attrs.field(validator=attrs.validators.gt(0))
    cycles: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    interval_s: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))

    def windows(self) -> list[tuple[float, float]]:
        """The (start, end) of every pause."""
        step = self.duration_s + self.interval_s
        return [(self.at + c * step, self.at + c * step + self.duration_s)
                for c in range(self.cycles)]


StallMode = Literal["process", "input"]


def _int_tuple(members: Iterable[int]) -> tuple[int, ...]:
    return tuple(members)


#: A stalled member's socket buffer holds this many datagrams by default (Linux's
#: default 208 KiB receive buffer holds a few hundred to a few thousand small ones).
STALL_BUFFER_DATAGRAMS = 1000


@attrs.frozen(kw_only=True)
class Stall:
    """`members` stop processing anything for `duration_s` from `at`, then run for
    `interval_s`; `cycles` times in all (the Lifeguard paper's D on / I off anomaly), all
    of them stalled and resumed together.

    While stalled a member runs no timer and handles no input; what it would send it
    does not send. Datagrams that arrive wait in its socket buffer of
    `buffer_datagrams` (the overflow is dropped and counted as
    ``NetworkCounters.overflowed``). Streams to it wait, as the kernel accepts the
    connection: answered on resume if that is before the requester's
    ``tcp_timeout_s``, failed at that timeout otherwise. On resume, at the resume
    instant, the member first runs its timers if its deadline has passed (the core
    runs everything due: probe timeouts, suspicion timeouts, the next probe), then
    handles the buffered datagrams in arrival order, then the stream outcomes that
    arrived meanwhile. A member that is not running when a stall starts is not
    stalled by it (nor by a stall that overlaps one it is already in).

    `mode` is ``"process"`` (the above: the whole process stops, as under SIGSTOP) or
    ``"input"``: only its message processing stops, as when the thread or task that
    reads the socket is starved or blocked. Its timers run on time and what they
    send goes out (it goes on probing, and its probes fail as the acks wait; its
    suspicions time out while the refutations wait); arrivals and streams wait as
    above and are handled on resume. This is the anomaly behind the Lifeguard paper's
    false positives ("refutation of a suspicion can only succeed if it is processed
    by the suspecting member in a timely manner"); real processes cannot be put in it
    from outside, so `simulations.real_stall` plays ``"process"`` only.
    """

    members: tuple[int, ...] = attrs.field(converter=_int_tuple)
    at: float
    duration_s: float = attrs.field(validator=attrs.validators.gt(0))
    cycles: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    interval_s: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    buffer_datagrams: int = attrs.field(default=STALL_BUFFER_DATAGRAMS,
                                        validator=attrs.validators.ge(0))
    mode: StallMode = attrs.field(default="process",
                                  validator=attrs.validators.in_(("process", "input")))

    @members.validator
    def _check_members(self, _: object, members: tuple[int, ...]) -> None:
        if not members:
            raise ValueError("a Stall needs at least one member")
        if len(set(members)) != len(members):
            raise ValueError(f"a Stall names each member once, got {members}")

    def windows(self) -> list[tuple[float, float]]:
        """The (start, end) of every stall."""
        step = self.duration_s + self.interval_s
        return [(self.at + c * step, self.at + c * step + self.duration_s)
                for c in range(self.cycles)]


@attrs.frozen(kw_only=True)
class Slow:
    """Member `member` handles every input `delay_s` late, from `at` until `until`."""

    member: int
    at: float
    delay_s: float = attrs.field(validator=attrs.validators.gt(0))
    until: float = _INF


@attrs.frozen(kw_only=True)
class Partition:
    """From `at` until `heal_at`, members of different `groups` cannot reach each other.

    Members not listed form one more group. With ``one_way=True`` only datagrams from
    ``groups[0]`` to the other groups are dropped (the reverse direction works), which
    also breaks streams between them (TCP needs both directions).
    """

    groups: tuple[tuple[int, ...], ...]
    at: float
    heal_at: float = _INF
    one_way: bool = False


@attrs.frozen(kw_only=True)
class Clog:
    """The link `src` -> `dst` holds every datagram sent on it from `at` until `until`,
    then lets them go (with their normal delay)."""

    src: int
    dst: int
    at: float
    until: float


@attrs.frozen(kw_only=True)
class LossWindow:
    """Datagrams from `src` to `dst` are lost with probability `loss` during
    [`at`, `until`); the reverse direction is unaffected (asymmetric loss)."""

    src: int
    dst: int
    at: float
    until: float = _INF
    loss: float = attrs.field(
        default=1.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )


@attrs.frozen(kw_only=True)
class Churn:
    """Random crash/restart cycles among `members` between `start` and `end`.

    Crashes arrive as a Poisson process of rate `rate_per_s` over the whole cluster
    (each picks a random member that is up); the member restarts `down_s` later.
    Expanded deterministically from the run's seed by `expand`.
    """

    start: float
    end: float
    rate_per_s: float = attrs.field(validator=attrs.validators.gt(0))
    down_s: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    #: Candidate members (empty: every member except the seeds).
    members: tuple[int, ...] = ()

    def expand(self, rng: random.Random, candidates: list[int]) -> list[Crash | Restart]:
        """The concrete crashes and restarts, drawn from `rng`."""
        pool = list(self.members) or candidates
        down_until: dict[int, float] = {}
        out: list[Crash | Restart] = []
        t = self.start
        while pool:
            t += rng.expovariate(self.rate_per_s)
            if t >= self.end:
                break
            up = [m for m in pool if down_until.get(m, -1.0) <= t]
            if not up:
                continue
            member = up[int(rng.random() * len(up))]
            down_until[member] = t + self.down_s
            out.append(Crash(member=member, at=t))
            out.append(Restart(member=member, at=t + self.down_s))
        return out


Fault = (
    Crash | Restart | Leave | Join | Pause | Stall | Slow | Partition | Clog | LossWindow | Churn
)


def partition_side(f: Partition, nodes: int) -> tuple[int, ...]:
    """The members a partition cuts off, sorted: ``groups[0]`` of a one-way partition
    (its datagrams to the rest are dropped); otherwise every group but the largest (the
    unlisted members form the last group; of equal sizes the first listed is kept)."""
    if f.one_way:
        return tuple(sorted(set(f.groups[0])))
    listed = {m for group in f.groups for m in group}
    groups = [set(g) for g in f.groups] + [set(range(nodes)) - listed]
    keep = max(range(len(groups)), key=lambda k: (len(groups[k]), -k))
    return tuple(sorted(m for k, g in enumerate(groups) if k != keep for m in g))


def anomalous_members(faults: tuple[Fault, ...], nodes: int) -> set[int]:
    """The members the faults act on, anomalous for the whole run in the metrics (the
    module doc): `Pause`, `Slow` and `Stall` members, both ends of a `Clog` or a
    `LossWindow`, the cut-off side of a `Partition` (`partition_side`). Crashes,
    restarts, leaves, joins and churn make members down, not anomalous."""
    out: set[int] = set()
    for f in faults:
        match f:
            case Pause() | Slow():
                out.add(f.member)
            case Stall():
                out.update(f.members)
            case Clog() | LossWindow():
                out.update((f.src, f.dst))
            case Partition():
                out.update(partition_side(f, nodes))
            case _:
                pass
    return {m for m in out if 0 <= m < nodes}
