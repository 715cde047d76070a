"""A tiny synchronous network for core tests: explicit time, chosen drops, no I/O.

Every datagram takes `delay_s` to arrive; `drop(src, dst, messages)` decides which to
lose. Streams are answered after a round trip. Time advances only inside `run_until`,
straight from one deadline to the next.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence

from swim.core import Config, Core, Event, MemberStatus
from swim.core.messages import Address, Message

DropRule = Callable[[Address, Address, Sequence[Message]], bool]


def addr_of(i: int) -> Address:
    return (f"10.0.0.{i + 1}", 7946)


class Router:
    def __init__(self, *, seed: int = 1, delay_s: float = 0.001) -> None:
        self.now = 0.0
        self.delay_s = delay_s
        self.seed = seed
        self.rng = random.Random(seed)
        self.cores: dict[Address, Core] = {}
        self.down: set[Address] = set()
        self.drop: DropRule = lambda src, dst, msgs: False
        self.events: dict[str, list[Event]] = {}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._tiebreak = 0

    # ---------------------------------------------------------------- cluster building

    def add(self, name: str, addr: Address, config: Config, **kw: object) -> Core:
        core = Core(
            config, name=name, addr=addr, rng=random.Random(self.rng.getrandbits(64)),
            now=self.now, **kw,  # type: ignore[arg-type]
        )
        self.cores[addr] = core
        self.down.discard(addr)
        self.events.setdefault(name, [])
        return core

    def cluster(self, n: int, config: Config) -> list[Core]:
        """n members, each joined through the first."""
        cores = [self.add(f"node-{i}", addr_of(i), config) for i in range(n)]
        for core in cores[1:]:
            core.join([cores[0].addr], self.now)
        return cores

    def crash(self, core: Core) -> None:
        self.down.add(core.addr)

    # --------------------------------------------------------------------- running

    def _at(self, when: float, action: Callable[[], None]) -> None:
        self._tiebreak += 1
        heapq.heappush(self._queue, (when, self._tiebreak, action))

    def _flush(self, core: Core) -> None:
        src = core.addr
        for dgram in core.datagrams_to_send():
            if src in self.down or self.drop(src, dgram.addr, dgram.messages):
                continue
            def deliver(d=dgram, s=src) -> None:
                target = self.cores.get(d.addr)
                if target is not None and d.addr not in self.down:
                    target.receive_datagram(d.data, s, self.now)
                    self._flush(target)
            self._at(self.now + self.delay_s, deliver)
        for req in core.streams_to_open():
            def answer(r=req, c=core) -> None:
                target = self.cores.get(r.addr)
                response = None
                if (
                    target is not None and r.addr not in self.down
                    and c.addr not in self.down
                    and not self.drop(c.addr, r.addr, r.messages)
                ):
                    response = target.handle_stream_request(r.data, c.addr, self.now)
                    self._flush(target)
                if c.addr not in self.down:
                    c.receive_stream_response(r.id, response, self.now)
                    self._flush(c)
            self._at(self.now + 2 * self.delay_s, answer)
        self.events[core.name].extend(core.drain_events())

    def run_until(self, t: float) -> None:
        for core in self.cores.values():
            self._flush(core)
        while True:
            live = [c for a, c in self.cores.items() if a not in self.down]
            timer_core = min(live, key=lambda c: c.get_timer(), default=None)
            timer_at = timer_core.get_timer() if timer_core else float("inf")
            queue_at = self._queue[0][0] if self._queue else float("inf")
            when = min(timer_at, queue_at)
            if when > t:
                break
            self.now = max(self.now, when)
            if queue_at <= timer_at:
                _, _, action = heapq.heappop(self._queue)
                action()
            else:
                assert timer_core is not None
                timer_core.handle_timer(self.now)
                self._flush(timer_core)
        self.now = t

    # ------------------------------------------------------------------------ views

    def status_everywhere(self, name: str) -> dict[str, MemberStatus | None]:
        """How every live member sees `name`."""
        out = {}
        for addr, core in self.cores.items():
            if addr in self.down or core.name == name:
                continue
            state = core.member(name)
            out[core.name] = state.status if state else None
        return out

    def converged(self, names: Iterable[str]) -> bool:
        want = sorted(names)
        for addr, core in self.cores.items():
            if addr in self.down:
                continue
            alive = sorted(m.name for m in core.members() if m.status == MemberStatus.ALIVE)
            if alive != want:
                return False
        return True
