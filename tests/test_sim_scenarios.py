"""Protocol behaviour in short simulated runs, over several seeds.

Every assertion message carries the seed, so a failure can be replayed with
``run(Scenario(..., seed=S))`` or ``swim sim --seed S``.
"""

from __future__ import annotations

import attrs
import pytest

from simulations import (
    Churn,
    Crash,
    Join,
    Leave,
    NetworkModel,
    Partition,
    Pause,
    Restart,
    Scenario,
    Slow,
    run,
)
from swim.core import Config

SEEDS = [1, 2, 3]


def suspicion_max_s(config: Config, n: int) -> float:
    import math

    return (config.suspicion_mult * max(1.0, math.log10(n)) * config.probe_interval_s
            * config.suspicion_max_timeout_mult)


@pytest.mark.parametrize("seed", SEEDS)
def test_crash_is_detected_and_known_to_all(seed: int) -> None:
    sc = Scenario(nodes=20, duration_s=60.0, seed=seed, faults=(Crash(member=13, at=10.0),))
    result = run(sc)
    (d,) = result.detections
    assert d.kind == "crash" and d.name == "node-13"
    assert d.first_suspected_s is not None and d.first_suspected_s < 5.0, f"seed {seed}"
    assert d.first_failed_s is not None, f"seed {seed}"
    assert d.all_know_s is not None, f"seed {seed}: not known to all"
    assert d.all_know_s <= suspicion_max_s(sc.config, 20) + 5.0, f"seed {seed}"
    assert d.first_suspected_s <= d.first_failed_s <= d.all_know_s
    assert result.false_positives.total == 0, f"seed {seed}"
    assert result.disagreement_final == 0, f"seed {seed}"


@pytest.mark.parametrize("seed", SEEDS)
def test_quiet_cluster_has_no_false_positives(seed: int) -> None:
    result = run(Scenario(nodes=30, duration_s=60.0, seed=seed, join_stagger_s=2.0))
    assert result.false_positives.total == 0, f"seed {seed}"
    assert result.event_counts.get("suspected", 0) == 0, f"seed {seed}"
    (join,) = result.convergence
    assert join.took_s is not None and join.took_s < 5.0, f"seed {seed}"
    assert result.distinct_views_final == 1
    # SWIM's constant load: about a ping and an ack out per member per period, plus
    # gossip; the first seconds' join traffic raises the mean a little.
    assert 1.5 < result.traffic.datagrams_out_per_period_mean < 4.0, f"seed {seed}"


@pytest.mark.parametrize("seed", SEEDS)
def test_partition_then_heal_reconverges(seed: int) -> None:
    halves = (tuple(range(8)), tuple(range(8, 16)))
    sc = Scenario(nodes=16, duration_s=120.0, seed=seed,
                  faults=(Partition(groups=halves, at=10.0, heal_at=50.0),))
    result = run(sc)
    heal = [c for c in result.convergence if c.label.startswith("heal")]
    assert len(heal) == 1
    assert heal[0].took_s is not None, f"seed {seed}: never reconverged"
    assert result.disagreement_final == 0, f"seed {seed}"
    # Each side declared the other failed meanwhile: failures about live members.
    assert result.false_positives.total > 0
    assert result.network.blocked > 0 and result.network.streams_failed > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_loss_raises_suspicions_that_are_refuted(seed: int) -> None:
    config = attrs.evolve(Config.lan(), tcp_fallback_ping=False)
    sc = Scenario(nodes=20, duration_s=60.0, seed=seed, config=config,
                  network=NetworkModel.lan().with_loss(0.3))
    result = run(sc)
    suspected = result.event_counts.get("suspected", 0)
    refuted = result.event_counts.get("alive", 0)
    assert suspected > 0, f"seed {seed}"
    assert refuted > 0, f"seed {seed}"
    # Nearly every suspicion is refuted before it times out.
    assert result.false_positives.total <= suspected // 10, f"seed {seed}"
    assert result.network.lost > 0


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_restart_under_the_same_name_rejoins(seed: int) -> None:
    sc = Scenario(nodes=12, duration_s=90.0, seed=seed,
                  faults=(Crash(member=5, at=10.0), Restart(member=5, at=40.0)))
    result = run(sc)
    (d,) = result.detections
    assert d.all_know_s is not None, f"seed {seed}"
    (restart,) = [c for c in result.convergence if c.label == "restart-5"]
    assert restart.took_s is not None and restart.took_s < 10.0, f"seed {seed}"
    assert result.disagreement_final == 0
    assert result.false_positives.total == 0, f"seed {seed}"


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_graceful_leave_is_left_not_failed(seed: int) -> None:
    sc = Scenario(nodes=12, duration_s=30.0, seed=seed, faults=(Leave(member=4, at=10.0),))
    result = run(sc)
    (d,) = result.detections
    assert d.kind == "leave"
    assert d.all_know_s is not None and d.all_know_s < 3.0, f"seed {seed}"
    assert d.first_failed_s is None
    assert result.event_counts.get("left") == 11
    assert result.false_positives.total == 0


