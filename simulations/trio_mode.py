"""Trio mode: a scenario run by real `swim.Node` objects, to check the runtime against
the engine.

The engine drives `swim.core.Core` directly from its event heap; here the same scenario
is played by the production runtime (`swim.Node`: its pump, receive loop, stream tasks
and join loop) over the in-memory network (`transport.memory.MemoryNetwork`), all in one
trio run. Under ``trio.testing.MockClock(autojump_threshold=0)`` a minute of a small
cluster takes well under a second of wall time.

One network for both modes. The scenario's `NetworkModel` becomes the memory network's
link model through `NetworkModel.links` (over the members' addresses), the very
`transport.links.Links` the engine builds over member indices: the same link classes
(delay, exponential/uniform/no jitter, loss, duplication), zones and permanent one-way
loss. Network faults act on that model at their times, as the engine's do: `Partition`
(symmetric or one-way, healed at ``heal_at`` with the engine's ``heal-<id>`` marker),
`Clog`, `LossWindow`.

Members have the engine's names and addresses (`name_of`, `addr_of`), and their events
feed the engine's own `Collector`, so detections, false positives and convergence are
computed by the same code and mean the same thing in both modes. Each event is stamped
with ``trio.current_time()`` when the recorder task reads it; under an autojump clock
that is the instant the node published it (the clock only jumps when every task
sleeps).

What carries over from a `Scenario`: ``nodes``, ``duration_s``, ``seed``, ``config``,
``network``, ``seeds``, ``join_stagger_s``, ``leave_timeout_s`` and the faults `Crash`,
`Leave`, `Join`, `Restart` (the node is cancelled, as by a crash, and a fresh `Node` binds
the same address and joins through the seeds), `Churn` (expanded from the seed as the
engine does), `Slow` (the member's transport hands it every datagram and incoming stream
``delay_s`` late, as the engine does; its timers and its own requests are not delayed),
`Partition`, `Clog` and `LossWindow`. Refused with `ValueError` rather than ignored:

* ``start="converged"``: a `Node` joins; it has no public way to start from a prebuilt
  table;
* `Pause` and `Stall`: a paused or stalled process runs no timers and handles nothing
  until it resumes. `swim.Node` cannot be frozen from outside, and a network cut would
  be a different fault (the "paused" node would go on probing and suspecting the
  others). `simulations.real_stall` stalls real agent processes instead.

The stable-view mode (``config=Config.stable_views()``) runs unchanged: its alerts,
votes, digests and view syncs are ordinary datagrams and streams of the runtime. Its
members publish one `ViewChanged` per view change and no per-member events, so the
collector's detections and convergence say nothing about it; `TrioResult.view_changes`
keeps every `ViewChanged` a running member published, with the member and the time, and
`TrioResult.final_views` the view each running member held at the end.

Sealed clusters: ``run_trio(scenario, security=SecurityConfig(keyring=...))`` (or
`run_nodes`) gives every node that `swim.security.SecurityConfig`, so each datagram and
stream frame is sealed and opened by the production `Sealer` (AES-256-GCM, the label,
the replay window), with one strictly increasing reading of the trio clock as every
node's wall clock (`_ticking_clock`); the result's
`TrioResult.sealing` sums the sealers' counters (packets sealed, opened, rejected by
reason) over every node's lives.

The run is seeded (node rngs and the network's rng derive from ``scenario.seed``) but not
bit-for-bit reproducible: trio shuffles tasks that become runnable together, so the order
of sends, hence of the network's draws, varies. Compare the two modes against protocol
bounds (`detection_bound_s`), not against each other's exact times.

    >>> result = run_trio(Scenario(nodes=6, duration_s=40.0, seed=1,
    ...                            faults=(Crash(member=4, at=10.0),)))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import heapq
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import trio
import trio.testing

from simulations.engine import addr_of, default_restart_grace_s, member_seed, name_of
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
from simulations.metrics import (
    DOWN,
    FAULTY,
    HEALTHY,
    Collector,
    Convergence,
    Detection,
    FalsePositives,
    NetworkCounters,
    crash_summary,
)
from simulations.network import NetworkModel
from simulations.scenario import Scenario
from swim.core import Config
from swim.core.events import ViewChanged
from swim.core.stable.rings import Configuration
from swim.core.timing import retransmit_limit, suspicion_timeout_min_s
from swim.runtime.node import Node
from swim.security.config import SecurityConfig
from swim.security.seal import SealStats
from transport.base import Address, StreamHandler, Transport
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
    #: What the memory network did (the engine's counters: ``streams_failed`` counts
    #: exchanges the network cut or refused).
    network: NetworkCounters
    wall_s: float
    #: The sealers' counters summed over every node's lives (`SealStats` field names):
    #: packets sealed and opened, and those rejected, by reason.
    sealing: dict[str, int] = attrs.field(factory=dict)
    #: Stable-view mode: every `ViewChanged` a running member published, as (member
    #: index, seconds since the start when it was read, the event), in reading order.
    view_changes: tuple[tuple[int, float, ViewChanged], ...] = ()
    #: Stable-view mode: each member running at the end (by index) and the view it then
    #: held (None: still joining).
    final_views: dict[int, Configuration | None] = attrs.field(factory=dict)

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
    """One life (process) of a member."""

    index: int
    node: Node
    scope: trio.CancelScope
    started_at: float
    stopped_at: float | None = None
    #: Still feeding the collector (False once crashed or leaving).
    running: bool = True
    leave_requested: trio.Event = attrs.Factory(trio.Event)
    #: Its task is over and its address released.
    finished: trio.Event = attrs.Factory(trio.Event)


def _faults(sc: Scenario) -> list[Fault]:
    """The scenario's faults with `Churn` expanded, as the engine expands it."""
    churn_rng = random.Random(f"{sc.seed}/churn")
    candidates = [i for i in range(sc.nodes) if i >= sc.seeds]
    out: list[Fault] = []

    def add(faults: tuple[Fault, ...] | list[Crash | Restart]) -> None:
        for f in faults:
            if isinstance(f, Churn):
                add(f.expand(churn_rng, candidates))
            else:
                out.append(f)

    add(sc.faults)
    return out


