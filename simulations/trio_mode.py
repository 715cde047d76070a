"""Trio mode: a scenario run by real `swim.Node` objects, to check the runtime against
the engine.

The engine drives `swim.core.Core` directly from its event heap; here the same scenario
is played by the production runtime (`swim.Node`: its pump, receive loop, stream tasks
and join loop) over the in-memory network (`transport.memory.MemoryNetwork`), all in one
trio run. Under ``trio.testing.MockClock(autojump_threshold=0)`` a minute of a small
cluster takes well under a second of wall time.

Members have the engine's names and addresses (`name_of`, `addr_of`), and their events
feed the engine's own `Collector`, so detections, false positives and convergence are
computed by the same code and mean the same thing in both modes. Each event is stamped
with ``trio.current_time()`` when the recorder task reads it; under an autojump clock
that is the instant the node published it (the clock only jumps when every task
sleeps).

What carries over from a `Scenario`: ``nodes``, ``duration_s``, ``seed``, ``config``,
``seeds``, ``join_stagger_s``, ``leave_timeout_s`` and the faults `Crash`, `Leave` and
`Join`. The network's single link class becomes the memory network's latency
(``delay_min_s``), jitter (uniform, same mean) and loss/duplication. Anything else
(a converged start, zones, one-way loss, partitions, pauses, restarts...) raises
`ValueError` rather than being silently ignored. The run is seeded (node rngs and the
network's rng derive from ``scenario.seed``) but not bit-for-bit reproducible: trio
shuffles tasks that become runnable together, so the order of sends varies. Compare the
two modes against protocol bounds (`detection_bound_s`), not against each other's
exact times.

    >>> result = run_trio(Scenario(nodes=6, duration_s=40.0, seed=1,
    ...                            faults=(Crash(member=4, at=10.0),)))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio
import trio.testing

from simulations.engine import addr_of, name_of
from simulations.faults import Crash, Join, Leave
from simulations.metrics import (
    DOWN,
    HEALTHY,
    Collector,
    Convergence,
    Detection,
    FalsePositives,
    crash_summary,
)
from simulations.network import NetworkModel
from simulations.scenario import Scenario
from swim.core import Config
from swim.core.timing import retransmit_limit, suspicion_timeout_min_s
from swim.runtime.node import Node
from transport.base import StreamHandler
from transport.memory import MemoryNetwork

__all__ = ["TrioResult", "detection_bound_s", "run_nodes", "run_trio"]


def detection_bound_s(config: Config, n: int) -> float:
    """Upper bound on the delay from a crash until every survivor knows, for a cluster
    of `n` healthy members on a lossless network (the same bound for both modes).

    Three terms, all from the protocol's own arithmetic:

    * first suspicion: each member probes the others in a shuffled round robin, so two
      probes of the same target are at most ``2 (n - 1) - 1`` periods apart, and the
      suspicion is raised at the end of the failed probe's period: ``2 (n - 1) T``;
    * the suspicion timeout, at most its Lifeguard maximum
      ``suspicion_mult * max(1, log10 n) * T * suspicion_max_timeout_mult`` (plain
      SWIM uses the minimum, which is smaller);
    * dissemination of the failure: the news is sent ``retransmit_limit`` times, one per
      gossip round (the gossip interval, or the probe period without the gossip timer).

    Healthy observers keep their local health at 0 (helpers nack, so failed probes of a
    crashed member do not count against the prober), so ``T`` is the unscaled period.
    """
    period = config.probe_interval_s
    suspect_s = 2 * max(n - 1, 1) * period
    timeout_s = (suspicion_timeout_min_s(config.suspicion_mult, n, period)
                 * config.suspicion_max_timeout_mult)
    gossip_s = config.gossip_interval_s if config.gossip_timer else period
    spread_s = retransmit_limit(config.retransmit_mult, n) * gossip_s
    return suspect_s + timeout_s + spread_s


@attrs.frozen(kw_only=True)
class TrioResult:
    """What a trio-mode run measured (the engine's `RunResult` vocabulary)."""

    seed: int
    nodes: int
    duration_s: float
    #: The scenario as plain data.
    scenario: dict[str, Any]
    detections: tuple[Detection, ...]
    false_positives: FalsePositives
    convergence: tuple[Convergence, ...]
    disagreement_final: int
    event_counts: dict[str, int]
    #: Mean over members of datagrams sent per protocol period of running time.
    datagrams_out_per_period: float
    wall_s: float

    def summary_row(self) -> dict[str, Any]:
        """One flat dict of the headline numbers, as `RunResult.summary_row` names them."""
        return {
            "seed": self.seed,
            "nodes": self.nodes,
            "duration_s": self.duration_s,
            "mode": "trio",
            **crash_summary(self.detections),
            "false_positives": self.false_positives.total,
            "datagrams_out_per_period": self.datagrams_out_per_period,
            "disagreement_final": self.disagreement_final,
            "wall_s": self.wall_s,
        }


@attrs.define(eq=False)
class _Member:
    index: int
    node: Node
    scope: trio.CancelScope
    started_at: float
    stopped_at: float | None = None
    #: Still feeding the collector (False once crashed or leaving).
    running: bool = True
    leave_requested: trio.Event = attrs.Factory(trio.Event)


def _check(sc: Scenario) -> None:
    if sc.start != "join":
        raise ValueError("trio mode starts members by joining (start='join')")
    net = sc.network
    if net.zones != 1 or net.cross_zone is not None or net.one_way:
        raise ValueError("trio mode models one link class: no zones, no one-way loss")
    late = [f.member for f in sc.faults if isinstance(f, Join)]
    for f in sc.faults:
        if not isinstance(f, Crash | Leave | Join):
            raise ValueError(f"trio mode supports Crash, Leave and Join faults, not {f!r}")
        if not 0 <= f.member < sc.nodes:
            raise ValueError(f"{f!r}: no member {f.member} in a {sc.nodes}-member run")
    if len(late) != len(set(late)):
        raise ValueError("a member can join late only once")


def _network(model: NetworkModel, seed: int) -> MemoryNetwork:
    link = model.link
    return MemoryNetwork(
        latency_s=link.delay_min_s,
        # The memory network's jitter is uniform on [0, jitter_s]: the same mean.
        jitter_s=0.0 if link.jitter == "none" else 2 * link.jitter_s,
        loss=link.loss,
        duplication=link.duplicate,
        rng=random.Random(f"{seed}/network"),
    )


async def run_nodes(scenario: Scenario) -> TrioResult:
    """Run `scenario` with one `swim.Node` per member in the current trio run.

    Takes ``scenario.duration_s`` of trio time: run it under a `MockClock` with
    ``autojump_threshold=0`` (as `run_trio` does, or a pytest-trio test taking
    ``autojump_clock``). Every node is stopped (as by a crash) before it returns.
    """
    _check(scenario)
    sc = scenario
    wall_started = time.perf_counter()
    names = [name_of(i) for i in range(sc.nodes)]
    addrs = [addr_of(i) for i in range(sc.nodes)]
    seed_members = range(min(sc.seeds, sc.nodes))
    # No restarts in trio mode, so no grace for failures about a previous process.
    collector = Collector(names, seed=sc.seed, restart_grace_s=0.0)
    network = _network(sc.network, sc.seed)
    members: dict[int, _Member] = {}
    t0 = trio.current_time()

    def now() -> float:
        return trio.current_time() - t0

    def opener(i: int) -> Callable[[StreamHandler], Any]:
        return lambda handler: network.open(addrs[i], handler)

    async def run_member(i: int, *, task_status: trio.TaskStatus[_Member]) -> None:
        node = Node(
            sc.config,
            name=names[i],
            bind=addrs[i],
            seeds=[addrs[s] for s in seed_members if s != i],
            seed=random.Random(f"{sc.seed}/{i}").getrandbits(63),
            transport_factory=opener(i),
            leave_timeout_s=sc.leave_timeout_s,
        )
        with trio.CancelScope() as scope:
            async with node:
                subscription = node.events(max_buffer=1_000_000)
                member = _Member(i, node, scope, started_at=now())
                members[i] = member
                collector.reset_view(i)
                collector.set_node(i, truth=True, observer=True, health=HEALTHY, now=now())
                task_status.started(member)
                async with trio.open_nursery() as inner:
                    inner.start_soon(record, member, subscription)
                    await member.leave_requested.wait()
                    await node.leave(sc.leave_timeout_s)
                    member.stopped_at = now()
                    inner.cancel_scope.cancel()

    async def record(member: _Member, subscription: Any) -> None:
        async for event in subscription:
            if member.running:
                collector.on_events(member.index, [event], now())

    def stop(i: int, kind: str) -> None:
        member = members.get(i)
        if member is None or not member.running:
            return
        member.running = False
        collector.set_node(i, truth=False, observer=False, health=DOWN, now=now())
        collector.departed(i, kind, now())
        if kind == "crash":
            member.stopped_at = now()
            member.scope.cancel()
        else:
            member.leave_requested.set()

    # The schedule, in the engine's order: starts (staggered), the join marker, faults;
    # ties keep this order (the sequence number).
    late = {f.member for f in sc.faults if isinstance(f, Join)}
    initial = [i for i in range(sc.nodes) if i not in late]
    schedule: list[tuple[float, int, str, int]] = []
    last = 0.0
    for i in initial:
        at = sc.join_stagger_s * i / sc.nodes
        last = max(last, at)
        schedule.append((at, len(schedule), "start", i))
    schedule.append((last, len(schedule), "mark", -1))
    for f in sc.faults:
        if isinstance(f, Crash | Leave | Join):  # all of them (`_check`)
            kind = "crash" if isinstance(f, Crash) else "leave" if isinstance(f, Leave) \
                else "start"
            schedule.append((f.at, len(schedule), kind, f.member))
    schedule.sort()

    async with trio.open_nursery() as nursery:
        for at, _, kind, i in schedule:
            if at > sc.duration_s:
                break
            await trio.sleep_until(t0 + at)
            if kind == "start":
                await nursery.start(run_member, i)
            elif kind == "mark":
                collector.mark("join", now())
            else:
                stop(i, kind)
        await trio.sleep_until(t0 + sc.duration_s)
        end = now()
        result = _result(sc, collector, members, end, time.perf_counter() - wall_started)
        nursery.cancel_scope.cancel()
    return result


def _result(sc: Scenario, collector: Collector, members: dict[int, _Member], end: float,
            wall_s: float) -> TrioResult:
    period = sc.config.probe_interval_s
    rates = []
    for i in sorted(members):
        member = members[i]
        up_s = (member.stopped_at if member.stopped_at is not None else end) - member.started_at
        if up_s > 0:
            rates.append(member.node.stats().transport.datagrams_sent / (up_s / period))
    return TrioResult(
        seed=sc.seed,
        nodes=sc.nodes,
        duration_s=end,
        scenario=sc.describe(),
        detections=collector.detections(),
        false_positives=collector.false_positives(),
        convergence=collector.convergence(),
        disagreement_final=collector.wrong,
        event_counts=dict(sorted(collector.event_counts.items())),
        datagrams_out_per_period=math.fsum(rates) / len(rates) if rates else 0.0,
        wall_s=wall_s,
    )


def run_trio(scenario: Scenario) -> TrioResult:
    """Run `scenario` in trio mode in a fresh trio run under an autojump `MockClock`
    (synchronous: for scripts and sweeps, not from inside a trio run)."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(run_nodes, scenario, clock=clock)
