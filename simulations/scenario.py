"""Scenarios: a picklable description of a run, and the function that runs it.

    >>> from simulations import Scenario, Crash, run
    >>> result = run(Scenario(nodes=20, duration_s=60, seed=7,
    ...                       faults=(Crash(member=5, at=20.0),)))
    >>> result.detections[0].all_know_s  # doctest: +SKIP

A `Scenario` is a frozen value (config, network model, faults, seed), so a sweep ships
it to another process and calls `run` there. For step-by-step control (inspect cores,
inject faults as you go), build a `Simulation` and call `Simulation.run_until`.

Members ``0 .. seeds-1`` are the seeds everybody joins through. With
``start="join"`` every member starts at ``join_stagger_s * i / nodes`` and joins the
seeds with a push-pull (a join storm, as a real cluster bootstrap); with
``start="converged"`` every member starts at 0 already knowing all the others, which is
how large clusters are benchmarked in steady state.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Literal

import attrs

from simulations.engine import Engine, Mode
from simulations.faults import (
    Churn,
    Clog,
    Crash,
    Fault,
    Join,
    Leave,
    LossWindow,
    Partition,
    Pause,
    Restart,
    Slow,
    Stall,
    anomalous_members,
)
from simulations.metrics import MemberTraffic, RunResult, TrafficSummary
from simulations.network import NetworkModel
from swim.core import Config

Start = Literal["join", "converged"]


@attrs.frozen(kw_only=True)
class Scenario:
    """Everything that determines a run. The same scenario gives the same result."""

    #: Cluster size (members 0..nodes-1).
    nodes: int = attrs.field(validator=attrs.validators.ge(1))
    #: Simulated seconds to run.
    duration_s: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    #: The run's seed: every random draw derives from it.
    seed: int = 0
    #: Protocol settings of every member.
    config: Config = attrs.field(factory=Config.lan)
    #: Link classes, loss, duplication, permanent one-way loss.
    network: NetworkModel = attrs.field(factory=NetworkModel.lan)
    #: "wire" (real codec on every packet) or "object" (messages handed over).
    mode: Mode = attrs.field(default="object", validator=attrs.validators.in_(("wire", "object")))
    #: How the cluster forms (see the module doc).
    start: Start = attrs.field(default="join",
                               validator=attrs.validators.in_(("join", "converged")))
    #: Number of seed members (0..seeds-1).
    seeds: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: With start="join": member i starts at join_stagger_s * i / nodes.
    join_stagger_s: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    #: Faults, in any order.
    faults: tuple[Fault, ...] = ()
    #: Period of the view samples (None: one protocol period).
    sample_interval_s: float | None = None
    #: Hash every delivered datagram, stream and event (`RunResult.trace_digest`).
    trace: bool = False
    #: Count datagrams and bytes per directed link (`RunResult.links`).
    link_stats: bool = False
    #: How long a leaving member keeps running at most.
    leave_timeout_s: float = 5.0

    def with_faults(self, *faults: Fault) -> Scenario:
        """The same scenario with more faults."""
        return attrs.evolve(self, faults=self.faults + tuple(faults))

    def describe(self) -> dict[str, Any]:
        """The scenario as plain data (stored in every result)."""
        out: dict[str, Any] = attrs.asdict(self)
        out["faults"] = [{"type": type(f).__name__, **attrs.asdict(f)} for f in self.faults]
        return out


class Simulation:
    """A scenario being run: the engine with the scenario's faults scheduled.

    `run_until` advances simulated time; `result` summarises the run so far.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        sc = scenario
        self.engine = engine = Engine(
            nodes=sc.nodes, config=sc.config, network=sc.network, seed=sc.seed, mode=sc.mode,
            seeds=range(min(sc.seeds, sc.nodes)), trace=sc.trace, link_stats=sc.link_stats,
            leave_timeout_s=sc.leave_timeout_s,
        )
        self._wall = 0.0
        late = {f.member for f in sc.faults if isinstance(f, Join)}
        for f in sc.faults:
            if isinstance(f, Join | Crash | Restart | Leave | Pause | Slow) and not (
                0 <= f.member < sc.nodes
            ):
                raise ValueError(f"{f!r}: no member {f.member} in a {sc.nodes}-member run")
            if isinstance(f, Stall) and not all(0 <= m < sc.nodes for m in f.members):
                raise ValueError(f"{f!r}: no such member in a {sc.nodes}-member run")
        for m in anomalous_members(sc.faults, sc.nodes):
            engine.anomalous[m] = 1
        initial = [i for i in range(sc.nodes) if i not in late]
        if sc.start == "converged":
            engine.bootstrap(initial)
            engine.collector.mark("start", 0.0)
        else:
            last = 0.0
            for i in initial:
                at = sc.join_stagger_s * i / sc.nodes
                last = max(last, at)
                engine.at(at, engine.start, i)
            engine.at(last, engine.collector.mark, "join", last)
        self._schedule(sc.faults)
        interval = sc.sample_interval_s or sc.config.probe_interval_s
        engine.at(0.0, self._sample, interval)

    def _schedule(self, faults: tuple[Fault, ...]) -> None:
        engine = self.engine
        sc = self.scenario
        churn_rng = random.Random(f"{sc.seed}/churn")
        candidates = [i for i in range(sc.nodes) if i >= sc.seeds]
        for f in faults:
            match f:
                case Crash():
                    engine.at(f.at, engine.crash, f.member)
                case Restart():
                    engine.at(f.at, engine.restart, f.member)
                    engine.at(f.at, engine.collector.mark, f"restart-{f.member}", f.at)
                case Leave():
                    engine.at(f.at, engine.leave, f.member)
                case Join():
                    engine.at(f.at, engine.start, f.member)
                    engine.at(f.at, engine.collector.mark, f"join-{f.member}", f.at)
                case Pause():
                    for start, end in f.windows():
                        engine.at(start, engine.pause, f.member, end)
                case Stall():
                    engine.at(f.at, self._stall, f, 0)
                case Slow():
                    engine.at(f.at, engine.set_slow, f.member, f.delay_s)
                    if f.until != float("inf"):
                        engine.at(f.until, engine.set_slow, f.member, 0.0)
                case Partition():
                    engine.at(f.at, self._partition, f)
                case Clog():
                    engine.at(f.at, engine.clog, f.src, f.dst, f.until)
                case LossWindow():
                    engine.at(f.at, self._loss_window, f)
                case Churn():
                    self._schedule(tuple(f.expand(churn_rng, candidates)))

    def _partition(self, f: Partition) -> None:
        pid = self.engine.partition(f.groups, one_way=f.one_way)
        if f.heal_at != float("inf"):
            self.engine.at(f.heal_at, self.engine.heal, pid)

    def _stall(self, f: Stall, cycle: int) -> None:
        # Each cycle schedules the next after its own resume, so with interval_s = 0 the
        # resume still comes first at the shared instant.
        windows = f.windows()
        _, end = windows[cycle]
        self.engine.stall(f.members, end, f.buffer_datagrams, f.mode == "input")
        if cycle + 1 < len(windows):
            self.engine.at(windows[cycle + 1][0], self._stall, f, cycle + 1)

    def _loss_window(self, f: LossWindow) -> None:
        self.engine.set_loss(f.src, f.dst, f.loss, until=f.until)

    def _sample(self, interval: float) -> None:
        engine = self.engine
        engine.collector.sample(engine.now)
        engine.at(engine.now + interval, self._sample, interval)

    def run_until(self, t: float, progress: Callable[[float], None] | None = None) -> None:
        """Advance simulated time to `t` (calling `progress(now)` now and then)."""
        self.engine.progress = progress
        started = time.perf_counter()
        try:
            self.engine.run_until(t)
        finally:
            self._wall += time.perf_counter() - started
            self.engine.progress = None

    def result(self) -> RunResult:
        """Everything measured so far, as plain data."""
        engine = self.engine
        coll = engine.collector
        sc = self.scenario
        now = engine.now
        if not coll.timeline or coll.timeline[-1].at != now:
            coll.sample(now)
        period = sc.config.probe_interval_s
        members = []
        for i in range(sc.nodes):
            up_s = engine.member_up_s(i)
            periods = up_s / period if up_s > 0 else 0.0

            def per(v: int, periods: float = periods) -> float:
                return v / periods if periods else 0.0

            members.append(
                MemberTraffic(
                    member=i, name=engine.names[i], up_s=up_s,
                    datagrams_out=engine.dg_out[i], datagrams_in=engine.dg_in[i],
                    messages_out=engine.msg_out[i], messages_in=engine.msg_in[i],
                    bytes_out=engine.bytes_out[i], bytes_in=engine.bytes_in[i],
                    streams_out=engine.st_out[i], stream_bytes_out=engine.st_bytes_out[i],
                    stream_bytes_in=engine.st_bytes_in[i],
                    datagrams_out_per_period=per(engine.dg_out[i]),
                    datagrams_in_per_period=per(engine.dg_in[i]),
                    messages_out_per_period=per(engine.msg_out[i]),
                    bytes_out_per_period=per(engine.bytes_out[i]),
                    bytes_in_per_period=per(engine.bytes_in[i]),
                )
            )
        active = [m for m in members if m.up_s > 0] or members

        def mean(values: list[float]) -> float:
            return sum(values) / len(values) if values else 0.0

        traffic = TrafficSummary(
            datagrams_out_per_period_mean=mean([m.datagrams_out_per_period for m in active]),
            datagrams_out_per_period_max=max(m.datagrams_out_per_period for m in active),
            datagrams_in_per_period_mean=mean([m.datagrams_in_per_period for m in active]),
            messages_out_per_period_mean=mean([m.messages_out_per_period for m in active]),
            bytes_out_per_period_mean=mean([m.bytes_out_per_period for m in active]),
            bytes_out_per_period_max=max(m.bytes_out_per_period for m in active),
            bytes_in_per_period_mean=mean([m.bytes_in_per_period for m in active]),
            total_datagrams=sum(engine.dg_out),
            total_bytes=sum(engine.bytes_out),
            total_stream_bytes=sum(engine.st_bytes_out),
            total_messages=sum(engine.msg_out),
            total_streams=sum(engine.st_out),
        )
        timeline = tuple(coll.timeline)
        pairs = coll.pairs()
        wall = self._wall
        member_s = sum(engine.member_up_s(i) for i in range(sc.nodes))
        peak = coll.peak
        peak_pairs = max((s.observers * max(s.up - 1, 0) for s in timeline), default=0)
        return RunResult(
            seed=sc.seed, mode=sc.mode, nodes=sc.nodes, duration_s=now,
            scenario=sc.describe(), wall_s=wall, sim_events=engine.processed,
            sim_events_per_s=engine.processed / wall if wall else 0.0,
            member_s_per_wall_s=member_s / wall if wall else 0.0,
            detections=coll.detections(), false_positives=coll.false_positives(),
            convergence=coll.convergence(), timeline=timeline,
            distinct_views_max=max((s.distinct_views for s in timeline), default=0),
            distinct_views_final=timeline[-1].distinct_views if timeline else 0,
            disagreement_peak=peak,
            disagreement_peak_frac=None if peak is None else (
                peak / peak_pairs if peak_pairs else 0.0),
            disagreement_final=coll.wrong,
            disagreement_final_frac=coll.wrong / pairs if pairs else 0.0,
            event_counts=dict(sorted(coll.event_counts.items())),
            traffic=traffic, members=tuple(members), network=engine.network_counters(),
            links=engine.link_rows(), trace_digest=engine.trace_digest(),
        )


def run(scenario: Scenario, *, progress: Callable[[float], None] | None = None) -> RunResult:
    """Run `scenario` to its end and return its result (picklable, for sweeps)."""
    sim = Simulation(scenario)
    sim.run_until(scenario.duration_s, progress)
    return sim.result()