def _check(sc: Scenario) -> None:
    if sc.start != "join":
        raise ValueError("trio mode starts members by joining (start='join'): swim.Node "
                         "has no public way to start from a prebuilt membership table")
    late = [f.member for f in sc.faults if isinstance(f, Join)]
    for f in sc.faults:
        if isinstance(f, Pause | Stall):
            raise ValueError(
                f"trio mode cannot model {f!r}: a paused or stalled process runs no timers "
                "and handles nothing until it resumes, and swim.Node cannot be frozen from "
                "outside (a network cut would be a different fault; simulations.real_stall "
                "stalls real processes)")
        if isinstance(f, Crash | Restart | Leave | Join | Slow) and not 0 <= f.member < sc.nodes:
            raise ValueError(f"{f!r}: no member {f.member} in a {sc.nodes}-member run")
        members: tuple[int, ...] = ()
        if isinstance(f, Clog | LossWindow):
            members = (f.src, f.dst)
        elif isinstance(f, Partition):
            members = tuple(m for group in f.groups for m in group)
        elif isinstance(f, Churn):
            members = f.members
        for m in members:
            if not 0 <= m < sc.nodes:
                raise ValueError(f"{f!r}: no member {m} in a {sc.nodes}-member run")
    for ow in sc.network.one_way:
        if not (0 <= ow.src < sc.nodes and 0 <= ow.dst < sc.nodes):
            raise ValueError(f"{ow!r}: no such member in a {sc.nodes}-member run")
    if len(late) != len(set(late)):
        raise ValueError("a member can join late only once")


def _network(model: NetworkModel, seed: int, addrs: list[Address]) -> MemoryNetwork:
    """The memory network whose link model is `model` over `addrs`."""
    return MemoryNetwork(links=model.links(random.Random(f"{seed}/network"), addrs))


