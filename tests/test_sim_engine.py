"""The simulator's engine and network model: determinism, delivery modes, impairments."""

from __future__ import annotations

import pickle
from typing import Any

import attrs
import pytest

from simulations import (
    Clog,
    Crash,
    LinkClass,
    LossWindow,
    NetworkModel,
    OneWayLoss,
    Partition,
    Scenario,
    Simulation,
    run,
)
from simulations.engine import Engine
from swim.core import Config


def small(seed: int, **kw: Any) -> Scenario:
    base = Scenario(nodes=12, duration_s=40.0, seed=seed, trace=True,
                    faults=(Crash(member=7, at=10.0),))
    return attrs.evolve(base, **kw)


# ------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("mode", ["wire", "object"])
def test_same_seed_same_trace(mode: str) -> None:
    a = run(small(11, mode=mode))
    b = run(small(11, mode=mode))
    assert a.trace_digest is not None
    assert a.trace_digest == b.trace_digest, f"seed {a.seed}"
    assert a.detections == b.detections
    assert a.seed == 11 and a.scenario["seed"] == 11


def test_different_seed_different_trace() -> None:
    assert run(small(11)).trace_digest != run(small(12)).trace_digest


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wire_mode_equals_object_mode(seed: int) -> None:
    # Lossy, duplicating, with a partition, a restart and push-pulls: every path.
    network = NetworkModel.lan().with_loss(0.05).with_duplicates(0.02)
    sc = small(seed, network=network, duration_s=70.0).with_faults(
        Partition(groups=((0, 1, 2, 3),), at=15.0, heal_at=30.0),
    )
    wire = run(attrs.evolve(sc, mode="wire"))
    obj = run(attrs.evolve(sc, mode="object"))
    assert wire.trace_digest == obj.trace_digest, f"seed {seed}"
    assert wire.members == obj.members
    assert wire.network == obj.network


def test_scenario_pickles_and_result_is_plain_data() -> None:
    sc = small(5)
    assert pickle.loads(pickle.dumps(sc)) == sc
    result = run(sc)
    data = result.to_dict()
    assert data["seed"] == 5
    assert data["scenario"]["config"]["probe_interval_s"] == 1.0
    assert data["scenario"]["faults"] == [{"type": "Crash", "member": 7, "at": 10.0}]
    rows = result.member_rows()
    assert len(rows) == 12 and all(r["seed"] == 5 for r in rows)
    assert pickle.loads(pickle.dumps(result)) == result


@pytest.mark.parametrize("seed", [1, 2])
def test_wire_and_object_mode_give_every_member_identical_stats(seed: int) -> None:
    """Object mode goes through the core's one input path: same counters, byte for byte
    (datagrams, stream frames both ways, bytes by kind, malformed, every protocol count)."""
    network = NetworkModel.lan().with_loss(0.05).with_duplicates(0.02)
    sc = small(seed, network=network, duration_s=70.0).with_faults(
        Partition(groups=((0, 1, 2, 3),), at=15.0, heal_at=30.0),
    )
    sims = {}
    for mode in ("wire", "object"):
        sim = Simulation(attrs.evolve(sc, mode=mode))
        sim.run_until(sc.duration_s)
        sims[mode] = sim
    for i in range(sc.nodes):
        wire_core, obj_core = sims["wire"].engine.core(i), sims["object"].engine.core(i)
        if wire_core is None:
            assert obj_core is None
            continue
        assert obj_core is not None
        assert attrs.asdict(wire_core.stats) == attrs.asdict(obj_core.stats), f"member {i}"
        assert wire_core.stats.push_pulls > 0
    assert sims["wire"].result().trace_digest == sims["object"].result().trace_digest


# ---------------------------------------------------------------------- network model


def test_named_link_classes() -> None:
    assert LinkClass.lan().mean_delay_s() == pytest.approx(0.0005)
    assert LinkClass.wan().jitter == "uniform"
    assert NetworkModel.profile("wan").link == LinkClass.wan()
    with pytest.raises(ValueError, match="unknown network profile"):
        NetworkModel.profile("moon")
    two_dcs = NetworkModel(zones=2, cross_zone=LinkClass.wan())
    assert two_dcs.link_between(0, 2) == LinkClass.lan()
    assert two_dcs.link_between(0, 1) == LinkClass.wan()


def test_loss_and_duplication_are_counted() -> None:
    net = NetworkModel.lan().with_loss(0.2).with_duplicates(0.1)
    result = run(Scenario(nodes=10, duration_s=30.0, seed=3, network=net))
    c = result.network
    assert 0.15 < c.lost / c.sent < 0.25
    assert 0.06 < c.duplicated / (c.sent - c.lost) < 0.14
    # The TCP fallback ping (never lost at random) keeps every probe alive.
    assert result.event_counts.get("suspected", 0) == 0


