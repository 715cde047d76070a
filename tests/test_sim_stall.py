"""The `Stall` fault in the engine, and false positives counted as the Lifeguard paper
counts them.

A stalled member processes nothing: no timer runs, no input is handled, it sends nothing;
what arrives waits in a bounded buffer (the overflow is dropped and counted); streams to it
wait, answered on resume or failed at the requester's TCP timeout. On resume, at the
resume instant, its overdue timers fire first and then the buffered datagrams are
handled in arrival order. An input stall (``mode="input"``) blocks only message
processing: timers run and the member sends. Members under a stall (or a clog, a lossy
link, the cut-off side of a partition) are anomalous for the whole run; FP counts
declarations about healthy members once per raiser, FP- those of them raised by healthy
members.
"""

from __future__ import annotations

import json
import subprocess
import sys

import attrs
import pytest

from simulations import (
    Clog,
    Crash,
    Join,
    LossWindow,
    NetworkModel,
    Partition,
    Pause,
    Scenario,
    Simulation,
    Slow,
    Stall,
    addr_of,
    anomalous_members,
    name_of,
    run,
)
from simulations.metrics import FAULTY, HEALTHY, MAX_FP_SAMPLES, Collector, MemberTraffic
from swim.core import Config, Core, MemberFailed, encode
from swim.core.messages import MemberState, Suspect


def converged(nodes: int, *faults: object, config: Config | None = None,
              duration_s: float = 60.0, seed: int = 2) -> Simulation:
    return Simulation(Scenario(nodes=nodes, duration_s=duration_s, seed=seed,
                               config=config or Config.lan(), start="converged",
                               faults=tuple(faults)))  # type: ignore[arg-type]


# ------------------------------------------------------------------------- the fault


def test_stall_validates_its_members_and_times() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        Stall(members=(), at=1.0, duration_s=1.0)
    with pytest.raises(ValueError, match="each member once"):
        Stall(members=(1, 1), at=1.0, duration_s=1.0)
    with pytest.raises(ValueError):
        Stall(members=(1,), at=1.0, duration_s=0.0)
    with pytest.raises(ValueError, match="no such member"):
        Simulation(Scenario(nodes=4, faults=(Stall(members=(2, 4), at=1.0, duration_s=1.0),)))
    stall = Stall(members=[3, 1], at=10.0, duration_s=2.0, cycles=3, interval_s=1.0)
    assert stall.members == (3, 1)
    assert stall.windows() == [(10.0, 12.0), (13.0, 15.0), (16.0, 18.0)]


def test_lock_step_cycles_stall_and_resume_every_member_together() -> None:
    stall = Stall(members=(2, 3), at=10.0, duration_s=2.0, cycles=3, interval_s=1.0)
    back_to_back = Stall(members=(4,), at=10.0, duration_s=2.0, cycles=2)  # interval 0
    sim = converged(6, stall, back_to_back)
    engine = sim.engine
    expected = {9.9: (True, True), 10.0: (False, False), 11.9: (False, False),
                12.0: (True, False), 12.9: (True, False), 13.5: (False, False),
                14.0: (False, True), 15.5: (True, True), 17.0: (False, True),
                18.0: (True, True)}
    for t, (pair_up, four_up) in expected.items():
        sim.run_until(t)
        assert [engine.is_up(2), engine.is_up(3)] == [pair_up, pair_up], f"at {t}"
        assert engine.is_up(4) == four_up, f"at {t}"
    result = sim.result()
    assert result.disagreement_final == 0
    assert result.scenario["faults"][0] == {
        "type": "Stall", "members": (2, 3), "at": 10.0, "duration_s": 2.0, "cycles": 3,
        "interval_s": 1.0, "buffer_datagrams": 1000, "mode": "process",
    }


@attrs.frozen
class StallWindow:
    """Member 3 of a `converged` run just before its stall at 10 s ends (at 14 s)."""

    core: Core
    probes: int  # its probes when the stall began
    before: MemberTraffic  # its figures when the stall began
    during: MemberTraffic  # and at 13.999 s
    queued: int  # datagrams waiting in its buffer at 13.999 s