class _LateInput(Transport):
    """A member's transport that hands it each datagram `delay_s()` late (read when the
    datagram arrives), as the engine's `Slow` does. Sending and requesting are not
    delayed; incoming streams are delayed by the handler `_slow_handler` wraps."""

    def __init__(self, inner: Transport, delay_s: Callable[[], float]) -> None:
        self.inner = inner
        self.stats = inner.stats
        self._delay_s = delay_s
        self._send, self._received = trio.open_memory_channel[tuple[bytes, Address]](math.inf)
        self._held: list[tuple[float, int, bytes, Address]] = []
        self._seq = 0
        self._wake = trio.Event()

    @property
    def local_addr(self) -> Address:
        return self.inner.local_addr

    async def send(self, data: bytes, addr: Address) -> bool:
        return await self.inner.send(data, addr)

    def receive(self) -> AsyncIterator[tuple[bytes, Address]]:
        return self._received

    async def request(self, addr: Address, data: bytes, *, timeout_s: float) -> bytes:
        return await self.inner.request(addr, data, timeout_s=timeout_s)

    async def hold(self) -> None:
        """Read the inner transport and hold each datagram for the current delay."""
        async for data, addr in self.inner.receive():
            delay_s = self._delay_s()
            if delay_s <= 0:
                self._send.send_nowait((data, addr))
                continue
            self._seq += 1
            heapq.heappush(self._held, (trio.current_time() + delay_s, self._seq, data, addr))
            self._wake.set()

    async def release(self) -> None:
        """Hand held datagrams on when their time comes."""
        while True:
            deadline = self._held[0][0] if self._held else math.inf
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            while self._held and self._held[0][0] <= now:
                _, _, data, addr = heapq.heappop(self._held)
                self._send.send_nowait((data, addr))


def _slow_handler(handler: StreamHandler, delay_s: Callable[[], float]) -> StreamHandler:
    async def late(data: bytes, addr: Address) -> bytes | None:
        wait_s = delay_s()
        if wait_s > 0:
            await trio.sleep(wait_s)
        return await handler(data, addr)

    return late


@contextlib.asynccontextmanager
async def _open_late(network: MemoryNetwork, addr: Address, handler: StreamHandler,
                     delay_s: Callable[[], float]) -> AsyncIterator[Transport]:
    async with network.open(addr, _slow_handler(handler, delay_s)) as inner:
        late = _LateInput(inner, delay_s)
        body_exc: BaseException | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(late.hold)
            nursery.start_soon(late.release)
            try:
                yield late
            except BaseException as exc:  # re-raised below, outside the nursery
                body_exc = exc
            finally:
                nursery.cancel_scope.cancel()
        if body_exc is not None:
            raise body_exc


def _ticking_clock() -> Callable[[], float]:
    """Every member's wall clock in one trio run: the trio clock, but strictly increasing.

    The sealers' replay state needs it: a node refuses sealed packets stamped at or
    before its start (`swim.security.Sealer`'s ``not_before``), and under an autojump
    clock a peer's answer is often sealed at the very instant the node started. A real
    clock has moved on by then; this one moves by the smallest float step per reading
    while the trio clock stands still, so readings keep the order of the calls.
    """
    last = -math.inf

    def now() -> float:
        nonlocal last
        t = trio.current_time()
        last = t if t > last else math.nextafter(last, math.inf)
        return last

    return now


