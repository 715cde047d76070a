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
    `Churn` (random crash + restart cycles, expanded from the run's seed).

Network faults
    `Partition` (groups that cannot reach each other, symmetric or one-way, with a start
    and a heal time), `Clog` (a link that holds its datagrams until it unclogs, then
    delivers them), `LossWindow` (one-way loss between two members for a while). They
    act on the run's link model (`transport.links.Links`), the same one in the engine
    and in trio mode.

Trio mode (`simulations.trio_mode`) plays every fault except `Pause` (a `swim.Node`
cannot be frozen from outside) with real nodes.
"""

from __future__ import annotations

import random

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


Fault = Crash | Restart | Leave | Join | Pause | Slow | Partition | Clog | LossWindow | Churn
