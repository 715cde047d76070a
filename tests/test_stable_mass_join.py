"""A mass join into a small stable-view cluster ends in one view change within a few
seconds: each temporary observer pings its new joiners at once (admission pings)
instead of reaching them one per protocol period in its probe rotation (30 joiners
into 10 members took 15 s that way, 0.5 s per joiner)."""

from __future__ import annotations

import pytest

from simulations.engine import Engine
from simulations.mass_crash import run_mass_join
from simulations.network import NetworkModel
from swim.core import Config
from swim.core.stable.views import StableCounters


@pytest.mark.parametrize("seed", [1, 2])
def test_thirty_joiners_are_admitted_together_within_seconds(seed: int) -> None:
    r = run_mass_join(Config.stable_views(), nodes=10, joiners=30, seed=seed, limit_s=60.0)
    assert r.all_joined_s is not None and r.all_joined_s <= 6.0, (seed, r)
    assert (r.view_changes_min, r.view_changes_max) == (1, 1), (seed, r)


def test_joiners_get_admission_pings_and_removed_members_do_not() -> None:
    n = 12
    config = Config.stable_views(readmit_after_s=10.0)
    engine = Engine(nodes=n + 1, config=config, network=NetworkModel.lan(), seed=3)
    engine.bootstrap(range(n))
    flapper = 4
    # The flapper loses ingress from 5 s to 20 s and is removed meanwhile.
    engine.at(5.0, lambda: engine.at(
        20.0, engine.heal, engine.partition([[i for i in range(n) if i != flapper]],
                                            one_way=True)))
    engine.run_until(20.0)
    pings_before = sum(_counters(engine, i).admission_pings for i in range(n))
    engine.at(25.0, engine.start, n)  # a new joiner
    engine.run_until(28.0)
    joiner = engine.names[n]
    for i in range(n):
        if i == flapper:
            continue
        core = engine.core(i)
        assert core is not None and core.stable is not None
        conf = core.stable.configuration
        assert conf is not None and engine.names[flapper] not in conf
        # The joiner was vouched for long before the flapper's 10 s of hysteresis.
        assert joiner in conf, i
    pings = sum(_counters(engine, i).admission_pings for i in range(n))
    acks = sum(_counters(engine, i).admission_acks for i in range(n))
    # One ping per temporary observer of the joiner (K rings, at most K distinct), and
    # none for the flapper, watched as an outsider since its removal.
    assert pings_before == 0
    assert 1 <= acks <= pings <= config.stable.k
    engine.run_until(45.0)
    core = engine.core(0)
    assert core is not None and core.stable is not None
    conf = core.stable.configuration
    assert conf is not None and engine.names[flapper] in conf


def _counters(engine: Engine, i: int) -> StableCounters:
    core = engine.core(i)
    assert core is not None and core.stable is not None
    return core.stable.counters


def test_a_member_outside_its_view_compares_views_every_second() -> None:
    import random

    from swim.core import Core
    from swim.core.codec import encode
    from swim.core.messages import Alive, MemberState, ViewDigest
    from tests.router import addr_of, name_of

    config = Config.stable_views()
    core = Core(config, name=name_of(0), addr=addr_of(0), rng=random.Random(4), now=0.0)
    core.join([addr_of(1)], now=0.0)  # joining: no view until a ViewSync arrives
    core.receive_datagram(encode([Alive(MemberState(name_of(1), addr_of(1), 0))]),
                          addr_of(1), now=0.0)
    digests = []
    now = 0.0
    while now < 10.0:
        now = round(now + 0.05, 2)
        core.handle_timer(now=now)
        digests += [now for d in core.poll().datagrams
                    if any(isinstance(m, ViewDigest) for m in d.messages)]
    # Every outsider_digest_interval_s (1 s), not every digest_interval_s (5 s).
    assert config.stable.outsider_digest_interval_s == 1.0
    assert 9 <= len(digests) <= 11, digests
    assert digests[0] <= 1.05
