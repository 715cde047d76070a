"""`swim.aio.Node` in a real asyncio loop (issue 9, item 5): three members on loopback
UDP + TCP join, stream their events into the loop, read and filter members, broadcast,
send, query, wait for membership predicates and leave; a slow event consumer is cut off;
and the loop stays responsive while calls are in flight.

pytest runs in trio mode, so each test is a plain function that runs its own loop with
``asyncio.run``. The nodes run on the real clock in their own threads; every wait is
bounded (`BOUND_S`, generous) and ends on an outcome, never on a duration.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import pathlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypeVar

import pytest

import swim
import swim.aio
from swim import (
    Config,
    DeliveryError,
    EventOverflow,
    MemberEvent,
    MemberEventKind,
    MemberStatus,
    ProtocolError,
    QueryReceived,
    QueryResultKind,
    Stamped,
    UserBroadcastReceived,
    UserMessageReceived,
)

BOUND_S = 30.0
T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), 3 * BOUND_S)

    return asyncio.run(bounded())


def make(name: str, seeds: list[tuple[str, int]] | None = None, **kwargs: object) -> swim.aio.Node:
    return swim.aio.Node(
        Config.local(), name=name, bind=("127.0.0.1", 0), seeds=seeds or [],
        leave_timeout_s=2.0, join_backoff_s=0.2, join_backoff_max_s=1.0,
        **kwargs,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def cluster(n: int, **meta: bytes) -> AsyncIterator[list[swim.aio.Node]]:
    """n nodes a0, a1, ... all joining a0, with each one's metadata from `meta`."""
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(make("a0", meta=meta.get("a0", b"")))
        nodes = [first]
        for i in range(1, n):
            name = f"a{i}"
            nodes.append(await stack.enter_async_context(
                make(name, [first.addr], meta=meta.get(name, b""))
            ))
        yield nodes


async def answer_queries(node: swim.aio.Node, events: swim.aio.EventStream[swim.Event]) -> None:
    async for event in events:
        if isinstance(event, QueryReceived) and event.name == "whoami":
            await node.respond(event.origin, event.id, node.name.encode())


def test_three_nodes_join_stream_events_broadcast_query_and_leave() -> None:
    async def main() -> None:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(make("a0"))
            member_events = a.member_events()
            raw_events = a.events()
            stamped = a.stamped_events()
            b = await stack.enter_async_context(
                make("a1", [a.addr], meta=swim.encode_tags({"role": "db", "zone": "x"}))
            )
            c = await stack.enter_async_context(
                make("a2", [a.addr], meta=swim.encode_tags({"role": "web"}))
            )
            view = await a.wait_for_alive(3, timeout_s=BOUND_S)
            assert sorted(view.names()) == ["a0", "a1", "a2"]
            await b.wait_for_alive(3, timeout_s=BOUND_S)
            await c.wait_for_alive(3, timeout_s=BOUND_S)

            # Membership changes, in one shape, iterated in the loop.
            joined: set[str] = set()
            async for event in member_events:
                assert isinstance(event, MemberEvent)
                if event.kind is MemberEventKind.JOINED:
                    joined.add(event.name)
                    assert abs(event.wall_time - time.time()) < BOUND_S
                if joined == {"a1", "a2"}:
                    break

            # Views and filters.
            assert sorted(m.name for m in await a.members()) == ["a0", "a1", "a2"]
            assert [m.name for m in await a.members(tags={"role": "db"})] == ["a1"]
            assert sorted(m.name for m in await a.members(tags={"role": "*"})) == ["a1", "a2"]
            assert [m.name for m in await a.members(name="a[2]")] == ["a2"]
            assert len(await a.alive_members()) == 3
            assert await a.tags("a1") == {"role": "db", "zone": "x"}
            assert await c.tags() == {"role": "web"}
            assert (await a.member("a1")) is not None and await a.member("zz") is None
            assert (await a.view()).alive().names() == [m.name for m in await a.alive_members()]
            assert await a.local_health() == 0

            # A broadcast reaches the others' streams; a reliable message arrives.
            broadcast_id = await b.broadcast(b"hello")
            async for item in raw_events:
                if isinstance(item, UserBroadcastReceived) and item.id == broadcast_id:
                    assert item.origin == "a1" and item.payload == b"hello"
                    break
            await c.send("a0", b"direct", reliable=True)
            async for item in raw_events:
                if isinstance(item, UserMessageReceived):
                    assert item.payload == b"direct" and item.source == "a2"
                    break
            with pytest.raises(LookupError):
                await a.send("nobody", b"x")
            # Every event in the stamped stream has its wall-clock time.
            async for stamped_item in stamped:
                assert abs(stamped_item.wall_time - time.time()) < BOUND_S
                if isinstance(stamped_item, Stamped) and isinstance(
                    stamped_item.event, UserMessageReceived
                ):
                    break

            # A query answered by the others' applications.
            tasks = [asyncio.create_task(answer_queries(n, n.events())) for n in (b, c)]
            await asyncio.sleep(0)  # let the responders subscribe before the query
            results = await a.query("whoami", want_ack=True, timeout_s=2.0)
            got, summary = await results.collect()
            answers = {r.member: r.payload for r in got if r.kind is QueryResultKind.RESPONSE}
            assert answers == {"a1": b"a1", "a2": b"a2"}
            assert summary is not None and summary.complete and summary.responses == 2
            assert summary.dropped == 0
            for task in tasks:
                task.cancel()
            with pytest.raises(ProtocolError):
                await a.query("_swim_reserved")

            # Tags updated through the loop reach the others.
            await c.update_tags({"role": "cache"})
            await a.wait_for(lambda v: v.tags("a2") == {"role": "cache"}, timeout_s=BOUND_S)

            # A graceful leave.
            assert await c.leave(timeout_s=5.0)
            view = await a.wait_for_member("a2", MemberStatus.LEFT, timeout_s=BOUND_S)
            assert view.status_of("a2") is MemberStatus.LEFT
            async for event in member_events:
                if event.kind is MemberEventKind.LEFT:
                    assert event.name == "a2"
                    break
            assert [m.name for m in await a.members(status=MemberStatus.LEFT)] == ["a2"]
            stats = await a.stats()
            assert stats.events_published > 0

        # The node stopped: streams end, calls fail.
        assert not a.running
        assert [event async for event in a.member_events()] == []
        with pytest.raises(RuntimeError):
            await a.members()

    run(main)