def stall_member_3(sim: Simulation) -> StallWindow:
    """Run `sim` (stalling member 3 from 10 s for 4 s) to just before the resume."""
    engine = sim.engine
    sim.run_until(10.0)
    core = engine.core(3)
    assert core is not None and not engine.is_up(3)
    probes = core.stats.probes
    before = sim.result().members[3]
    sim.run_until(13.999)
    return StallWindow(core, probes, before, sim.result().members[3],
                       engine.network_counters().queued)


def test_a_stalled_member_runs_nothing_and_handles_its_buffer_on_resume() -> None:
    sim = converged(5, Stall(members=(3,), at=10.0, duration_s=4.0))
    engine = sim.engine
    w = stall_member_3(sim)
    core, probes, before, during, queued = w.core, w.probes, w.before, w.during, w.queued
    # Nothing ran: no probe, no datagram handled or sent; the arrivals wait.
    assert core.stats.probes == probes
    assert (during.datagrams_in, during.datagrams_out) == (before.datagrams_in,
                                                           before.datagrams_out)
    assert queued > 4  # about a probe of it per second from the others, and gossip
    assert engine.network_counters().overflowed == 0
    sim.run_until(14.0)
    after = sim.result().members[3]
    # At the resume instant: every buffered datagram handled, the overdue probe timer
    # fired once (one new probe, not one per missed period), and it answered.
    assert after.datagrams_in == during.datagrams_in + queued
    assert core.stats.probes == probes + 1
    assert after.datagrams_out > during.datagrams_out
    assert engine.network_counters().queued == queued
    sim.run_until(30.0)
    assert sim.result().disagreement_final == 0


def test_the_buffer_overflows_and_the_overflow_is_counted() -> None:
    sim = converged(5, Stall(members=(3,), at=10.0, duration_s=4.0, buffer_datagrams=2))
    sim.run_until(13.999)
    net = sim.engine.network_counters()
    before = sim.result().members[3].datagrams_in
    assert net.queued == 2
    assert net.overflowed > 2
    sim.run_until(14.0)
    assert sim.result().members[3].datagrams_in == before + 2
    # The result carries the counters.
    assert sim.result().network.overflowed == net.overflowed


def test_a_stall_of_a_member_that_is_down_changes_nothing() -> None:
    base = Scenario(nodes=8, duration_s=40.0, seed=4, trace=True,
                    faults=(Crash(member=5, at=5.0),))
    stalled = base.with_faults(Stall(members=(5,), at=10.0, duration_s=5.0))
    assert run(base).trace_digest == run(stalled).trace_digest


def test_same_seed_same_trace_with_stalls() -> None:
    sc = Scenario(nodes=12, duration_s=60.0, seed=9, trace=True, mode="wire", faults=(
        Stall(members=(3, 7), at=10.0, duration_s=6.0, cycles=3, interval_s=2.0,
              buffer_datagrams=5),
    ))
    a, b = run(sc), run(sc)
    assert a.trace_digest == b.trace_digest
    assert a.network == b.network and a.network.overflowed > 0


def test_overdue_timers_fire_before_the_buffered_datagrams() -> None:
    """Member 3 suspects healthy member 1 just before a 30 s stall; 1 refutes at once,
    but the refutation waits in 3's buffer. On resume 3's suspicion timeout (24 s here)
    is overdue and fires first: 3 declares 1 failed at the resume instant, then handles
    the refutation and holds 1 alive again. One false positive about a healthy member,
    raised by an anomalous one: FP 1, FP- 0."""
    sim = converged(5, Stall(members=(3,), at=10.0, duration_s=30.0))
    engine = sim.engine
    sim.run_until(9.9999)  # less than a round trip before the stall
    core = engine.core(3)
    assert core is not None
    core.receive_datagram(encode([Suspect("node-1", 0, "node-0")]), addr_of(0),
                          now=engine.now)
    engine.poke(3)
    sim.run_until(40.0)
    assert {m.name: (m.status.name, m.incarnation) for m in core.members()}["node-1"] == (
        "ALIVE", 1)
    sim.run_until(60.0)
    result = sim.result()
    fp = result.false_positives
    about_1 = [s for s in fp.samples if s.subject == "node-1"]
    assert [(s.at, s.observer, s.accuser, s.raised, s.observer_healthy, s.subject_healthy)
            for s in about_1] == [(40.0, "node-3", "node-3", True, False, True)]
    assert (fp.fp, fp.fp_minus) == (1, 0)
    # The stall itself got 3 declared failed by the others (each raise counted once),
    # and it refuted after the resume.
    about_3 = [s for s in fp.samples if s.subject == "node-3"]
    assert len(about_3) == 4 and not any(s.subject_healthy for s in about_3)
    assert fp.raised == 1 + sum(s.raised for s in about_3)
    assert result.disagreement_final == 0


