"""Trio mode: real `swim.Node` objects over the in-memory network under trio's
MockClock, checked against the same protocol bounds as the engine for the same scenario.

Both modes run the same core over the same link model (`transport.links`), but the trio
runtime's task scheduling differs from the engine's heap, so their outcomes are compared
(who detected what, convergence, the network's effect) and their times checked against
the protocol's bounds, not against each other.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from simulations import (
    Clog,
    Crash,
    Join,
    Leave,
    LinkClass,
    LossWindow,
    NetworkModel,
    Partition,
    Pause,
    Restart,
    RunResult,
    Scenario,
    Slow,
    run,
)
from simulations.trio_mode import TrioResult, detection_bound_s, run_nodes, run_trio
from swim.core import Config
from swim.core.timing import suspicion_timeout_min_s
from swim.security import Keyring, SecurityConfig
from swim.security.seal import Reason

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
    assert labels == ["join", "join-5"] == [c.label for c in run(sc).convergence]
    assert all(c.took_s is not None for c in result.convergence)
    assert result.false_positives.total == 0
    assert result.disagreement_final == 0
    assert result.event_counts.get("left", 0) >= 4  # every other live member saw it


# ------------------------------------------------------- network faults, both modes


def both(sc: Scenario) -> list[tuple[str, RunResult | TrioResult]]:
    return [("engine", run(sc)), ("trio", run_trio(sc))]


def failures(result: RunResult | TrioResult) -> set[tuple[str, str]]:
    """(observer, subject) of every failure declared about a live member."""
    fps = result.false_positives
    assert len(fps.samples) == fps.total  # all of them, not just the first few
    return {(fp.observer, fp.subject) for fp in fps.samples}


@pytest.mark.parametrize("seed", [1, 2])
def test_partition_and_heal_agree_with_the_engine(seed: int) -> None:
    sc = Scenario(nodes=6, duration_s=90.0, seed=seed,
                  faults=(Partition(groups=((0, 1, 2),), at=10.0, heal_at=40.0),))
    bound = detection_bound_s(sc.config, sc.nodes)
    sides = [{f"node-{i}" for i in range(3)}, {f"node-{i}" for i in range(3, 6)}]
    across = {(a, b) for x, y in (sides, sides[::-1]) for a in x for b in y}

    def side(name: str) -> int:
        return 0 if name in sides[0] else 1

    for mode, result in both(sc):
        where = f"{mode} mode, seed {seed}"
        # Each side declared every member of the other failed, within the bound...
        assert failures(result) >= across, where
        for fp in result.false_positives.samples:
            if fp.at < 40.0:
                # ...and, while cut, nobody on its own side.
                assert (fp.observer, fp.subject) in across, where
                assert 10.0 < fp.at <= 10.0 + bound, where
            else:
                # After the heal only stale news crosses: a suspicion the other side
                # raised before the heal may still time out and spread.
                assert side(fp.accuser) != side(fp.subject), where
                assert fp.at <= 40.0 + bound, where
        assert result.network.blocked > 0 and result.network.streams_failed > 0, where
        assert result.network.lost == 0, where
        # Healed: views converge again, through push-pull or gossip to the dead.
        _, heal = result.convergence
        assert heal.label == "heal-1" and heal.at == 40.0, where
        assert heal.took_s is not None, f"{where}: never reconverged"
        assert heal.took_s <= sc.config.gossip_to_the_dead_s, where
        assert result.disagreement_final == 0, where


@pytest.mark.parametrize("seed", [1, 2])
def test_one_way_loss_agrees_with_the_engine(seed: int) -> None:
    """Member 5 hears everybody but nobody hears it from 10 s to 40 s: the others
    declare it failed (it never acks) and it suspects them (its pings are lost). Every
    false failure is about member 5 or raised by it (a suspicion it started while mute
    may still time out after it can speak again, and then spread); by the end it has
    refuted and every view has converged."""
    faults = tuple(LossWindow(src=5, dst=j, at=10.0, until=40.0) for j in range(5))
    sc = Scenario(nodes=6, duration_s=80.0, seed=seed, faults=faults)
    bound = detection_bound_s(sc.config, sc.nodes)
    others = {f"node-{i}" for i in range(5)}
    for mode, result in both(sc):
        where = f"{mode} mode, seed {seed}"
        pairs = failures(result)
        assert {o for o, s in pairs if s == "node-5"} == others, where
        assert all("node-5" in (fp.subject, fp.accuser)
                   for fp in result.false_positives.samples), where
        assert all(10.0 < fp.at <= 40.0 + bound for fp in result.false_positives.samples), \
            where
        assert result.network.blocked > 0 and result.network.lost == 0, where
        assert result.disagreement_final == 0, where


def test_every_network_fault_and_restart_run_in_trio_mode() -> None:
    """Zones with a WAN between them, loss and duplicates, a one-way partition, a clog,
    a restart, a slow member and a crash: both modes see each one's effect and end
    converged."""
    network = NetworkModel(zones=2, cross_zone=LinkClass.wan()).with_loss(0.05) \
        .with_duplicates(0.02)
    sc = Scenario(nodes=6, duration_s=80.0, seed=1, network=network, faults=(
        Partition(groups=((0,),), at=10.0, heal_at=20.0, one_way=True),
        Clog(src=1, dst=2, at=5.0, until=9.0),
        Restart(member=3, at=30.0),
        Slow(member=4, at=5.0, delay_s=0.2, until=50.0),
        Crash(member=5, at=45.0),
    ))
    for mode, result in both(sc):
        where = f"{mode} mode, seed 1"
        net = result.network
        assert net.lost > 0 and net.duplicated > 0 and net.blocked > 0, where
        assert net.clogged > 0, where
        assert [c.label for c in result.convergence] == ["join", "heal-1", "restart-3"], where
        assert all(c.took_s is not None for c in result.convergence), where
        crash = next(d for d in result.detections if d.name == "node-5")
        assert crash.all_know_s is not None and crash.all_know_s < 20.0, where
        assert result.disagreement_final == 0, where


def test_a_slow_member_is_suspected_in_both_modes_and_lifeguard_refutes() -> None:
    """Member 3 handles every input 1.5 s late (longer than a probe period) for 30 s:
    probes of it fail in both modes. Lifeguard's members refute every suspicion in time;
    plain SWIM's declare it failed."""
    fault = Slow(member=3, at=10.0, delay_s=1.5, until=40.0)
    for variant, config in CONFIGS.items():
        sc = Scenario(nodes=6, duration_s=70.0, seed=1, config=config, faults=(fault,))
        for mode, result in both(sc):
            where = f"{mode} mode, {variant}, seed 1"
            assert result.event_counts.get("suspected", 0) > 0, where
            if variant == "lifeguard":
                assert result.false_positives.total == 0, where
            else:
                assert result.false_positives.total > 0, where
            assert result.disagreement_final == 0, where


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(nodes=4, start="converged"),
        Scenario(nodes=4, faults=(Pause(member=1, at=1.0, duration_s=2.0),)),
        Scenario(nodes=4, faults=(Crash(member=7, at=1.0),)),
        Scenario(nodes=4, faults=(Clog(src=0, dst=9, at=1.0, until=2.0),)),
        Scenario(nodes=4, faults=(Partition(groups=((0, 5),), at=1.0),)),
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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_joins_retry_on_the_same_schedule_in_both_modes(seed: int) -> None:
    """One driver policy: a member cut off from its seed retries the join with the
    core's jittered, doubling backoff, drawn from the same member seed in both modes,
    so the runtime and the engine rejoin it at the same moment after the heal."""
    config = Config.local()  # tcp_timeout 1 s: each failed round takes a second
    # The joiner starts once the partition is in place (trio does not order tasks that
    # start at the same instant).
    sc = Scenario(nodes=2, duration_s=60.0, seed=seed, config=config,
                  faults=(Partition(groups=((0,),), at=0.0, heal_at=20.0),
                          Join(member=1, at=1.0)))
    joined_at = {}
    for mode, result in both(sc):
        heal = next(c for c in result.convergence if c.label == "heal-1")
        # Several rounds failed while cut off; the first one after the heal succeeds.
        assert heal.converged_at is not None and heal.converged_at > 20.0, mode
        joined_at[mode] = heal.converged_at
    # Same jitter, same timeouts: the same instant (up to the links' few ms of delay).
    assert abs(joined_at["trio"] - joined_at["engine"]) < 0.05, joined_at


