"""Outsiders that stay silent are forgotten in the stable-view mode (issue 11): a member
removed from the view that then stays unreachable for ``forget_after_s`` is declared
dead by its temporary observers and reaped from every table, so no member probes it
any more; a removed member that comes back is still readmitted, whether it was away for
less than the horizon or for longer (then it refutes its death and rejoins)."""

from __future__ import annotations

import pytest

from simulations.engine import Engine
from simulations.network import NetworkModel
from swim.core import Config
from swim.core.events import ViewChanged
from swim.core.stable import Admission
from tests.router import Router
from tests.test_stable_core import members_of, partitioned_7_3, views

N = 20
CRASHED = 5  # crashes at 10 s: removed from the view, then silent
CUT_THEN_CRASHED = 12  # loses ingress at 10 s (removed), crashes at 40 s
SHORT_FLAPPER = 15  # loses ingress from 10 s to 25 s: shorter than the horizon
LONG_FLAPPER = 17  # loses ingress from 10 s to 70 s: forgotten, then back
FORGET_AFTER_S = 30.0
CONFIG = Config.stable_views(readmit_after_s=10.0, forget_after_s=FORGET_AFTER_S)


def _cut_ingress(engine: Engine, member: int, start: float, stop: float) -> None:
    """Drop every datagram sent to `member` from `start` to `stop`."""
    others = [i for i in range(engine.n) if i != member]

    def cut() -> None:
        pid = engine.partition([others], one_way=True)
        engine.at(stop, engine.heal, pid)

    engine.at(start, cut)


def _datagrams_to(engine: Engine, member: int) -> int:
    n = engine.n
    return sum(count for key, (count, _) in engine.links_bytes.items() if key % n == member)


def _holders(engine: Engine, member: int, observers: list[int]) -> list[int]:
    """The observers whose membership table has an entry for `member`."""
    name = engine.names[member]
    out = []
    for o in observers:
        core = engine.core(o)
        assert core is not None
        if core.membership.get(name) is not None:
            out.append(o)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_silent_outsiders_are_reaped_and_returning_ones_readmitted(seed: int) -> None:
    engine = Engine(nodes=N, config=CONFIG, network=NetworkModel.lan(), seed=seed,
                    link_stats=True)
    engine.bootstrap(range(N))
    engine.at(10.0, engine.crash, CRASHED)
    _cut_ingress(engine, CUT_THEN_CRASHED, 10.0, 1000.0)
    engine.at(40.0, engine.crash, CUT_THEN_CRASHED)
    _cut_ingress(engine, SHORT_FLAPPER, 10.0, 25.0)
    _cut_ingress(engine, LONG_FLAPPER, 10.0, 70.0)
    silent = (CRASHED, CUT_THEN_CRASHED)
    healthy = [i for i in range(N) if i not in silent]
    everyone_healthy = tuple(sorted(engine.names[i] for i in healthy))

    engine.run_until(40.0)
    # Removed by then (a probe every 0.5 s, edges faulty at 2 of 5), still in the tables
    # and watched by their temporary observers.
    for o in healthy:
        core = engine.core(o)
        assert core is not None and core.stable is not None
        conf = core.stable.configuration
        if o not in (SHORT_FLAPPER, LONG_FLAPPER):
            assert conf is not None and engine.names[CRASHED] not in conf, (seed, o)
    assert _holders(engine, CRASHED, healthy) == healthy
    before = [_datagrams_to(engine, m) for m in silent]
    engine.run_until(60.0)
    assert all(_datagrams_to(engine, m) > b for m, b in zip(silent, before, strict=True))

    # Removal (by ~15 s) + the horizon + gossip to the dead (30 s) + slack.
    engine.run_until(130.0)
    quiet_from = [_datagrams_to(engine, m) for m in silent]
    engine.run_until(190.0)
    for m, count in zip(silent, quiet_from, strict=True):
        assert _datagrams_to(engine, m) == count, (seed, m)
        assert _holders(engine, m, healthy) == [], (seed, m)
    forgotten = 0
    for o in healthy:
        core = engine.core(o)
        assert core is not None and core.stable is not None
        forgotten += core.stable.counters.forgotten
        conf = core.stable.configuration
        # Both flappers were readmitted; the view is exactly the healthy members.
        assert conf is not None and conf.members == everyone_healthy, (seed, o)
    # Each silent member was declared dead by some of its temporary observers (the
    # long flapper too, while it was away), not by everyone.
    assert 3 <= forgotten <= 3 * CONFIG.stable.k, (seed, forgotten)
    # And no member raised a SWIM per-member event about it (joined, failed, alive...):
    # the application saw view changes only (the collector counts them as "other").
    assert set(engine.collector.event_counts) == {"other"}, engine.collector.event_counts


def test_the_unreachability_clock() -> None:
    adm = Admission(join_after_s=0.0, readmit_after_s=10.0, forget_after_s=30.0)
    adm.probe_result("x", False, 0.0)
    assert not adm.gone("x", 29.0, 0)
    adm.probe_result("x", True, 29.0)  # one answer restarts the clock
    adm.probe_result("x", False, 30.0)
    assert not adm.gone("x", 59.0, 0)
    assert adm.gone("x", 60.0, 0)
    adm.forgotten("x", 0)
    assert not adm.gone("x", 100.0, 0)  # not tracked any more
    # Brought back at the same incarnation by a stale table: gone at the first failure.
    adm.probe_result("x", False, 200.0)
    assert adm.gone("x", 200.0, 0)
    assert not adm.gone("x", 200.0, 1)  # a refuted death is a new life: wait again
    assert adm.gone("x", 230.0, 1)
    with pytest.raises(ValueError, match="forget_after_s"):
        Admission(join_after_s=0.0, readmit_after_s=1.0, forget_after_s=0.0)


def test_a_minority_forgotten_during_a_long_partition_rejoins_after_the_heal() -> None:
    config = Config.stable_views(Config.local(), readmit_after_s=10.0, forget_after_s=20.0)
    router = Router(seed=2)
    cores, big, small = partitioned_7_3(router, config)
    everyone, majority = members_of(cores), members_of(big)
    router.run_until_true(lambda: views(big) == {majority}, limit_s=60)
    # Past the horizon and gossip to the dead (15 s): the majority forgot the minority.
    router.run_until(router.now + 20.0 + 15.0 + 10.0)
    for c in big:
        assert all(c.membership.get(s.name) is None for s in small), c.name
    router.heal()
    # The minority learns the view it was removed from, gets back into the tables
    # (its push-pull, or the majority's reconnect to its tombstone) and is readmitted.
    router.run_until_true(lambda: views(cores) == {everyone}, limit_s=120)
    for c in big:
        changes = [(ch.removed, ch.joined) for ch in router.events_of(c.name, ViewChanged)]
        assert changes == [(tuple(x.name for x in small), ()),
                           ((), tuple(x.name for x in small))], (c.name, changes)
