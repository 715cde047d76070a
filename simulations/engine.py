"""The discrete-event engine: one seeded heap driving many `Core` objects in virtual time.

Every action is an entry ``(time, sequence number, op, ...)`` in one heap; the sequence
number breaks ties, so entries due at the same instant run in the order they were
scheduled and nothing else is ever compared. Time jumps from one entry to the next.

The network is the one link model (`transport.links.Links`, over member indices, built
from the scenario's `NetworkModel`): it decides every datagram's delay, loss, duplication,
partition, one-way loss and clog, and every stream's reachability and leg delays, exactly
as it does for the in-memory transport and the core tests' router. While nothing impairs
the network (no partition, one-way loss or clog), `Engine._send` runs the model's loss,
duplication and delay steps inline from its precomputed `transport.links.LinkParams`,
with the same draws in the same order (a test checks the trace does not change when
every datagram goes through `Links.datagram` instead): that loop is the simulator's
hottest code.

Randomness comes from the run seed only: the network draws from
``Random(f"{seed}/net")``, the process of member ``i`` in its ``g``-th life from
``Random(member_seed(seed, i, g))`` (string seeds are hashed with SHA-512, so these do not
depend on the Python process), so the same seed gives a bit-identical trace.

Delivery modes
    ``"wire"``: each `Datagram.data` goes through `Core.receive_datagram`, so the real
    codec encodes and decodes every packet. ``"object"``: the same call also gets
    `Datagram.messages`, so the receiver skips decoding; accounting, behaviour and trace
    are the same (a test checks `Stats` and trace digests of both modes).

Joining, join retries, leave completion and stream timeouts are decided by the core
itself under the same `DriverPolicy` the trio runtime gives it, so simulated joins and
restarts behave as production ones do.

Streams are a request and a response, one network delay each way. The responder
handles the request when it arrives; the requester gets the response (or None, after
``Config.tcp_timeout_s`` from the start, when the responder is down or the model finds
the two ends not `connectable` or loses the stream when the request arrives). A paused
or stalled responder answers when it resumes, if that is before the timeout (the kernel
holds the connection meanwhile); a paused or stalled requester gets its outcome when it
resumes.

Node states: not started / down, up (running), paused (no input, no timers; datagrams
to it are dropped), stalled (no input, no timers; datagrams to it wait in a bounded
buffer until it resumes, see `Engine.stall`), input-stalled (timers run and it sends,
but its input waits in the same buffer: ``Stall(mode="input")``), leaving (running
until its departure has been gossiped). Only deliveries and timers of members that are
not running look at the state beyond "up": a run without stalls takes no extra step in
the hot loop.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from simulations.faults import STALL_BUFFER_DATAGRAMS
from simulations.metrics import DOWN, FAULTY, HEALTHY, Collector, LinkBytes, NetworkCounters
from simulations.network import NetworkModel
from swim.core import Config, Core, DriverPolicy
from swim.core.messages import Address, MemberState
from swim.core.outputs import Datagram, StreamReply, StreamRequest
from transport.links import JITTER_EXPONENTIAL, JITTER_UNIFORM, Drop, Links

Mode = Literal["wire", "object"]

# Node states.
DOWN_STATE: Final = 0
UP: Final = 1
PAUSED: Final = 2
LEAVING: Final = 3
STALLED: Final = 4
INPUT_STALLED: Final = 5

# Heap operations.
_TIMER: Final = 0
_DELIVER: Final = 1
_STREAM_REQUEST: Final = 2
_STREAM_RESULT: Final = 3
_CALL: Final = 4

_INF: Final = math.inf
_NAN: Final = math.nan
_PACK: Final = struct.Struct("<dII").pack
#: Converged starts use `Core.bootstrap` up to this size...
_EXACT_SHUFFLE_MAX: Final = 2048
#: ...and above it rotate one of this many shared random orders (see `bootstrap`).
_SHARED_ORDERS: Final = 16


def member_seed(seed: int, i: int, life: int) -> int:
    """The seed of member `i`'s core in its `life`-th process (1 for the first) in a run
    seeded `seed`: the same in the engine and in trio mode, so both draw the same
    choices (join jitter included) given the same inputs."""
    return random.Random(f"{seed}/{i}/{life}").getrandbits(63)


def addr_of(i: int) -> Address:
    """The address of member `i`."""
    return (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 7946)


def name_of(i: int) -> str:
    """The name of member `i`."""
    return f"node-{i}"


def default_restart_grace_s(config: Config, nodes: int) -> float:
    """How long after a restart failures about the member are not counted as false
    positives: the longest a failure about its previous process can still fire (the
    longest suspicion, started up to one slowest probe period late)."""
    return (config.suspicion_mult * config.suspicion_max_timeout_mult
            * max(1.0, math.log10(max(nodes, 1))) * config.probe_interval_s
            + config.awareness_max_multiplier * config.probe_interval_s)


class Engine:
    """N members, a network model and one event heap. Drive it with `run_until`.

    The engine knows nothing of scenarios: `simulations.scenario` schedules faults by
    calling `at` with the fault methods (`start`, `crash`, `pause`, `partition`...).
    """

    def __init__(
        self,
        *,
        nodes: int,
        config: Config,
        network: NetworkModel,
        seed: int,
        mode: Mode = "object",
        seeds: Sequence[int] = (0,),
        trace: bool = False,
        link_stats: bool = False,
        restart_grace_s: float | None = None,
        leave_timeout_s: float = 5.0,
    ) -> None:
        if mode not in ("wire", "object"):
            raise ValueError(f"mode must be 'wire' or 'object', got {mode!r}")
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self.n = nodes
        self.config = config
        self.network = network
        self.seed = seed
        self.mode: Mode = mode
        self.wire = mode == "wire"
        self.seeds = [s for s in seeds if 0 <= s < nodes]
        self.leave_timeout_s = leave_timeout_s
        self.policy = DriverPolicy(leave_timeout_s=leave_timeout_s)
        self.names = [name_of(i) for i in range(nodes)]
        self.addrs = [addr_of(i) for i in range(nodes)]
        self.index_of: dict[Address, int] = {a: i for i, a in enumerate(self.addrs)}
        self.now = 0.0
        #: The network: the one link model (`transport.links`), over member indices.
        self.links: Links[int] = network.links(random.Random(f"{seed}/net"), range(nodes))
        #: The network's random stream (the link model's).
        self.rng = self.links.rng
        # Zone of each member, read once for the fast path (zones do not change).
        self._zone = [self.links.zone_of(i) for i in range(nodes)]
        self.cores: list[Core | None] = [None] * nodes
        self.state = bytearray(nodes)
        self.generation = [0] * nodes
        self.timer_at = [_NAN] * nodes
        self.slow = [0.0] * nodes
        #: Members the scenario makes anomalous at some point (`faults.anomalous_members`:
        #: paused, slow, stalled, at a clogged or lossy link, cut off by a partition):
        #: they count as faulty for the whole run, as in Lifeguard's experiments.
        self.anomalous = bytearray(nodes)
        self.pause_end = [0.0] * nodes
        # Stalls (`stall`): when each stalled member resumes, the state it resumes to,
        # the core's deadline when it stopped, its buffer's room, and its buffer (only
        # members stalled now have one) of (sender, datagram, already delayed by Slow).
        self.stall_end = [0.0] * nodes
        self.stall_prev = bytearray(nodes)
        self.stall_timer = [_NAN] * nodes
        self.stall_room = [0] * nodes
        self.stall_queue: dict[int, list[tuple[int, Datagram, bool]]] = {}
        self.up_since = [0.0] * nodes
        self.up_total = [0.0] * nodes
        # Per-member traffic, counted by the network.
        self.dg_out = [0] * nodes
        self.dg_in = [0] * nodes
        self.msg_out = [0] * nodes
        self.msg_in = [0] * nodes
        self.bytes_out = [0] * nodes
        self.bytes_in = [0] * nodes
        self.st_out = [0] * nodes
        self.st_bytes_out = [0] * nodes
        self.st_bytes_in = [0] * nodes
        self.link_stats = link_stats
        self.links_bytes: dict[int, list[int]] = {}
        # Network counters.
        self.sent = 0
        self.lost = 0
        self.duplicated = 0
        self.blocked = 0
        self.clogged = 0
        self.undeliverable = 0
        self.queued = 0
        self.overflowed = 0
        self.streams = 0
        self.streams_failed = 0
        self._heap: list[tuple[Any, ...]] = []
        self._seq = itertools.count()
        self.processed = 0
        self._trace = hashlib.sha256() if trace else None
        grace = restart_grace_s
        if grace is None:
            grace = default_restart_grace_s(config, nodes)
        self.collector = Collector(self.names, seed=seed, restart_grace_s=grace)
        self.progress: Callable[[float], None] | None = None

    # ================================================================== scheduling

    def at(self, when: float, action: Callable[..., None], *args: Any) -> None:
        """Run ``action(*args)`` at simulated time `when` (not before now)."""
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), _CALL, action, args))

    # ============================================================== node lifecycle

    def core(self, i: int) -> Core | None:
        """The running (or paused, or leaving) process of member `i`, if any."""
        return self.cores[i]

    def is_up(self, i: int) -> bool:
        """Member `i` runs (up or leaving: not paused, not stalled in either mode)."""
        return self.state[i] in (UP, LEAVING)

    def _new_core(self, i: int) -> Core:
        self.generation[i] += 1
        rng = random.Random(member_seed(self.seed, i, self.generation[i]))
        core = Core(
            self.config, name=self.names[i], addr=self.addrs[i], rng=rng, now=self.now,
            policy=self.policy,
        )
        self.cores[i] = core
        self.state[i] = UP
        self.timer_at[i] = _NAN
        self.up_since[i] = self.now
        return core

    def poke(self, i: int) -> None:
        """Collect member `i`'s outputs after calling one of its core's methods directly
        (``engine.core(i).broadcast(b"x", now=engine.now); engine.poke(i)``)."""
        core = self.cores[i]
        if core is not None and self.state[i] in (UP, LEAVING):
            self._flush(i, core, self.now)

    def _health(self, i: int) -> int:
        return FAULTY if self.slow[i] > 0 or self.anomalous[i] else HEALTHY

    def start(self, i: int, *, join: bool = True, restart: bool = False) -> None:
        """Start a fresh process for member `i` (crashing any running one) and join."""
        if self.cores[i] is not None:
            self.crash(i)
        core = self._new_core(i)
        now = self.now
        coll = self.collector
        coll.reset_view(i)
        coll.set_node(i, truth=True, observer=True, health=self._health(i), now=now)
        if restart:
            coll.restarted(i, now)
        if join:
            targets = self._join_targets(i)
            if targets:
                core.join(targets, now=now)
        self._flush(i, core, now)

    def bootstrap(self, members: Sequence[int]) -> None:
        """Start `members` already knowing each other as alive (a converged cluster).

        Every core gets the same prebuilt ``name -> MemberState`` table through the
        public `Core.bootstrap` (one shared `MemberState` per member, copied at C
        speed), so a large cluster starts in steady state without a join storm.
        """
        now = self.now
        names = [self.names[i] for i in members]
        table = {self.names[i]: MemberState(self.names[i], self.addrs[i], 0) for i in members}
        if len(names) <= _EXACT_SHUFFLE_MAX:
            for i in members:
                self._new_core(i).bootstrap(table, now=now)
        else:
            # Shuffling n names per member is O(n^2) Python work, over a minute at
            # n = 10,000. Large clusters get as first probe order a random rotation of
            # one of a few shared random permutations (the core reshuffles it with its
            # own rng after each pass): every member still probes every other once per
            # pass, at an independent uniform offset.
            base_rng = random.Random(f"{self.seed}/probe-order")
            bases = []
            for _ in range(_SHARED_ORDERS):
                base = list(names)
                base_rng.shuffle(base)
                bases.append(base)
            for i in members:
                pick = random.Random(f"{self.seed}/{i}/order")
                base = bases[pick.randrange(len(bases))]
                k = pick.randrange(len(base))
                order = base[k:] + base[:k]
                order.remove(self.names[i])
                self._new_core(i).bootstrap(table, now=now, probe_order=order)
        self.collector.bootstrap(list(members), now)
        for i in members:
            self.collector.health[i] = self._health(i)
        for i in members:
            started = self.cores[i]
            assert started is not None
            self._flush(i, started, now)

    def _join_targets(self, i: int) -> list[Address]:
        targets = [self.addrs[s] for s in self.seeds if s != i]
        if not targets:
            for j in range(self.n):
                if j != i and self.state[j] == UP:
                    targets = [self.addrs[j]]
                    break
        return targets

    def _stop(self, i: int) -> None:
        self.up_total[i] += self.now - self.up_since[i]
        self.cores[i] = None
        self.state[i] = DOWN_STATE
        self.timer_at[i] = _NAN
        if self.stall_queue:
            self.stall_queue.pop(i, None)  # a stalled process's buffer dies with it

    def crash(self, i: int) -> None:
        """Member `i`'s process disappears (no-op if it is not running)."""
        state = self.state[i]
        if self.cores[i] is None:
            return
        if state == STALLED:
            state = self.stall_prev[i]
        self._stop(i)
        coll = self.collector
        coll.set_node(i, truth=False, observer=False, health=DOWN, now=self.now)
        if state != LEAVING:
            coll.departed(i, "crash", self.now)

    def restart(self, i: int) -> None:
        """A fresh process for member `i` (incarnation 0, same name and address)."""
        self.start(i, restart=True)

    def leave(self, i: int) -> None:
        """Member `i` leaves gracefully and stops once its departure went out."""
        core = self.cores[i]
        if core is None or self.state[i] != UP:
            return
        now = self.now
        core.leave(now=now)
        self.state[i] = LEAVING
        coll = self.collector
        coll.set_node(i, truth=False, observer=False, health=DOWN, now=now)
        coll.departed(i, "leave", now)
        self._flush(i, core, now)

    def pause(self, i: int, until: float) -> None:
        """Freeze member `i` until `until`: no input, no timers, datagrams dropped."""
        if self.state[i] != UP:
            return
        self.state[i] = PAUSED
        self.pause_end[i] = until
        self.timer_at[i] = _NAN
        self.collector.set_node(i, truth=True, observer=False, health=FAULTY, now=self.now)
        core = self.cores[i]
        self.at(until, self._resume, i, core)

    def _resume(self, i: int, core: Core) -> None:
        if self.cores[i] is not core or self.state[i] != PAUSED:
            return
        self.state[i] = UP
        self.timer_at[i] = _NAN
        self.collector.set_node(i, truth=True, observer=True, health=self._health(i),
                                now=self.now)
        self._flush(i, core, self.now)

    def stall(
        self, members: Sequence[int], until: float,
        buffer_datagrams: int = STALL_BUFFER_DATAGRAMS, timers: bool = False,
    ) -> None:
        """Block `members` until `until`, together (`faults.Stall` has the semantics):
        no timers, no input; arrivals queue in a buffer of `buffer_datagrams` each (the
        overflow is dropped and counted); on resume the overdue timers fire, then the
        queue is handled, in arrival order, at the resume instant. With `timers` only
        the input stops (``Stall(mode="input")``): timers run and what they send goes
        out. Members not up or leaving (down, paused, already stalled) are left alone;
        with `timers`, leaving ones too."""
        now = self.now
        stalled = []
        for i in members:
            state = self.state[i]
            if state not in (UP, LEAVING) or (timers and state != UP):
                continue
            self.state[i] = INPUT_STALLED if timers else STALLED
            self.stall_prev[i] = state
            self.stall_end[i] = until
            self.stall_room[i] = buffer_datagrams
            self.stall_queue[i] = []
            if not timers:
                # The core's deadline stays where it was (timers keep absolute
                # deadlines); the timer entry already in the heap is ignored, and
                # `_unstall` fires it.
                self.stall_timer[i] = self.timer_at[i]
                self.timer_at[i] = _NAN
            if state == UP:
                # An input-stalled member still runs its timers, so its view moves on
                # (it stays an observer); a stalled one's is frozen.
                self.collector.set_node(i, truth=True, observer=timers, health=FAULTY,
                                        now=now)
            stalled.append(i)
        if stalled:
            self.at(until, self._unstall, tuple(stalled), until)

    def _unstall(self, members: tuple[int, ...], until: float) -> None:
        now = self.now
        for i in members:
            stalled = self.state[i]
            if stalled not in (STALLED, INPUT_STALLED) or self.stall_end[i] != until:
                continue  # crashed or restarted meanwhile
            core = self.cores[i]
            assert core is not None
            state = self.stall_prev[i]
            self.state[i] = state
            queue = self.stall_queue.pop(i, [])
            if state == UP:
                self.collector.set_node(i, truth=True, observer=True, health=self._health(i),
                                        now=now)
            if stalled == STALLED:
                # As the runtime's pump does: run the timers if the deadline has passed
                # (a NaN deadline, never set, counts as passed).
                due = self.stall_timer[i]
                self.timer_at[i] = _NAN
                if not due > now:
                    core.handle_timer(now=now)
                self._flush(i, core, now)
            slow = self.slow[i]
            for k, (src, d, late) in enumerate(queue):
                if self.cores[i] is not core or self.state[i] not in (UP, LEAVING):
                    self.undeliverable += len(queue) - k  # it left meanwhile
                    break
                if slow and not late:
                    heapq.heappush(self._heap, (now + slow, next(self._seq), _DELIVER, i, src,
                                                d, True))
                else:
                    self._receive(i, src, d, now)

    def _hold(self, j: int, i: int, d: Datagram, late: bool) -> None:
        """A datagram from `i` reached stalled member `j`: into its buffer if there is
        room, else dropped (counted)."""
        queue = self.stall_queue[j]
        if len(queue) >= self.stall_room[j]:
            self.overflowed += 1
            return
        queue.append((i, d, late))
        self.queued += 1

    def _receive(self, j: int, i: int, d: Datagram, now: float) -> None:
        """Member `j` handles datagram `d` from `i` now (the hot loop's delivery, for the
        rarer paths)."""
        core = self.cores[j]
        assert core is not None
        size = len(d.data)
        self.dg_in[j] += 1
        self.bytes_in[j] += size
        self.msg_in[j] += len(d.messages)
        if self._trace is not None:
            self._trace.update(_PACK(now, i, j))
            self._trace.update(d.data)
        if self.wire:
            core.receive_datagram(d.data, self.addrs[i], now=now)
        else:
            core.receive_datagram(d.data, self.addrs[i], now=now, messages=d.messages)
        self._flush(j, core, now)

    def set_slow(self, i: int, delay_s: float) -> None:
        """Member `i` handles every input `delay_s` late (0: back to normal)."""
        self.slow[i] = delay_s
        state = self.state[i]
        if state in (UP, PAUSED, INPUT_STALLED) or (state == STALLED
                                                    and self.stall_prev[i] == UP):
            self.collector.set_node(
                i, truth=True, observer=state in (UP, INPUT_STALLED),
                health=self._health(i) if state == UP else FAULTY, now=self.now,
            )

    # ============================================================== network faults

    def partition(self, groups: Sequence[Sequence[int]], *, one_way: bool = False) -> int:
        """Split the members into `groups` (the unlisted form one more); returns its id."""
        return self.links.partition(groups, one_way=one_way)

    def heal(self, pid: int) -> None:
        """End partition `pid` and mark the moment for convergence."""
        if self.links.heal(pid):
            self.collector.mark(f"heal-{pid}", self.now)

    def clog(self, src: int, dst: int, until: float) -> None:
        """Hold datagrams from `src` to `dst` until `until`."""
        self.links.clog(src, dst, until)

    def set_loss(self, src: int, dst: int, loss: float, *, until: float = _INF) -> None:
        """One-way loss from `src` to `dst` until `until` (0 removes it)."""
        self.links.set_loss(src, dst, loss, until=until)

    def _blocked(self, i: int, j: int) -> bool:
        """A datagram from `i` to `j` sent now would be cut by a partition or lost to
        one-way loss (drawing like the network would)."""
        links = self.links
        if links.cut(i, j):
            return True
        loss = links.one_way_loss(i, j, self.now)
        return loss > 0 and (loss >= 1 or links.rng.random() < loss)

    def _stream_blocked(self, i: int, j: int) -> bool:
        """A stream between `i` and `j` could not be set up now."""
        return self.links.connectable(i, j, self.now) is not None

    # ================================================================== the loop

    def _flush(self, i: int, core: Core, now: float) -> None:
        """Collect a core's outputs after an input: datagrams, streams, events, timer."""
        datagrams, streams, events, when, leave_done = core.poll()
        if datagrams:
            self._send(i, datagrams, now)
        if streams:
            self._open_streams(i, core, streams, now)
        if events:
            self.collector.on_events(i, events, now)
            if self._trace is not None:
                self._trace.update(_PACK(now, i, 0))
                self._trace.update(repr(events).encode())
        if leave_done and self.state[i] == LEAVING:
            self._stop(i)
            return
        if when != self.timer_at[i]:
            self.timer_at[i] = when
            if when != _INF:
                heapq.heappush(
                    self._heap,
                    (when if when > now else now, next(self._seq), _TIMER, i, core, when),
                )

    def _send(self, i: int, datagrams: list[Datagram], now: float) -> None:
        # The link model's decision (`Links.datagram`). While the network is unimpaired
        # (no partition, one-way loss or clog) its steps 3-5 (loss, duplication, delay)
        # run here inline, with the model's parameters and the same draws in the same
        # order; otherwise every datagram goes through `Links.datagram`.
        index_of = self.index_of
        heap = self._heap
        seq = self._seq
        push = heapq.heappush
        links = self.links
        rng = links.rng
        impaired = links.impaired
        cross = links.cross_params
        same = links.link_params
        dmin, jit, kind, rate, loss, dup = same
        zone = self._zone
        zi = zone[i]
        out_bytes = 0
        out_msgs = 0
        for d in datagrams:
            size = len(d.data)
            out_bytes += size
            out_msgs += len(d.messages)
            j = index_of.get(d.addr)
            if j is None:
                self.undeliverable += 1
                continue
            if self.link_stats:
                key = i * self.n + j
                entry = self.links_bytes.get(key)
                if entry is None:
                    self.links_bytes[key] = [1, size]
                else:
                    entry[0] += 1
                    entry[1] += size
            if impaired:
                fate = links.datagram(i, j, now)
                drop = fate.drop
                if drop is not None:
                    if drop is Drop.LOST:
                        self.lost += 1
                    else:
                        self.blocked += 1
                    continue
                if fate.duplicated:
                    self.duplicated += 1
                if fate.clogged:
                    self.clogged += len(fate.arrivals)
                for t in fate.arrivals:
                    push(heap, (t, next(seq), _DELIVER, j, i, d, False))
                continue
            if cross is not None:
                dmin, jit, kind, rate, loss, dup = same if zone[j] == zi else cross
            if loss and rng.random() < loss:
                self.lost += 1
                continue
            if dup and rng.random() < dup:
                self.duplicated += 1
                copies = 2
            else:
                copies = 1
            for _ in range(copies):
                if kind == JITTER_EXPONENTIAL:
                    t = now + dmin + rng.expovariate(rate)
                elif kind == JITTER_UNIFORM:
                    t = now + dmin + rng.random() * 2.0 * jit
                else:
                    t = now + dmin
                push(heap, (t, next(seq), _DELIVER, j, i, d, False))
        self.sent += len(datagrams)
        self.dg_out[i] += len(datagrams)
        self.bytes_out[i] += out_bytes
        self.msg_out[i] += out_msgs

    def _open_streams(self, i: int, core: Core, streams: list[StreamRequest], now: float) -> None:
        for r in streams:
            self.streams += 1
            self.st_out[i] += 1
            self.st_bytes_out[i] += len(r.data)
            j = self.index_of.get(r.addr)
            if j is None:
                self._stream_fail(i, core, r, now)
                continue
            delay = self.links.delay(i, j)
            heapq.heappush(
                self._heap, (now + delay, next(self._seq), _STREAM_REQUEST, j, i, core, r, now,
                             False),
            )

    def _stream_fail(self, i: int, core: Core, r: StreamRequest, started: float) -> None:
        heapq.heappush(
            self._heap,
            (max(self.now, started + self.config.tcp_timeout_s), next(self._seq),
             _STREAM_RESULT, i, core, r, None, 0),
        )

    def _on_stream_request(  # noqa: PLR0917 (called with a heap entry's fields)
        self, j: int, i: int, core_i: Core, r: StreamRequest, started: float, late: bool
    ) -> None:
        now = self.now
        state = self.state[j]
        timeout_at = started + self.config.tcp_timeout_s
        if state == DOWN_STATE or self.links.connectable(i, j, now) is not None:
            self._stream_fail(i, core_i, r, started)
            return
        if state in (PAUSED, STALLED, INPUT_STALLED):
            resume = self.pause_end[j] if state == PAUSED else self.stall_end[j]
            if resume < timeout_at:
                heapq.heappush(self._heap, (resume, next(self._seq), _STREAM_REQUEST, j, i,
                                            core_i, r, started, late))
            else:
                self._stream_fail(i, core_i, r, started)
            return
        if self.slow[j] and not late:
            heapq.heappush(self._heap, (now + self.slow[j], next(self._seq), _STREAM_REQUEST,
                                        j, i, core_i, r, started, True))
            return
        if self.links.stream_lost(i, j):
            self._stream_fail(i, core_i, r, started)
            return
        core_j = self.cores[j]
        assert core_j is not None
        self.st_bytes_in[j] += len(r.data)
        response = core_j.handle_stream_request(
            r.data, self.addrs[i], now=now, messages=None if self.wire else r.messages
        )
        size = 0 if response is None else len(response.data)
        self.st_bytes_out[j] += size
        if self._trace is not None:
            self._trace.update(_PACK(now, i, j))
            self._trace.update(r.data)
            self._trace.update(struct.pack("<q", size if response is not None else -1))
        self._flush(j, core_j, now)
        delay = self.links.delay(j, i)
        heapq.heappush(self._heap, (now + delay, next(self._seq), _STREAM_RESULT, i, core_i, r,
                                    response, size))

    def _on_stream_result(
        self, i: int, core: Core, r: StreamRequest, response: StreamReply | None, size: int,
    ) -> None:
        if self.cores[i] is not core:
            return
        state = self.state[i]
        if state in (PAUSED, STALLED, INPUT_STALLED):
            resume = self.pause_end[i] if state == PAUSED else self.stall_end[i]
            heapq.heappush(self._heap, (resume, next(self._seq), _STREAM_RESULT, i,
                                        core, r, response, size))
            return
        now = self.now
        if response is None:
            self.streams_failed += 1
        self.st_bytes_in[i] += size
        if response is None:
            core.receive_stream_response(r.id, None, now=now)
        else:
            core.receive_stream_response(
                r.id, response.data, now=now,
                messages=None if self.wire else response.messages,
            )
        self._flush(i, core, now)

    def run_until(self, end: float) -> None:
        """Process every entry due at or before `end`; then the clock reads `end`."""
        heap = self._heap
        pop = heapq.heappop
        cores = self.cores
        state = self.state
        timer_at = self.timer_at
        addrs = self.addrs
        slow = self.slow
        flush = self._flush
        wire = self.wire
        trace = self._trace
        dg_in = self.dg_in
        msg_in = self.msg_in
        bytes_in = self.bytes_in
        progress = self.progress
        processed = 0
        next_report = time.perf_counter() + 0.2
        while heap and heap[0][0] <= end:
            entry = pop(heap)
            now = entry[0]
            self.now = now
            op = entry[2]
            processed += 1
            if op == _DELIVER:
                j = entry[3]
                st = state[j]
                if st not in (UP, LEAVING):
                    if st in (STALLED, INPUT_STALLED):
                        self._hold(j, entry[4], entry[5], entry[6])
                    else:
                        self.undeliverable += 1
                    continue
                if slow[j] and not entry[6]:
                    heapq.heappush(heap, (now + slow[j], next(self._seq), _DELIVER, j,
                                          entry[4], entry[5], True))
                    continue
                core = cores[j]
                assert core is not None
                d = entry[5]
                i = entry[4]
                size = len(d.data)
                dg_in[j] += 1
                bytes_in[j] += size
                msg_in[j] += len(d.messages)
                if trace is not None:
                    trace.update(_PACK(now, i, j))
                    trace.update(d.data)
                if wire:
                    core.receive_datagram(d.data, addrs[i], now=now)
                else:
                    core.receive_datagram(d.data, addrs[i], now=now, messages=d.messages)
                flush(j, core, now)
            elif op == _TIMER:
                i = entry[3]
                core = entry[4]
                if cores[i] is not core or timer_at[i] != entry[5]:
                    continue
                st = state[i]
                if st not in (UP, LEAVING) and st != INPUT_STALLED:
                    continue
                timer_at[i] = _NAN
                core.handle_timer(now=now)
                flush(i, core, now)
            elif op == _STREAM_REQUEST:
                self._on_stream_request(*entry[3:])
            elif op == _STREAM_RESULT:
                self._on_stream_result(*entry[3:])
            else:
                entry[3](*entry[4])
            if progress is not None and processed & 0x3FFF == 0:
                wall = time.perf_counter()
                if wall >= next_report:
                    next_report = wall + 0.2
                    progress(now)
        self.processed += processed
        self.now = max(self.now, end)

    # ================================================================= read-outs

    def member_up_s(self, i: int) -> float:
        """Seconds member `i`'s processes have been running (paused time included)."""
        extra = self.now - self.up_since[i] if self.cores[i] is not None else 0.0
        return self.up_total[i] + extra

    def network_counters(self) -> NetworkCounters:
        delivered = sum(self.dg_in)
        return NetworkCounters(
            sent=self.sent, delivered=delivered, lost=self.lost, duplicated=self.duplicated,
            blocked=self.blocked, clogged=self.clogged, undeliverable=self.undeliverable,
            queued=self.queued, overflowed=self.overflowed,
            streams=self.streams, streams_failed=self.streams_failed,
        )

    def link_rows(self) -> tuple[LinkBytes, ...] | None:
        if not self.link_stats:
            return None
        return tuple(
            LinkBytes(src=key // self.n, dst=key % self.n, datagrams=v[0], bytes=v[1])
            for key, v in sorted(self.links_bytes.items())
        )

    def trace_digest(self) -> str | None:
        return None if self._trace is None else self._trace.hexdigest()
