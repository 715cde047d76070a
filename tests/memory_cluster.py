"""A cluster of `swim.Node` objects on one `MemoryNetwork`, each run as a task of the
test's nursery (for the health and forwarding tests, under trio's MockClock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from swim import Config, Node
from transport.base import Address, StreamHandler
from transport.memory import MemoryNetwork


def addr_of(i: int) -> Address:
    return (f"10.0.2.{i}", 7946)


@attrs.define(eq=False)
class Running:
    """A node run as a task: `crash` cancels it (no leave), `stop` leaves gracefully."""

    node: Node
    scope: trio.CancelScope
    stop_requested: trio.Event = attrs.Factory(trio.Event)
    stopped: trio.Event = attrs.Factory(trio.Event)

    def crash(self) -> None:
        self.scope.cancel()

    async def stop(self) -> None:
        self.stop_requested.set()
        await self.stopped.wait()


class MemoryCluster:
    """Nodes ``n1``, ``n2``... at ``addr_of(i)``; every node after the first joins n1."""

    def __init__(self, network: MemoryNetwork, nursery: trio.Nursery) -> None:
        self.network = network
        self.nursery = nursery
        self.running: dict[str, Running] = {}

    def __getitem__(self, name: str) -> Node:
        return self.running[name].node

    async def start(self, i: int, *, meta: bytes = b"") -> Node:
        """Start ``n{i}`` with the trio clock as its wall clock; its node."""
        return (await self.start_running(i, meta=meta, wall_clock=trio.current_time)).node

    async def start_running(self, i: int, *, meta: bytes = b"", **node_kwargs: Any) -> Running:
        """Start ``n{i}`` (`node_kwargs` go to `Node`); the running task's handle."""
        addr = addr_of(i)

        def opener(handler: StreamHandler) -> object:
            return self.network.open(addr, handler)

        node = Node(
            Config.local(), name=f"n{i}", seeds=[] if i == 1 else [addr_of(1)], meta=meta,
            seed=i, transport_factory=opener,  # type: ignore[arg-type]
            join_backoff_s=0.2, join_backoff_max_s=2.0, **node_kwargs,
        )
        running: Running = await self.nursery.start(self._run, node)
        self.running[node.name] = running
        return running

    async def start_all(self, n: int) -> list[Node]:
        nodes = [await self.start(i) for i in range(1, n + 1)]
        for node in nodes:
            await node.wait_for_alive(n, timeout_s=60)
        return nodes

    async def _run(self, node: Node, *, task_status: trio.TaskStatus[Running]) -> None:
        with trio.CancelScope() as scope:
            async with node:
                running = Running(node, scope)
                task_status.started(running)
                await running.stop_requested.wait()
        self.running[node.name].stopped.set()


async def eventually(
    predicate: Callable[[], object], *, within_s: float = 60.0, step_s: float = 0.05
) -> None:
    """Wait (on the trio clock) until `predicate()` is true; fail after `within_s`."""
    with trio.fail_after(within_s):
        while not predicate():
            await trio.sleep(step_s)
