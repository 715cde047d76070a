"""Simultaneous crashes and joins: one view change each? (issue 11, item c)

`run_mass_crash` starts a converged cluster, crashes `crashes` members (spread over the
indices, never member 0) at the same instant, and samples every live member's view
(`simulations.flipflop.view_of`) every `sample_s` until every live member's view is
exactly the live members, or the run ends. It reports that time, how many view
changes each live member went through (stable mode: `ViewChanged` events; SWIM mode
has none, its views change one `MemberFailed` at a time), the failure events, and
whether any live member was ever missing from a live member's view. With
``trace=True`` it also keeps the live members' view sizes at every sample
(`simulations.flipflop.size_counts`), from the crash on.

`run_mass_join` is the other direction: `joiners` members start together in a
converged cluster of `nodes`, each joining through member 0, and the same sampling
measures how long until every member, old and new, holds the view of all of them,
and the traffic over a fixed window from the joins (``window_s``, or until the views
settled if that is later), so runs that settle at different times compare.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from simulations.engine import Engine
from simulations.flipflop import (
    CountingCollector,
    SizeCount,
    counting_engine,
    row_without_samples,
    size_counts,
    view_of,
)
from simulations.network import NetworkModel
from swim.core import Config


@attrs.frozen(kw_only=True)
class MassCrashResult:
    """What one mass-crash run measured (see the module doc)."""

    mode: str
    nodes: int
    crashes: int
    seed: int
    #: From the crash to every live view being exactly the live members (None: never).
    all_removed_s: float | None
    live_removed: int
    view_changes_min: int
    view_changes_max: int
    failure_events: int
    wall_s: float
    #: With ``trace=True``: the live members' view sizes at every sample.
    samples: tuple[SizeCount, ...] = ()

    def row(self) -> dict[str, Any]:
        """The result as a plain dict (without the samples)."""
        return row_without_samples(self)


def crashed_members(nodes: int, crashes: int) -> list[int]:
    """`crashes` members spread evenly over 1..nodes-1."""
    return [(k + 1) * nodes // (crashes + 1) for k in range(crashes)]


def run_mass_crash(
    config: Config, *, nodes: int, crashes: int, seed: int, at: float = 10.0,
    limit_s: float = 120.0, sample_s: float = 0.5, network: NetworkModel | None = None,
    trace: bool = False,
) -> MassCrashResult:
    """Crash `crashes` members together at `at` and measure until all are removed
    everywhere (or `limit_s` after the crash; `trace`: keep the samples)."""
    started = time.perf_counter()
    engine, coll = counting_engine(config, nodes=nodes, seed=seed, network=network)
    engine.bootstrap(range(nodes))
    gone = set(crashed_members(nodes, crashes))
    for i in sorted(gone):
        engine.at(at, engine.crash, i)
    live = [i for i in range(nodes) if i not in gone]
    target = frozenset(live)
    engine.run_until(at)
    done, removed, traced = _until_views_are(engine, coll, live, target, at=at,
                                             limit_s=limit_s, sample_s=sample_s,
                                             trace=trace)
    changes = [coll.view_changes[o] for o in live]
    return MassCrashResult(
        mode=config.membership_mode, nodes=nodes, crashes=crashes, seed=seed,
        all_removed_s=done, live_removed=len(removed), view_changes_min=min(changes),
        view_changes_max=max(changes),
        failure_events=coll.failed_events + coll.removed_events,
        wall_s=time.perf_counter() - started, samples=tuple(traced),
    )


def _until_views_are(
    engine: Engine, coll: CountingCollector, observers: list[int], target: frozenset[int],
    *, at: float, limit_s: float, sample_s: float, trace: bool,
) -> tuple[float | None, set[int], list[SizeCount]]:
    """Sample the `observers`' views every `sample_s` from `at` until all are exactly
    `target`, or `limit_s` passed: (the time that took or None, the members of
    `target` ever missing from a view held, the traced samples)."""
    removed: set[int] = set()
    traced: list[SizeCount] = []
    t = at
    while t < at + limit_s:
        t += sample_s
        engine.run_until(t)
        views = [view_of(engine, coll, o) for o in observers]
        if trace:
            traced += size_counts(t, (len(v[1]) for v in views if v is not None))
        for view in views:
            if view is not None:
                removed.update(target - view[1])
        if all(view is not None and view[1] == target for view in views):
            return t - at, removed, traced
    return None, removed, traced


@attrs.frozen(kw_only=True)
class MassJoinResult:
    """What one mass-join run measured (see the module doc)."""

    mode: str
    nodes: int
    joiners: int
    seed: int
    #: From the joins to every member holding the view of all (None: never).
    all_joined_s: float | None
    #: View changes each member of the first cluster went through meanwhile.
    view_changes_min: int
    view_changes_max: int
    #: Traffic sent per member (of all) per second, over the window from the joins.
    window_s: float
    datagrams_per_member_s: float
    bytes_per_member_s: float
    wall_s: float

    def row(self) -> dict[str, Any]:
        """The result as a plain dict."""
        return attrs.asdict(self)


def run_mass_join(
    config: Config, *, nodes: int, joiners: int, seed: int, at: float = 10.0,
    limit_s: float = 120.0, sample_s: float = 0.5, network: NetworkModel | None = None,
    window_s: float = 30.0,
) -> MassJoinResult:
    """Start `joiners` members together at `at` in a converged cluster of `nodes`,
    each joining through member 0, and measure until every member holds the view of
    all ``nodes + joiners`` (or `limit_s` after the joins); traffic over `window_s`
    from the joins (longer if the views settle later)."""
    started = time.perf_counter()
    total = nodes + joiners
    engine, coll = counting_engine(config, nodes=total, seed=seed, network=network)
    engine.bootstrap(range(nodes))
    for i in range(nodes, total):
        engine.at(at, engine.start, i)
    engine.run_until(at)
    datagrams, sent = sum(engine.dg_out), _bytes_sent(engine)
    everyone = list(range(total))
    done, _, _ = _until_views_are(engine, coll, everyone, frozenset(everyone), at=at,
                                  limit_s=limit_s, sample_s=sample_s, trace=False)
    engine.run_until(max(engine.now, at + window_s))
    changes = [coll.view_changes[o] for o in range(nodes)]
    window = engine.now - at
    per = 1.0 / (total * window)
    return MassJoinResult(
        mode=config.membership_mode, nodes=nodes, joiners=joiners, seed=seed,
        all_joined_s=done, view_changes_min=min(changes), view_changes_max=max(changes),
        window_s=window, datagrams_per_member_s=(sum(engine.dg_out) - datagrams) * per,
        bytes_per_member_s=(_bytes_sent(engine) - sent) * per,
        wall_s=time.perf_counter() - started,
    )


def _bytes_sent(engine: Engine) -> int:
    """Bytes sent so far by every member, datagrams and streams."""
    return sum(engine.bytes_out) + sum(engine.st_bytes_out)
