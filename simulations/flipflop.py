"""Flip-flop runs: a few members lose all ingress over and over (Rapid, ATC 2018, §2).

`FlipFlop` describes the fault: from `at`, the `members` drop every datagram sent to
them for ``down_s`` (a one-way partition: the rest cannot reach them, they can still
send, and they still reach each other), then have it back for ``up_s``, repeatedly,
until the run ends. `run_flip_flop` runs a converged cluster through it on the engine
and measures what the healthy members (everyone else) see, sampling every member's
view once a second:

* the *view* of a member: in SWIM mode the members it holds alive or suspect (as
  memberlist's ``Members()``), itself included; in the stable-view mode its current
  configuration;
* `FlipFlopResult.transition_s`: from the onset to the first sample at which every
  healthy member's view is exactly the healthy members (N - f);
* `healthy_removed`: healthy members missing from some healthy member's view at some
  sample (a false removal);
* over the *settled window* (from ``onset + settle_s`` to the end): the distinct view
  sizes healthy members held, the share of samples at which all healthy views were
  identical, and the share at which all were exactly the healthy members;
* `failure_events`: SWIM's `MemberFailed` events at every member (a declaration that
  reaches everyone counts at everyone), or in stable mode the members removed by
  `ViewChanged` events at every member; `view_changes`: `ViewChanged` events per
  healthy member (min and max);
* cost: datagrams, messages (piggybacked ones included) and bytes (datagrams and
  streams) sent per member per second over the whole run;
* with ``trace=True``, `FlipFlopResult.samples`: at every sample, how many healthy
  members held a view of each size (`size_counts`), for a view-size-over-time figure.

`LossyMembers` is the other anomaly measured the same way (Rapid's 80 % loss on 1 % of
members): from `at` on, every datagram to or from its members is lost with
probability `loss`. Pass it as `fault` to `run_flip_flop`.

The same seed gives the same run in both modes' network (the engine's seeded heap);
the modes differ only in their `Config`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import attrs
from attrs import AttrsInstance

from simulations.engine import Engine, default_restart_grace_s
from simulations.metrics import Collector
from simulations.network import NetworkModel
from swim.core import Config, MemberFailed
from swim.core.events import Event, ViewChanged

_UP_BELIEFS = (1, 2)  # the collector's ALIVE and SUSPECT

#: One point of a traced run: (sample time, view size, members holding a view that size).
SizeCount = tuple[float, int, int]


def size_counts(t: float, sizes: Iterable[int]) -> list[SizeCount]:
    """The `SizeCount` points of one sample at `t`, from each observer's view size
    (smallest size first)."""
    counts = Counter(sizes)
    return [(t, size, counts[size]) for size in sorted(counts)]


@attrs.frozen(kw_only=True)
class FlipFlop:
    """`members` lose all ingress for `down_s`, get it back for `up_s`, repeatedly,
    from `at` until the run ends."""

    members: tuple[int, ...]
    at: float
    down_s: float = attrs.field(default=20.0, validator=attrs.validators.gt(0))
    up_s: float = attrs.field(default=20.0, validator=attrs.validators.gt(0))

    def windows(self, end: float) -> list[tuple[float, float]]:
        """The (start, stop) of every ingress outage before `end`."""
        out = []
        start = self.at
        while start < end:
            out.append((start, min(start + self.down_s, end)))
            start += self.down_s + self.up_s
        return out


@attrs.frozen(kw_only=True)
class LossyMembers:
    """From `at` on, datagrams to and from `members` are lost with probability `loss`
    (each direction of each of their links, for the rest of the run)."""

    members: tuple[int, ...]
    at: float
    loss: float = attrs.field(
        default=0.8, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )


@attrs.frozen(kw_only=True)
class FlipFlopResult:
    """What one flip-flop run measured (see the module doc)."""

    mode: str
    nodes: int
    seed: int
    flappers: tuple[int, ...]
    duration_s: float
    onset: float
    settle_s: float
    transition_s: float | None
    healthy_removed: int
    view_sizes_settled: tuple[int, ...]
    identical_settled: float
    at_target_settled: float
    failure_events: int
    view_changes_min: int
    view_changes_max: int
    datagrams_per_member_s: float
    messages_per_member_s: float
    bytes_per_member_s: float
    wall_s: float
    #: With ``trace=True``: the healthy members' view sizes at every sample.
    samples: tuple[SizeCount, ...] = ()

    def row(self) -> dict[str, Any]:
        """The result as a plain dict (without the samples)."""
        return row_without_samples(self)


def row_without_samples(result: AttrsInstance) -> dict[str, Any]:
    """An attrs result as a plain dict, its ``samples`` field left out."""
    return attrs.asdict(result, filter=lambda a, _v: a.name != "samples")


class CountingCollector(Collector):
    """The engine's collector, also counting `MemberFailed` events, members removed by
    `ViewChanged` events, and view changes per member."""

    def __init__(self, names: list[str], *, seed: int, restart_grace_s: float) -> None:
        super().__init__(names, seed=seed, restart_grace_s=restart_grace_s)
        self.failed_events = 0
        self.removed_events = 0
        self.view_changes = [0] * len(names)

    def on_events(self, o: int, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, MemberFailed):
                self.failed_events += 1
            elif isinstance(event, ViewChanged):
                self.view_changes[o] += 1
                self.removed_events += len(event.removed)
        super().on_events(o, events, now)


def counting_engine(config: Config, *, nodes: int, seed: int,
                    network: NetworkModel | None = None) -> tuple[Engine, CountingCollector]:
    """An engine of `nodes` members (none started; LAN unless `network`) whose
    collector is a `CountingCollector`, and that collector."""
    engine = Engine(nodes=nodes, config=config, network=network or NetworkModel.lan(),
                    seed=seed)
    coll = CountingCollector(engine.names, seed=seed,
                             restart_grace_s=default_restart_grace_s(config, nodes))
    engine.collector = coll
    return engine, coll


def view_of(engine: Engine, coll: Collector, o: int) -> tuple[Hashable, frozenset[int]] | None:
    """Member `o`'s view (see the module doc) as (a key equal for equal views, the
    member indices), or None if it has none (down, or joining in stable mode)."""
    core = engine.core(o)
    if core is None:
        return None
    stable = core.stable
    if stable is not None:
        conf = stable.configuration
        if conf is None:
            return None
        index = coll.index
        return conf.id, frozenset(index[m] for m in conf.members if m in index)
    beliefs = coll.beliefs[o]
    members = frozenset([o, *(x for x, b in enumerate(beliefs) if b in _UP_BELIEFS)])
    return coll.view_hash[o], members


def run_flip_flop(
    config: Config, *, nodes: int, flappers: Sequence[int], seed: int, duration_s: float,
    onset: float = 20.0, down_s: float = 20.0, up_s: float = 20.0, settle_s: float = 60.0,
    network: NetworkModel | None = None, sample_s: float = 1.0,
    fault: FlipFlop | LossyMembers | None = None, trace: bool = False,
) -> FlipFlopResult:
    """Run `nodes` members (converged at 0) through a `FlipFlop` of `flappers` from
    `onset` (or through `fault`, whose members and start then replace `flappers` and
    `onset`); see the module doc for what is measured (`trace`: keep the samples)."""
    started = time.perf_counter()
    engine, coll = counting_engine(config, nodes=nodes, seed=seed, network=network)
    engine.bootstrap(range(nodes))
    if fault is None:
        fault = FlipFlop(members=tuple(flappers), at=onset, down_s=down_s, up_s=up_s)
    onset = fault.at
    healthy = [i for i in range(nodes) if i not in set(fault.members)]
    target = frozenset(healthy)
    if isinstance(fault, FlipFlop):
        for start, stop in fault.windows(duration_s):
            engine.at(start, _cut_ingress, engine, healthy, stop)
    else:
        engine.at(fault.at, _lossy, engine, fault)
    transition: float | None = None
    removed: set[int] = set()
    sizes: set[int] = set()
    samples = identical = at_target = 0
    traced: list[SizeCount] = []
    t = 0.0
    while t < duration_s:
        t = min(t + sample_s, duration_s)
        engine.run_until(t)
        views: dict[Hashable, frozenset[int]] = {}
        keys: list[Hashable | None] = []
        for o in healthy:
            view = view_of(engine, coll, o)
            if view is None:
                keys.append(None)
                continue
            views.setdefault(view[0], view[1])
            keys.append(view[0])
        if trace:
            traced += size_counts(t, (len(views[k]) for k in keys if k is not None))
        for members in views.values():
            removed.update(target - members)
        all_target = None not in keys and all(m == target for m in views.values())
        if t >= onset and transition is None and all_target:
            transition = t - onset
        if t >= onset + settle_s:
            samples += 1
            identical += None not in keys and len(views) == 1
            at_target += all_target
            sizes.update(len(m) for m in views.values())
    wall = time.perf_counter() - started
    per = 1.0 / (nodes * duration_s)
    changes = [coll.view_changes[o] for o in healthy]
    return FlipFlopResult(
        mode=config.membership_mode, nodes=nodes, seed=seed, flappers=fault.members,
        duration_s=duration_s, onset=onset, settle_s=settle_s, transition_s=transition,
        healthy_removed=len(removed), view_sizes_settled=tuple(sorted(sizes)),
        identical_settled=identical / samples if samples else 0.0,
        at_target_settled=at_target / samples if samples else 0.0,
        failure_events=coll.failed_events + coll.removed_events,
        view_changes_min=min(changes), view_changes_max=max(changes),
        datagrams_per_member_s=sum(engine.dg_out) * per,
        messages_per_member_s=sum(engine.msg_out) * per,
        bytes_per_member_s=(sum(engine.bytes_out) + sum(engine.st_bytes_out)) * per,
        wall_s=wall, samples=tuple(traced),
    )


def _lossy(engine: Engine, fault: LossyMembers) -> None:
    for i in fault.members:
        for j in range(engine.n):
            if j != i:
                engine.set_loss(i, j, fault.loss)
                engine.set_loss(j, i, fault.loss)


def _cut_ingress(engine: Engine, healthy: list[int], until: float) -> None:
    """Drop every datagram from the healthy members to the rest until `until`."""
    pid = engine.partition([healthy], one_way=True)
    engine.at(until, engine.heal, pid)