async def run_nodes(scenario: Scenario, *, security: SecurityConfig | None = None
                    ) -> TrioResult:
    """Run `scenario` with one `swim.Node` per member in the current trio run.

    Takes ``scenario.duration_s`` of trio time: run it under a `MockClock` with
    ``autojump_threshold=0`` (as `run_trio` does, or a pytest-trio test taking
    ``autojump_clock``). Every node is stopped (as by a crash) before it returns.
    `security` is every node's sealing (default: plaintext mode, as `swim.Node`'s).
    """
    _check(scenario)
    sc = scenario
    faults = _faults(sc)
    wall_started = time.perf_counter()
    names = [name_of(i) for i in range(sc.nodes)]
    addrs = [addr_of(i) for i in range(sc.nodes)]
    seed_members = range(min(sc.seeds, sc.nodes))
    collector = Collector(names, seed=sc.seed,
                          restart_grace_s=default_restart_grace_s(sc.config, sc.nodes))
    network = _network(sc.network, sc.seed, addrs)
    links = network.links
    # Members a fault acts on count as faulty for the whole run, as in the engine.
    anomalous = anomalous_members(sc.faults, sc.nodes)
    slow_members = {f.member for f in faults if isinstance(f, Slow)}
    slow = [0.0] * sc.nodes
    current: dict[int, _Member] = {}
    lives: list[_Member] = []
    view_changes: list[tuple[int, float, ViewChanged]] = []
    generation = [0] * sc.nodes
    t0 = trio.current_time()
    wall_clock = _ticking_clock()

    def now() -> float:
        return trio.current_time() - t0

    def opener(i: int) -> Callable[[StreamHandler], Any]:
        if i not in slow_members:
            return lambda handler: network.open(addrs[i], handler)
        return lambda handler: _open_late(network, addrs[i], handler, lambda: slow[i])

    async def run_member(i: int, *, task_status: trio.TaskStatus[_Member]) -> None:
        life = generation[i]
        node = Node(
            sc.config,
            name=names[i],
            bind=addrs[i],
            seeds=[addrs[s] for s in seed_members if s != i],
            seed=member_seed(sc.seed, i, life),
            transport_factory=opener(i),
            leave_timeout_s=sc.leave_timeout_s,
            security=security,
            wall_clock=wall_clock,
        )
        member: _Member | None = None
        try:
            with trio.CancelScope() as scope:
                async with node:
                    subscription = node.events(max_buffer=1_000_000)
                    member = _Member(i, node, scope, started_at=now())
                    current[i] = member
                    lives.append(member)
                    collector.reset_view(i)
                    collector.set_node(i, truth=True, observer=True,
                                       health=FAULTY if i in anomalous else HEALTHY,
                                       now=now())
                    task_status.started(member)
                    async with trio.open_nursery() as inner:
                        inner.start_soon(record, member, subscription)
                        await member.leave_requested.wait()
                        await node.leave(sc.leave_timeout_s)
                        member.stopped_at = now()
                        inner.cancel_scope.cancel()
        finally:
            if member is not None:
                member.finished.set()

    async def record(member: _Member, subscription: Any) -> None:
        async for event in subscription:
            if member.running:
                collector.on_events(member.index, [event], now())
                if isinstance(event, ViewChanged):
                    view_changes.append((member.index, now(), event))

    def stop(i: int, kind: str) -> None:
        member = current.get(i)
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

    async def start(i: int, *, restart: bool = False) -> None:
        old = current.get(i)
        if old is not None and not old.finished.is_set():
            if old.running:
                stop(i, "crash")
            else:  # still leaving: the new process replaces it at once
                old.stopped_at = now()
                old.scope.cancel()
            await old.finished.wait()  # its address is free again
        generation[i] += 1
        await nursery.start(run_member, i)
        if restart:
            collector.restarted(i, now())

    def partition(f: Partition, pids: dict[int, int], key: int) -> None:
        groups = [[addrs[m] for m in group] for group in f.groups]
        pids[key] = links.partition(groups, one_way=f.one_way)

    def heal(pids: dict[int, int], key: int) -> None:
        pid = pids.pop(key, None)
        if pid is not None and links.heal(pid):
            collector.mark(f"heal-{pid}", now())

    def set_slow(i: int, delay_s: float) -> None:
        slow[i] = delay_s

    def mark(label: str, when: float | None) -> None:
        collector.mark(label, now() if when is None else when)

    # The schedule, in the engine's order: starts (staggered), the join marker, faults;
    # ties keep this order (the sequence number).
    schedule: list[tuple[float, int, Callable[[], Awaitable[None] | None]]] = []

    def at(when: float, action: Callable[[], Awaitable[None] | None]) -> None:
        schedule.append((when, len(schedule), action))

    late = {f.member for f in faults if isinstance(f, Join)}
    initial = [i for i in range(sc.nodes) if i not in late]
    last = 0.0
    for i in initial:
        when = sc.join_stagger_s * i / sc.nodes
        last = max(last, when)
        at(when, partial(start, i))
    at(last, partial(mark, "join", None))
    pids: dict[int, int] = {}
    for key, f in enumerate(faults):
        match f:
            case Crash():
                at(f.at, partial(stop, f.member, "crash"))
            case Leave():
                at(f.at, partial(stop, f.member, "leave"))
            case Join():
                at(f.at, partial(start, f.member))
                at(f.at, partial(mark, f"join-{f.member}", f.at))
            case Restart():
                at(f.at, partial(start, f.member, restart=True))
                at(f.at, partial(mark, f"restart-{f.member}", f.at))
            case Slow():
                at(f.at, partial(set_slow, f.member, f.delay_s))
                if f.until != math.inf:
                    at(f.until, partial(set_slow, f.member, 0.0))
            case Partition():
                at(f.at, partial(partition, f, pids, key))
                if f.heal_at != math.inf:
                    at(max(f.heal_at, f.at), partial(heal, pids, key))
            case Clog():
                at(f.at, partial(links.clog, addrs[f.src], addrs[f.dst], until=t0 + f.until))
            case LossWindow():
                at(f.at, partial(links.set_loss, addrs[f.src], addrs[f.dst], f.loss,
                                 until=t0 + f.until))
            case _:  # refused by _check
                raise AssertionError(f)
    schedule.sort(key=lambda entry: (entry[0], entry[1]))

    async with trio.open_nursery() as nursery:
        for when, _, action in schedule:
            if when > sc.duration_s:
                break
            await trio.sleep_until(t0 + when)
            outcome = action()
            if outcome is not None:
                await outcome
        await trio.sleep_until(t0 + sc.duration_s)
        end = now()
        result = _result(sc, collector, lives, network, end=end,
                         wall_s=time.perf_counter() - wall_started)
        result = attrs.evolve(result, view_changes=tuple(view_changes),
                              final_views=_final_views(current))
        nursery.cancel_scope.cancel()
    return result


