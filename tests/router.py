"""A tiny synchronous network for core tests: explicit time, chosen drops, no I/O.

The network is the one link model every in-memory network uses (`transport.links`, over
addresses, as `router.links`): by default a fixed `delay_s` per datagram and no loss;
`partition`, `lossy` and `heal` configure it, and anything else it can do (one-way
partitions and loss, clogs, jitter, duplication) is there through `router.links`. On top
of it, `drop(src, dst, messages)` is a test's scripted rule (streams are subject to the
same rule, judged on the request, unless `drop_stream` is set). A stream is answered
after a round trip (one `Links.delay` each way) if the model finds it `connectable` and
not lost then. Time advances only inside `run_until` / `run_until_true`, straight from one
deadline to the next: nothing sleeps.

The router is deterministic: one seeded `random.Random` feeds every core's rng, the link
model has its own seeded one, events and timers are ordered by (time, sequence number),
and `trace` records every datagram handed to the network so two runs can be compared by
hash.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import attrs

from swim.core import Config, Core, Event, MemberStatus
from swim.core.messages import Address, Message
from swim.core.outputs import Datagram, StreamRequest
from transport.links import LinkClass, Links

E = TypeVar("E")

DropRule = Callable[[Address, Address, Sequence[Message]], bool]


def addr_of(i: int) -> Address:
    return (f"10.0.{i // 250}.{i % 250 + 1}", 7946)


def name_of(i: int) -> str:
    return f"node-{i}"


class Router:
    def __init__(self, *, seed: int = 1, delay_s: float = 0.001) -> None:
        self.now = 0.0
        self.delay_s = delay_s
        self.seed = seed
        self.rng = random.Random(seed)
        #: The lossless link every datagram takes (restored by `heal`).
        self.link = LinkClass.fixed(delay_s, name="router")
        #: The network: partitions, loss, delays are all decided here.
        self.links: Links[Address] = Links(rng=random.Random(f"{seed}/net"), link=self.link)
        self._partition: int | None = None
        self.cores: dict[Address, Core] = {}
        self.down: set[Address] = set()
        self.drop: DropRule = lambda src, dst, msgs: False
        #: Rule for streams (judged on the request); None: the datagram rule.
        self.drop_stream: DropRule | None = None
        self.events: dict[str, list[Event]] = {}
        #: (time, src, dst, data) of every datagram sent, dropped ones included.
        self.trace: list[tuple[float, Address, Address, bytes]] = []
        self.datagrams_sent = 0
        self.datagrams_dropped = 0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        # Lazy heap of core deadlines: (deadline, tiebreak, addr, core); an entry is
        # live only while it matches `_deadline[addr]` for the same core object.
        self._timers: list[tuple[float, int, Address, Core]] = []
        self._deadline: dict[Address, float] = {}
        self._tiebreak = 0

    # ---------------------------------------------------------------- cluster building

    def add(self, name: str, addr: Address, config: Config, **kw: object) -> Core:
        """A new core at `addr` (replacing any core there: a restart)."""
        core = Core(
            config, name=name, addr=addr, rng=random.Random(self.rng.getrandbits(64)),
            now=self.now, **kw,  # type: ignore[arg-type]
        )
        self.cores[addr] = core
        self.down.discard(addr)
        self._deadline.pop(addr, None)
        self.events.setdefault(name, [])
        self._flush(core)
        return core

    def cluster(self, n: int, config: Config) -> list[Core]:
        """n members, each joined through the first."""
        cores = [self.add(name_of(i), addr_of(i), config) for i in range(n)]
        for core in cores[1:]:
            core.join([cores[0].addr], now=self.now)
        return cores

    def crash(self, core: Core) -> None:
        """Stop `core` for good (it neither sends, receives nor runs timers)."""
        self.down.add(core.addr)

    def partition(self, *groups: Iterable[Core]) -> None:
        """Drop everything between members of different groups (symmetric; members in
        no group form one more). Replaces the previous `partition`."""
        pid = self.links.partition([c.addr for c in group] for group in groups)
        if self._partition is not None:
            self.links.heal(self._partition)
        self._partition = pid

    def heal(self) -> None:
        """Back to a lossless network: no partition, loss, clog or drop rule."""
        self._partition = None
        self.links.heal_all()
        self.links.link = self.link
        self.drop = lambda src, dst, msgs: False
        self.drop_stream = None

    def lossy(self, p: float, *, seed: int) -> None:
        """Lose each datagram and stream independently with probability `p` (drawn
        from a fresh ``Random(seed)``)."""
        self.links.rng = random.Random(seed)
        self.links.link = attrs.evolve(self.link, loss=p, stream_loss=p)

    def inject(self, data: bytes, src: Address, dst: Address) -> None:
        """Deliver raw bytes (e.g. a hostile datagram) to `dst` now, as if from `src`."""
        target = self.cores[dst]
        target.receive_datagram(data, src, now=self.now)
        self._flush(target)

    def live(self) -> list[Core]:
        return [c for a, c in self.cores.items() if a not in self.down]

    # --------------------------------------------------------------------- running

    def _at(self, when: float, action: Callable[[], None]) -> None:
        self._tiebreak += 1
        heapq.heappush(self._queue, (when, self._tiebreak, action))

    def _refresh(self, core: Core, when: float) -> None:
        if self._deadline.get(core.addr) != when:
            self._deadline[core.addr] = when
            self._tiebreak += 1
            heapq.heappush(self._timers, (when, self._tiebreak, core.addr, core))

    def _flush(self, core: Core) -> None:
        src = core.addr
        out = core.poll()
        for dgram in out.datagrams:
            self.trace.append((self.now, src, dgram.addr, dgram.data))
            self.datagrams_sent += 1
            if src in self.down or self.drop(src, dgram.addr, dgram.messages):
                self.datagrams_dropped += 1
                continue
            fate = self.links.datagram(src, dgram.addr, self.now)
            if fate.drop is not None:
                self.datagrams_dropped += 1
                continue

            def deliver(d: Datagram = dgram, s: Address = src) -> None:
                target = self.cores.get(d.addr)
                if target is not None and d.addr not in self.down:
                    target.receive_datagram(d.data, s, now=self.now)
                    self._flush(target)

            for at in fate.arrivals:
                self._at(at, deliver)
        for req in out.streams:

            def answer(r: StreamRequest = req, c: Core = core) -> None:
                target = self.cores.get(r.addr)
                response = None
                if (
                    target is not None and r.addr not in self.down
                    and c.addr not in self.down
                    and self.links.connectable(c.addr, r.addr, self.now) is None
                    and not self.links.stream_lost(c.addr, r.addr)
                    and not (self.drop_stream or self.drop)(c.addr, r.addr, r.messages)
                ):
                    reply = target.handle_stream_request(r.data, c.addr, now=self.now)
                    response = None if reply is None else reply.data
                    self._flush(target)
                if c.addr not in self.down and self.cores.get(c.addr) is c:
                    c.receive_stream_response(r.id, response, now=self.now)
                    self._flush(c)

            round_trip_s = self.links.delay(src, req.addr) + self.links.delay(req.addr, src)
            self._at(self.now + round_trip_s, answer)
        self.events[core.name].extend(out.events)
        self._refresh(core, out.deadline)

    def _next_timer(self) -> tuple[float, Core | None]:
        timers = self._timers
        while timers:
            when, _, addr, core = timers[0]
            if (
                self.cores.get(addr) is core and addr not in self.down
                and self._deadline.get(addr) == when
            ):
                return when, core
            heapq.heappop(timers)
        return float("inf"), None

    def step(self, t: float) -> bool:
        """Run the next event or timer due at or before `t`; False if there is none."""
        timer_at, timer_core = self._next_timer()
        queue_at = self._queue[0][0] if self._queue else float("inf")
        when = min(timer_at, queue_at)
        if when > t:
            return False
        self.now = max(self.now, when)
        if queue_at <= timer_at:
            _, _, action = heapq.heappop(self._queue)
            action()
        else:
            assert timer_core is not None
            heapq.heappop(self._timers)
            del self._deadline[timer_core.addr]
            timer_core.handle_timer(now=self.now)
            self._flush(timer_core)
            if self._deadline[timer_core.addr] <= self.now:
                raise AssertionError(
                    f"{timer_core.name}: deadline <= now after handle_timer({self.now})"
                )
        return True

    def run_until(self, t: float) -> None:
        for core in list(self.cores.values()):
            self._flush(core)
        while self.step(t):
            pass
        self.now = max(self.now, t)

    def run_until_true(self, pred: Callable[[], bool], *, limit_s: float, check_s: float = 0.1
                       ) -> float:
        """Run until `pred()` holds (checked every `check_s`); returns the time it took.

        Fails the test if it does not hold within `limit_s` of simulated time.
        """
        start = self.now
        while not pred():
            if self.now - start >= limit_s:
                raise AssertionError(
                    f"condition not reached within {limit_s} s (seed {self.seed})"
                )
            self.run_until(self.now + check_s)
        return self.now - start

    # ------------------------------------------------------------------------ views

    def status_everywhere(self, name: str) -> dict[str, MemberStatus | None]:
        """How every live member sees `name`."""
        out = {}
        for core in self.live():
            if core.name == name:
                continue
            state = core.member(name)
            out[core.name] = state.status if state else None
        return out

    def converged(self, names: Iterable[str]) -> bool:
        """Every live member sees exactly `names` as alive (itself included)."""
        want = sorted(names)
        for core in self.live():
            alive = sorted(m.name for m in core.members() if m.status == MemberStatus.ALIVE)
            if alive != want:
                return False
        return True

    def events_of(self, name: str, kind: type[E]) -> list[E]:
        """The events of one kind a member has seen, oldest first."""
        return [e for e in self.events[name] if isinstance(e, kind)]

    def trace_digest(self) -> str:
        h = hashlib.sha256()
        for t, src, dst, data in self.trace:
            h.update(repr((round(t, 9), src, dst)).encode())
            h.update(data)
        return h.hexdigest()
