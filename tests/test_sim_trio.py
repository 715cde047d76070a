"""Trio mode: real `swim.Node` objects over the in-memory network under trio's
MockClock, checked against the same protocol bounds as the engine for the same scenario.

Both modes run the same core, but the trio runtime's task scheduling differs from the
engine's heap, so their times are compared with the bounds, not with each other.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from simulations import Crash, Join, Leave, NetworkModel, Partition, Restart, Scenario, run
from simulations.trio_mode import detection_bound_s, run_nodes, run_trio
from swim.core import Config
from swim.core.timing import suspicion_timeout_min_s

CONFIGS = {"lifeguard": Config.lan(), "swim": Config.lan().plain_swim()}


def crash_scenario(config: Config, seed: int, nodes: int = 6) -> Scenario:
    return Scenario(nodes=nodes, duration_s=60.0, seed=seed, config=config,
                    faults=(Crash(member=nodes - 2, at=10.0),))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("variant", list(CONFIGS))
async def test_crash_is_detected_in_both_modes_within_the_protocol_bound(
    variant: str, seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    sc = crash_scenario(CONFIGS[variant], seed)
    trio_result = await run_nodes(sc)
    engine_result = run(sc)
    cfg = sc.config
    bound = detection_bound_s(cfg, sc.nodes)
    assert bound < sc.duration_s - 10.0  # so "within the bound" means "within the run"
    # No failure can come sooner than one minimum suspicion timeout after the first
    # suspicion (the accuser's timer starts no earlier and never runs shorter).
    min_timeout = suspicion_timeout_min_s(cfg.suspicion_mult, sc.nodes, cfg.probe_interval_s)
    for mode, detections, fps, disagreement in [
        ("trio", trio_result.detections, trio_result.false_positives.total,
         trio_result.disagreement_final),
        ("engine", engine_result.detections, engine_result.false_positives.total,
         engine_result.disagreement_final),
    ]:
        where = f"{mode} mode, {variant}, seed {seed}"
        (d,) = detections
        assert (d.kind, d.name, d.at) == ("crash", "node-4", 10.0), where
        assert d.first_suspected_s is not None, where
        assert d.first_failed_s is not None, where
        assert d.all_know_s is not None, f"{where}: not known to all"
        assert 0 < d.first_suspected_s <= d.first_failed_s <= d.all_know_s <= bound, where
        assert d.first_failed_s - d.first_suspected_s >= min_timeout - 1e-6, where
        assert fps == 0, where
        assert disagreement == 0, where
    (join,) = trio_result.convergence
    assert join.took_s is not None and join.took_s < 5.0
    # About a probe and an ack per member per period, plus gossip.
    assert 1.0 < trio_result.datagrams_out_per_period < 10.0


async def test_leave_and_late_join(autojump_clock: trio.testing.MockClock) -> None:
    sc = Scenario(nodes=6, duration_s=40.0, seed=5,
                  faults=(Join(member=5, at=5.0), Leave(member=3, at=15.0)))
    result = await run_nodes(sc)
    (d,) = result.detections
    assert d.kind == "leave" and d.name == "node-3"
    assert d.all_know_s is not None and d.all_know_s < 5.0
    labels = [c.label for c in result.convergence]
    assert labels == ["join"]
    assert result.false_positives.total == 0
    assert result.disagreement_final == 0
    assert result.event_counts.get("left", 0) >= 4  # every other live member saw it


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(nodes=4, start="converged"),
        Scenario(nodes=4, faults=(Restart(member=1, at=1.0),)),
        Scenario(nodes=4, faults=(Partition(groups=((0, 1), (2, 3)), at=1.0),)),
        Scenario(nodes=4, network=NetworkModel(zones=2)),
        Scenario(nodes=4, faults=(Crash(member=7, at=1.0),)),
    ],
)
def test_what_trio_mode_cannot_model_is_refused(scenario: Scenario) -> None:
    with pytest.raises(ValueError):
        run_trio(scenario)


def test_run_trio_is_the_synchronous_entry_point() -> None:
    result = run_trio(crash_scenario(Config.lan(), seed=4, nodes=5))
    (d,) = result.detections
    assert d.all_know_s is not None and d.all_know_s <= detection_bound_s(Config.lan(), 5)
    assert result.summary_row()["mode"] == "trio"
    assert result.summary_row()["undetected"] == 0