def test_an_input_stall_runs_timers_and_sends_but_handles_nothing() -> None:
    # Plain SWIM's probe period does not back off (Lifeguard's would, probes failing).
    sim = converged(5, Stall(members=(3,), at=10.0, duration_s=4.0, mode="input"),
                    config=Config.paper_swim())
    w = stall_member_3(sim)
    core, probes, before, during, queued = w.core, w.probes, w.before, w.during, w.queued
    # Its timers ran on time (about a probe a second) and it sent; it handled nothing.
    assert core.stats.probes >= probes + 3
    assert during.datagrams_out > before.datagrams_out
    assert during.datagrams_in == before.datagrams_in
    assert queued > 4  # the others' acks to its probes among them
    sim.run_until(14.0)
    assert sim.result().members[3].datagrams_in == during.datagrams_in + queued
    sim.run_until(40.0)
    assert sim.result().disagreement_final == 0
    with pytest.raises(ValueError):
        Stall(members=(1,), at=1.0, duration_s=1.0, mode="frozen")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_slow_input_processing_gives_plain_swim_false_positives_not_lifeguard(
    seed: int,
) -> None:
    """Member 3's input is stalled for 12 s while its timers run (the Lifeguard paper's
    slow message processing): its probes fail (the acks wait), it suspects healthy
    members, and their refutations wait too, so its own fixed suspicion timeouts fire
    (paper SWIM: 5 s for 5 members): false positives about healthy members raised by an
    anomalous one (FP > 0, FP- = 0). Lifeguard's nacks and local health keep it quiet
    (no nacks arrive, so its timeouts grow). A SIGSTOP-like stall of the same length
    raises none: no timer of it runs while its input waits."""

    def counts(config: Config, mode: str) -> tuple[int, int, set[str]]:
        result = run(Scenario(nodes=5, duration_s=60.0, seed=seed, config=config,
                              start="converged", faults=(
            Stall(members=(3,), at=10.0, duration_s=12.0, mode=mode),)))  # type: ignore[arg-type]
        fp = result.false_positives
        assert result.disagreement_final == 0, f"seed {seed}"
        raisers = {s.observer for s in fp.samples if s.raised and s.subject_healthy}
        return fp.fp, fp.fp_minus, raisers

    fp, fp_minus, raisers = counts(Config.paper_swim(), "input")
    assert fp > 0 and fp_minus == 0 and raisers == {"node-3"}, f"seed {seed}"
    assert counts(Config.paper_lifeguard(), "input")[:2] == (0, 0), f"seed {seed}"
    assert counts(Config.paper_swim(), "process")[:2] == (0, 0), f"seed {seed}"