def test_wan_delays_slow_the_join() -> None:
    lan = run(Scenario(nodes=10, duration_s=10.0, seed=1))
    wan = run(Scenario(nodes=10, duration_s=10.0, seed=1, network=NetworkModel.wan()))
    assert lan.convergence[0].took_s is not None and wan.convergence[0].took_s is not None
    assert wan.convergence[0].took_s > lan.convergence[0].took_s


def test_one_way_partition_blocks_one_direction_only() -> None:
    sim = Simulation(Scenario(nodes=6, duration_s=5.0, seed=2, start="converged"))
    engine = sim.engine
    engine.partition([(0, 1, 2)], one_way=True)
    assert engine._blocked(0, 4) and engine._blocked(2, 3)
    assert not engine._blocked(4, 0) and not engine._blocked(0, 1)
    assert engine._stream_blocked(4, 0)  # TCP needs both directions
    pid = engine.partition([(0,), (1,)])
    assert engine._blocked(1, 0) and engine._blocked(0, 5)
    engine.heal(pid)
    assert not engine._blocked(1, 0)


def test_permanent_one_way_loss_isolates_a_member_one_way() -> None:
    # Member 3 can send but hears nothing from member 0: the asymmetric case Rapid
    # describes. The run must still be deterministic and account the drops.
    net = attrs.evolve(NetworkModel.lan(), one_way=(OneWayLoss(src=0, dst=3, loss=1.0),))
    sc = Scenario(nodes=8, duration_s=30.0, seed=4, network=net, start="converged",
                  trace=True)
    a = run(sc)
    assert a.network.blocked > 0
    assert run(sc).trace_digest == a.trace_digest


def test_clogged_link_holds_then_delivers() -> None:
    sc = Scenario(nodes=4, duration_s=20.0, seed=1, start="converged",
                  faults=(Clog(src=0, dst=1, at=5.0, until=8.0),))
    result = run(sc)
    assert result.network.clogged > 0
    assert result.network.blocked == 0
    assert result.false_positives.total == 0


def test_loss_window_is_one_way_and_timed() -> None:
    sc = Scenario(nodes=6, duration_s=30.0, seed=2, start="converged",
                  faults=(LossWindow(src=1, dst=2, at=5.0, until=15.0, loss=1.0),))
    sim = Simulation(sc)
    sim.run_until(10.0)
    assert sim.engine._blocked(1, 2) and not sim.engine._blocked(2, 1)
    sim.run_until(20.0)
    assert not sim.engine._blocked(1, 2)


def test_bootstrap_starts_converged() -> None:
    sim = Simulation(Scenario(nodes=30, duration_s=5.0, seed=9, start="converged"))
    core = sim.engine.core(4)
    assert core is not None
    assert len(core.members()) == 30
    assert sorted(core.membership.probe_order()) == sorted(
        f"node-{i}" for i in range(30) if i != 4)
    sim.run_until(5.0)
    result = sim.result()
    assert result.convergence[0].took_s == 0.0
    assert result.disagreement_final == 0
    assert result.event_counts.get("suspected", 0) == 0


def test_link_stats() -> None:
    result = run(Scenario(nodes=5, duration_s=10.0, seed=1, link_stats=True))
    assert result.links is not None
    assert sum(link.bytes for link in result.links) == result.traffic.total_bytes
    assert all(link.src != link.dst for link in result.links)


def test_stepping_equals_one_run() -> None:
    sc = small(21)
    sim = Simulation(sc)
    for t in (0.5, 3.0, 10.0, 10.0, 25.5, 40.0):
        sim.run_until(t)
    assert sim.result().trace_digest == run(sc).trace_digest


def test_join_retries_through_the_other_seed() -> None:
    # Seed 0 is down from the start: members time out on it and still join through 1.
    sc = Scenario(nodes=8, duration_s=40.0, seed=3, seeds=2,
                  faults=(Crash(member=0, at=0.0),))
    result = run(sc)
    assert result.disagreement_final == 0
    assert result.network.streams_failed >= 6


def test_invalid_scenarios_are_refused() -> None:
    with pytest.raises(ValueError, match="no member 9"):
        Simulation(Scenario(nodes=4, faults=(Crash(member=9, at=1.0),)))
    with pytest.raises(ValueError):
        Scenario(nodes=4, mode="bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Engine(nodes=0, config=Config.lan(), network=NetworkModel.lan(), seed=0)


@pytest.mark.parametrize("mode", ["wire", "object"])
def test_application_traffic_through_poke(mode: str) -> None:
    sim = Simulation(Scenario(nodes=6, duration_s=10.0, seed=1, start="converged",
                              mode=mode))  # type: ignore[arg-type]
    sim.run_until(2.0)
    engine = sim.engine
    sender = engine.core(1)
    assert sender is not None
    sender.send_user_message(engine.addrs[4], b"hello", now=engine.now, reliable=True)
    sender.broadcast(b"to all", now=engine.now)
    engine.poke(1)
    sim.run_until(10.0)
    result = sim.result()
    assert result.event_counts["user_message"] == 1
    assert result.event_counts["user_broadcast"] == 6
    assert result.members[1].streams_out >= 1