def _result(sc: Scenario, collector: Collector, lives: list[_Member], network: MemoryNetwork,
            *, end: float, wall_s: float) -> TrioResult:
    period = sc.config.probe_interval_s
    up_s = [0.0] * sc.nodes
    sent = [0] * sc.nodes
    delivered = 0
    sealing = dict.fromkeys((f.name for f in attrs.fields(SealStats)), 0)
    for life in lives:
        seal_stats = life.node.stats().security
        for field in sealing:
            sealing[field] += getattr(seal_stats, field)
        up_s[life.index] += (life.stopped_at if life.stopped_at is not None else end) \
            - life.started_at
        transport = life.node.stats().transport
        sent[life.index] += transport.datagrams_sent
        delivered += transport.datagrams_received
    ns = network.stats
    rates = [sent[i] / (up_s[i] / period) for i in range(sc.nodes) if up_s[i] > 0]
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
        network=NetworkCounters(
            sent=ns.datagrams_routed, delivered=delivered,
            lost=ns.datagrams_dropped - ns.datagrams_blocked,
            duplicated=ns.datagrams_duplicated, blocked=ns.datagrams_blocked,
            clogged=ns.datagrams_clogged, undeliverable=ns.datagrams_undeliverable,
            streams=ns.streams_routed, streams_failed=ns.streams_dropped + ns.streams_refused,
        ),
        wall_s=wall_s,
        sealing=sealing,
    )


def _final_views(current: dict[int, _Member]) -> dict[int, Configuration | None]:
    """The view each running member holds in the stable-view mode (none in SWIM mode)."""
    views: dict[int, Configuration | None] = {}
    for i, member in sorted(current.items()):
        stable = member.node.core.stable if member.running else None
        if stable is not None:
            views[i] = stable.configuration
    return views


def run_trio(scenario: Scenario, *, security: SecurityConfig | None = None) -> TrioResult:
    """Run `scenario` in trio mode in a fresh trio run under an autojump `MockClock`
    (synchronous: for scripts and sweeps, not from inside a trio run); `security` as
    for `run_nodes`."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(partial(run_nodes, scenario, security=security), clock=clock)