def test_late_join_converges() -> None:
    sc = Scenario(nodes=10, duration_s=30.0, seed=4, faults=(Join(member=9, at=15.0),))
    result = run(sc)
    (late,) = [c for c in result.convergence if c.label == "join-9"]
    assert late.took_s is not None and late.took_s < 3.0
    assert result.members[9].up_s == pytest.approx(15.0)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_long_pause_is_a_false_positive_about_a_faulty_member(seed: int) -> None:
    sc = Scenario(nodes=12, duration_s=90.0, seed=seed,
                  faults=(Pause(member=6, at=10.0, duration_s=40.0),))
    result = run(sc)
    fp = result.false_positives
    assert fp.total > 0, f"seed {seed}"
    assert fp.about_healthy == 0, f"seed {seed}"
    assert all(s.subject == "node-6" for s in fp.samples)
    # After resuming it refutes and everyone sees it again.
    assert result.disagreement_final == 0, f"seed {seed}"


def test_pause_cycles_and_slow_member_are_faulty_not_healthy() -> None:
    sc = Scenario(nodes=16, duration_s=80.0, seed=5, faults=(
        Pause(member=3, at=10.0, duration_s=3.0, cycles=6, interval_s=5.0),
        Slow(member=9, at=10.0, delay_s=0.8, until=60.0),
    ))
    result = run(sc)
    assert result.event_counts.get("suspected", 0) > 0
    assert result.false_positives.about_healthy == 0
    assert result.scenario["faults"][0]["cycles"] == 6


def test_churn_is_deterministic_and_settles() -> None:
    sc = Scenario(nodes=16, duration_s=120.0, seed=8, trace=True,
                  faults=(Churn(start=10.0, end=50.0, rate_per_s=0.1, down_s=8.0),))
    a, b = run(sc), run(sc)
    assert a.trace_digest == b.trace_digest
    crashes = [d for d in a.detections if d.kind == "crash"]
    assert len(crashes) >= 2
    assert a.disagreement_final == 0


def test_lifeguard_tolerates_a_slow_member_better_than_plain_swim() -> None:
    """A CPU-starved member (inputs handled late) accuses healthy members in plain SWIM;
    Lifeguard's nacks and local health keep it quiet."""
    def fp(config: Config) -> int:
        total = 0
        for seed in (1, 2, 3, 4):
            sc = Scenario(nodes=16, duration_s=80.0, seed=seed, config=config,
                          start="converged",
                          faults=(Slow(member=5, at=5.0, delay_s=1.5),))
            total += run(sc).false_positives.about_healthy
        return total

    lifeguard = fp(Config.lan())
    plain = fp(Config.lan().plain_swim())
    assert plain > 0
    assert lifeguard < plain