@pytest.mark.parametrize(("stall_s", "answered"), [(3.0, True), (20.0, False)])
def test_a_stream_to_a_stalled_member_waits_then_is_answered_or_times_out(
    stall_s: float, answered: bool,
) -> None:
    """A member joins at 6 s through seed 0, stalled from 5 s: the kernel accepts the
    connection, so the join waits. Resumed at 8 s (before the 10 s TCP timeout) the seed
    answers and the join completes; resumed at 25 s, the exchange fails at 16 s, and a
    retry answered on resume lets it in."""
    config = attrs.evolve(Config.lan(), tcp_fallback_ping=False, push_pull=False)
    sim = converged(6, Stall(members=(0,), at=5.0, duration_s=stall_s),
                    Join(member=5, at=6.0), config=config)
    engine = sim.engine
    resume = 5.0 + stall_s
    sim.run_until(min(resume, 16.0) - 0.001)
    joiner = engine.core(5)
    assert joiner is not None and len(joiner.members()) == 1
    assert engine.network_counters().streams_failed == 0
    if answered:
        sim.run_until(resume + 0.01)
        assert len(joiner.members()) == 6
        assert engine.network_counters().streams_failed == 0
    else:
        sim.run_until(16.001)
        assert engine.network_counters().streams_failed == 1
        sim.run_until(resume - 0.001)
        assert len(joiner.members()) == 1
        sim.run_until(resume + 0.01)
        assert len(joiner.members()) == 6
    sim.run_until(40.0)
    (join,) = [c for c in sim.result().convergence if c.label == "join-5"]
    assert join.converged_at is not None and join.converged_at >= resume


# ------------------------------------------------------------ small case, agents too


def small_case(stall_s: float, seed: int = 1) -> Scenario:
    """6 members on the local profile (the agents' default), started by joining; member
    5 stalled from 10 s. The agents' test stalls a real process the same way."""
    return Scenario(nodes=6, duration_s=10.0 + stall_s + 20.0, seed=seed,
                    config=Config.local(), network=NetworkModel.local(),
                    faults=(Stall(members=(5,), at=10.0, duration_s=stall_s),))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_small_case_long_stall_is_declared_failed_then_rejoins(seed: int) -> None:
    # D = 3 x the minimum suspicion timeout (3 s for 6 members on the local profile).
    result = run(small_case(9.0, seed))
    fp = result.false_positives
    about_5 = {s.observer for s in fp.samples if s.subject == "node-5"}
    assert about_5 == {name_of(i) for i in range(5)}, f"seed {seed}"
    assert all(10.0 < s.at < 19.0 for s in fp.samples if s.subject == "node-5"), f"seed {seed}"
    assert fp.fp == 0, f"seed {seed}: a healthy member declared failed"
    assert result.event_counts["joined"] >= 5, f"seed {seed}"  # back in every view
    assert result.disagreement_final == 0, f"seed {seed}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_small_case_short_stall_is_not_a_failure(seed: int) -> None:
    result = run(small_case(1.0, seed))
    assert result.false_positives.total == 0, f"seed {seed}"
    assert result.event_counts.get("failed", 0) == 0, f"seed {seed}"
    assert result.disagreement_final == 0, f"seed {seed}"


# --------------------------------------------------------------- anomalous members


def test_anomalous_members_are_the_ones_a_fault_acts_on() -> None:
    faults = (
        Stall(members=(1, 2), at=1.0, duration_s=1.0),
        Pause(member=3, at=1.0, duration_s=1.0),
        Slow(member=4, at=1.0, delay_s=0.1),
        Clog(src=5, dst=6, at=1.0, until=2.0),
        LossWindow(src=7, dst=8, at=1.0),
        Crash(member=9, at=1.0),
    )
    assert anomalous_members(faults, 20) == {1, 2, 3, 4, 5, 6, 7, 8}
    # A partition: the cut-off side (every group but the largest; unlisted members are
    # a group; of equal sizes the first listed stays healthy); one-way: groups[0].
    assert anomalous_members((Partition(groups=((0, 1, 2),), at=1.0),), 10) == {0, 1, 2}
    assert anomalous_members((Partition(groups=((0, 1), (2, 3, 4, 5, 6, 7, 8)), at=1.0),),
                             10) == {0, 1, 9}
    assert anomalous_members((Partition(groups=((0, 1, 2), (3, 4, 5)), at=1.0),), 6) == {
        3, 4, 5}
    assert anomalous_members(
        (Partition(groups=((4, 5, 6, 7, 8, 9),), at=1.0, one_way=True),), 10
    ) == {4, 5, 6, 7, 8, 9}