def test_the_loop_stays_responsive_while_calls_are_in_flight() -> None:
    async def main() -> tuple[list[float], float, float]:
        ticks: list[float] = []
        stop = asyncio.Event()

        async def heartbeat() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(heartbeat())
        async with cluster(2) as (a, b):
            # Both: b sends to a0 below, and a can see b alive before b has a0's state.
            await a.wait_for_alive(2, timeout_s=BOUND_S)
            await b.wait_for_alive(2, timeout_s=BOUND_S)
            started = time.monotonic()
            # A wait that can only end once a third member joins, 2 s from now: were it
            # to block the loop, the heartbeat would stop for that long.
            waiting = asyncio.create_task(a.wait_for_alive(3, timeout_s=BOUND_S))
            busy = [asyncio.create_task(a.members()) for _ in range(200)]
            sending = asyncio.create_task(b.send("a0", b"x" * 2000, reliable=True))
            asking = asyncio.create_task(
                (await a.query("nobody-answers", timeout_s=1.0)).collect()
            )
            await asyncio.sleep(2.0)
            slept = time.monotonic()
            assert not waiting.done()
            async with make("a2", [a.addr]):
                view = await waiting
                assert len(view.alive()) == 3
                await asyncio.gather(*busy, sending)
                _, summary = await asking
                assert summary is not None and summary.complete
        stop.set()
        await beat
        return ticks, started, slept

    ticks, started, slept = run(main)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert slept - started >= 2.0
    # Were the pending wait (or the calls in flight) to block the loop, the heartbeat
    # would stop for the whole 2 s. It kept ticking through that window (every 10 ms
    # when idle; the bound leaves room for a loaded machine), and no gap anywhere is as
    # long as the wait.
    during = [t for t in ticks if started <= t <= slept]
    assert len(during) > 20, len(during)
    assert max(gaps) < 2.0, max(gaps)


def test_a_slow_event_consumer_is_cut_off_and_the_node_carries_on() -> None:
    async def main() -> None:
        async with make("s0") as node:
            slow = node.events(max_buffer=2)
            quick = node.events()
            ids = {await node.broadcast(b"%d" % i) for i in range(10)}
            seen: set[int] = set()
            async for event in quick:  # the node delivers its own broadcasts too
                if isinstance(event, UserBroadcastReceived):
                    seen.add(event.id)
                if seen == ids:
                    break
            got = []
            with pytest.raises(EventOverflow) as info:
                async for event in slow:
                    got.append(event)
            assert len(got) == 2 and info.value.dropped >= 1
            assert [m.name for m in await node.members()] == ["s0"]
            # A new stream works.
            fresh = node.events()
            broadcast_id = await node.broadcast(b"again")
            async for event in fresh:
                if isinstance(event, UserBroadcastReceived) and event.id == broadcast_id:
                    break
            fresh.close()
            assert [event async for event in fresh] == []

    run(main)


def test_cancelled_and_timed_out_waits_and_misuse() -> None:
    async def main() -> None:
        node = make("w0")
        with pytest.raises(RuntimeError):
            await node.members()  # not started
        with pytest.raises(RuntimeError):
            node.events()
        async with node:
            with pytest.raises(TimeoutError):
                await node.wait_for(lambda view: False, timeout_s=0.2)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(node.wait_for_alive(2), 0.2)  # cancelled by asyncio
            view = await node.wait_for_member("w0", timeout_s=BOUND_S)
            assert view.names() == ["w0"]
            with pytest.raises(DeliveryError):
                await node.send(("127.0.0.1", 9), b"x", reliable=True)
            with pytest.raises(RuntimeError, match="once"):
                await node.start()

    run(main)


def test_an_exception_leaves_without_a_leave() -> None:
    async def main() -> None:
        async with cluster(2) as (a, _b):
            await a.wait_for_alive(2, timeout_s=BOUND_S)
            with pytest.raises(KeyError):
                async with make("c0", [a.addr]) as c:
                    await a.wait_for_alive(3, timeout_s=BOUND_S)
                    raise KeyError("crash")
            assert not c.running
            # A crash: suspected then failed, never "left".
            view = await a.wait_for_member(
                "c0", [MemberStatus.SUSPECT, MemberStatus.DEAD], timeout_s=BOUND_S
            )
            assert view.status_of("c0") is not MemberStatus.LEFT

    run(main)


def test_the_asyncio_module_calls_no_trio() -> None:
    source = pathlib.Path(swim.aio.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "trio" not in imported
