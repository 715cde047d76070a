"""Joins at moderate scale in the stable-view mode, on the simulator: members started
over a few seconds, each joining through member 0, end in one identical view."""

from __future__ import annotations

import pytest

from simulations.engine import Engine
from simulations.network import NetworkModel
from swim.core import Config


@pytest.mark.parametrize("seed", [1, 2])
def test_a_join_storm_ends_in_one_view_of_everyone(seed: int) -> None:
    n = 30
    engine = Engine(nodes=n, config=Config.stable_views(), network=NetworkModel.lan(),
                    seed=seed)
    for i in range(n):
        engine.at(5.0 * i / n, engine.start, i)
    everyone = tuple(sorted(engine.names))
    views: set[tuple[str, ...] | None] = set()
    t = 0.0
    while t < 90.0:
        t += 1.0
        engine.run_until(t)
        views = set()
        for i in range(n):
            core = engine.core(i)
            stable = None if core is None else core.stable
            conf = None if stable is None else stable.configuration
            views.add(None if conf is None else conf.members)
        if views == {everyone}:
            break
    assert views == {everyone}, (seed, t, len(views))
    ids = set()
    for i in range(n):
        core = engine.core(i)
        assert core is not None and core.stable is not None
        assert core.stable.configuration is not None
        ids.add(core.stable.configuration.id)
    assert len(ids) == 1