def test_the_engine_marks_anomalous_members_faulty_for_the_whole_run() -> None:
    sim = converged(8, Stall(members=(6,), at=20.0, duration_s=2.0),
                    Clog(src=1, dst=2, at=30.0, until=31.0),
                    Partition(groups=((7,),), at=40.0, heal_at=41.0))
    sim.run_until(1.0)
    health = sim.engine.collector.health
    assert [i for i in range(8) if health[i] == FAULTY] == [1, 2, 6, 7]
    sim.run_until(25.0)  # after the stall: still anomalous
    assert health[6] == FAULTY and health[0] == HEALTHY


# ------------------------------------------------------------------ FP accounting


def failed(subject: str, accuser: str, at: float) -> MemberFailed:
    return MemberFailed(member=MemberState(subject, addr_of(0), 0), accuser=accuser, at=at)


def test_false_positives_counted_once_per_raiser_with_exact_counters() -> None:
    """Members 0-2 healthy, 3 anomalous, 4 crashed. Each declaration spreads to every
    other live member (one event per observer); the paper counts it once, at its raiser."""
    names = [name_of(i) for i in range(5)]
    coll = Collector(names, seed=0, restart_grace_s=0.0)
    coll.bootstrap([0, 1, 2, 3, 4], 0.0)
    coll.health[3] = FAULTY
    coll.set_node(4, truth=False, observer=False, health=0, now=0.0)
    coll.health[4] = 2  # DOWN

    def declare(raiser: int, subject: int, at: float) -> None:
        observers = [raiser] + [o for o in range(4) if o not in (raiser, subject)]
        for o in observers:
            coll.on_events(o, [failed(names[subject], names[raiser], at)], at)

    declare(0, 1, 1.0)  # healthy about healthy: FP and FP-
    declare(3, 2, 2.0)  # anomalous about healthy: FP only
    declare(1, 3, 3.0)  # about the anomalous member: neither
    declare(2, 4, 4.0)  # about a crashed member: not a false positive at all
    fp = coll.false_positives()
    assert (fp.raised, fp.fp, fp.fp_minus) == (3, 2, 1)
    assert fp.total == 3 * 3  # each declaration seen by 3 observers
    assert fp.about_healthy == 6 and fp.accused_by_healthy == 6
    assert fp.by_healthy == 7 and fp.by_faulty == 2
    assert [s.raised for s in fp.samples] == [True, False, False] * 3

    # Counters are exact past the samples' cap.
    for k in range(MAX_FP_SAMPLES):
        coll.on_events(0, [failed(names[1], names[0], 10.0 + k)], 10.0 + k)
    fp = coll.false_positives()
    assert len(fp.samples) == MAX_FP_SAMPLES
    assert (fp.raised, fp.fp, fp.fp_minus) == (3 + MAX_FP_SAMPLES, 2 + MAX_FP_SAMPLES,
                                               1 + MAX_FP_SAMPLES)
    assert fp.total == 9 + MAX_FP_SAMPLES


def test_results_carry_messages_bytes_and_the_paper_counts() -> None:
    result = run(Scenario(nodes=12, duration_s=40.0, seed=3, start="converged",
                          faults=(Stall(members=(4, 5), at=10.0, duration_s=8.0),)))
    t = result.traffic
    assert t.total_messages >= t.total_datagrams > 0 and t.total_bytes > 0
    row = result.summary_row()
    assert {"failures_raised", "fp", "fp_minus", "total_messages", "total_bytes"} <= set(row)
    assert row["failures_raised"] == result.false_positives.raised > 0


def test_cli_stall_flag() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "swim.cli", "sim", "--nodes", "12", "--duration", "40",
         "--seed", "2", "--start", "converged", "--stall", "2:8:4", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    (fault,) = data["scenario"]["faults"]
    assert fault["type"] == "Stall" and len(fault["members"]) == 2
    assert fault["cycles"] == 2 and fault["duration_s"] == 8.0
    assert data["network"]["queued"] > 0
    assert {"raised", "fp", "fp_minus"} <= set(data["false_positives"])