# ------------------------------------------------------------------ sealed clusters


async def test_a_sealed_cluster_detects_a_crash_within_the_bound_and_seals_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sc = crash_scenario(Config.lan(), seed=2)
    ring = Keyring(bytes(range(32)))
    result = await run_nodes(sc, security=SecurityConfig(keyring=ring, label="sim"))
    (d,) = result.detections
    assert (d.kind, d.name) == ("crash", "node-4")
    assert d.all_know_s is not None and d.all_know_s <= detection_bound_s(sc.config, sc.nodes)
    assert result.false_positives.total == 0 and result.disagreement_final == 0
    seal = result.sealing
    # Every packet on the wire was sealed with the key, and every one that arrived
    # opened: none refused as stale or replayed on the trio clock, none in plaintext.
    # (The sealers also count stream frames, which the network does not count as sent.)
    assert seal["sealed"] >= result.network.sent > 0 and seal["sent_plaintext"] == 0
    assert seal["opened"] >= result.network.delivered > 0 and seal["opened_plaintext"] == 0
    assert {k: v for k, v in seal.items() if k in REJECTIONS and v} == {}


async def test_a_plaintext_run_reports_its_packets_as_plaintext(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await run_nodes(Scenario(nodes=3, duration_s=10.0, seed=1))
    seal = result.sealing
    assert seal["sealed"] == seal["sent_plaintext"] > 0
    assert seal["opened"] == seal["opened_plaintext"] > 0


REJECTIONS = {reason.value for reason in Reason}
