"""`swim.ThreadedNode` over real loopback UDP + TCP, driven from plain (non-trio) code.

The kinship test is the point of thread hosting: an application that blocks its own
thread or event loop for longer than the cluster takes to declare a silent member failed
must not get its node suspected.

These run on the real clock: each node runs its own `trio.run` in its own thread, so the
nodes cannot share one `MockClock`, and one virtual clock per thread would jump past
packets that are still on the real wire. Instead every wait is bounded (`BOUND_S`,
generous) and ends on an outcome (an event seen, a counter moved), never on a duration;
the tests that wait on protocol timers are marked `slow`.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import pytest

from swim import (
    Config,
    DeliveryError,
    Event,
    MemberFailed,
    MemberLeft,
    MemberStatus,
    MemberSuspected,
    ThreadedNode,
    UserBroadcastReceived,
    UserMessageReceived,
)

BOUND_S = 30.0


def wait_for(predicate: Callable[[], bool], bound_s: float = BOUND_S) -> None:
    deadline = time.monotonic() + bound_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {bound_s} s: {predicate}")
        time.sleep(0.05)


class Recorder:
    """Collects events from a dispatcher thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def snapshot(self) -> list[Event]:
        with self.lock:
            return list(self.events)


def alive(node: ThreadedNode) -> set[str]:
    return {m.name for m in node.members() if m.status == MemberStatus.ALIVE}


def status_of(node: ThreadedNode, name: str) -> MemberStatus | None:
    member = node.member(name)
    return None if member is None else member.status


def meta_of(node: ThreadedNode, name: str) -> bytes | None:
    member = node.member(name)
    return None if member is None else member.meta


class StartCluster(Protocol):
    def __call__(self, n: int, config: Config | None = None) -> list[ThreadedNode]: ...


@pytest.fixture
def cluster() -> Iterator[StartCluster]:
    """Starts a cluster of n thread-hosted nodes on loopback (all joining the first of
    them), named t0, t1... across calls; stops every node at the end."""
    started: list[ThreadedNode] = []

    def start(n: int, config: Config | None = None) -> list[ThreadedNode]:
        nodes: list[ThreadedNode] = []
        for _ in range(n):
            node = ThreadedNode(
                config or Config.local(),
                name=f"t{len(started)}",
                bind=("127.0.0.1", 0),
                seeds=[nodes[0].addr] if nodes else [],
                leave_timeout_s=2.0,
            )
            node.start()
            started.append(node)
            nodes.append(node)
        names = {node.name for node in nodes}
        wait_for(lambda: all(alive(node) == names for node in nodes))
        return nodes

    yield start
    for node in started:
        node.stop(timeout_s=10.0)
        assert not node.running


@pytest.mark.slow
def test_a_blocked_application_does_not_fail_its_thread_hosted_node(
    cluster: StartCluster,
) -> None:
    nodes = cluster(3)
    recorders = []
    for node in nodes:
        recorder = Recorder()
        node.add_callback(recorder)
        recorders.append(recorder)
    # A control: a separate pair whose second member crashes as the application blocks.
    # Its failure sets how long the block lasts: as long as this configuration takes to
    # declare a silent member failed.
    watcher, victim = cluster(2)
    victim_failed = threading.Event()

    def on_watcher_event(event: Event) -> None:
        if isinstance(event, MemberFailed) and event.member.name == victim.name:
            victim_failed.set()

    watcher.add_callback(on_watcher_event)

    async def application() -> None:
        # An asyncio application that blocks its event loop (and this thread) until the
        # crashed member is declared failed...
        victim.stop(leave=False)
        assert victim_failed.wait(BOUND_S), "the crashed control member was not declared failed"
        # ...then hogs the CPU (and so the GIL, in 5 ms slices) until every node has
        # probed twice more.
        probes = [node.stats().core.probes for node in nodes]
        deadline = time.monotonic() + BOUND_S
        while not all(
            node.stats().core.probes >= before + 2
            for node, before in zip(nodes, probes, strict=True)
        ):
            assert time.monotonic() < deadline, "the nodes stopped probing"
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                sum(range(1000))

    asyncio.run(application())

    names = {node.name for node in nodes}
    for node, recorder in zip(nodes, recorders, strict=True):
        assert alive(node) == names
        bad = [e for e in recorder.snapshot() if isinstance(e, MemberSuspected | MemberFailed)]
        assert bad == [], f"{node.name} saw {bad}"
        assert node.stats().core.probe_failures == 0
        assert node.local_health() == 0


def test_threaded_api(cluster: StartCluster) -> None:
    a, b, c = cluster(3, Config.local())
    recorder = Recorder()
    remove = b.add_callback(recorder)

    a.update_metadata(b"v=2")
    broadcast_id = a.broadcast(b"to all")
    a.send("t1", b"direct", reliable=True)
    a.send(c.addr, b"datagram")

    def delivered() -> bool:
        got = recorder.snapshot()
        return any(
            isinstance(e, UserBroadcastReceived) and e.id == broadcast_id for e in got
        ) and any(isinstance(e, UserMessageReceived) and e.payload == b"direct" for e in got)

    wait_for(delivered)
    wait_for(lambda: all(meta_of(n, "t0") == b"v=2" for n in (b, c)))
    # The same events reach the queue, in order.
    seen: list[Event] = []
    wait_for(lambda: _drain(b.events, seen) and any(
        isinstance(e, UserBroadcastReceived) and e.id == broadcast_id for e in seen
    ))
    assert b.events_dropped == 0
    remove()
    remove()  # idempotent

    stats = a.stats()
    assert stats.core.datagrams_out > 0 and stats.transport.datagrams_sent > 0
    assert a.member("nobody") is None
    with pytest.raises(LookupError):
        a.send("nobody", b"x")

    # A graceful leave is seen as such.
    assert c.leave(timeout_s=5.0)
    wait_for(lambda: status_of(a, "t2") == MemberStatus.LEFT)
    c.stop()
    with pytest.raises(RuntimeError, match="not running"):
        c.members()
    c.stop()  # idempotent
    with pytest.raises(DeliveryError):
        a.send("t2", b"gone", reliable=True)


@pytest.mark.slow
def test_a_slow_callback_does_not_stall_the_protocol(cluster: StartCluster) -> None:
    a, b = cluster(2)
    release = threading.Event()
    calls: list[Event] = []

    def stuck(event: Event) -> None:
        calls.append(event)
        release.wait(BOUND_S)

    def got_second() -> bool:
        return any(isinstance(e, UserBroadcastReceived) and e.id == second for e in list(calls))

    b.add_callback(stuck)
    try:
        a.broadcast(b"first")
        wait_for(lambda: len(calls) == 1)
        before = b.stats()
        second = a.broadcast(b"second")
        # The dispatcher is stuck in the callback; the node is not: it keeps probing and
        # takes in (and publishes) the second broadcast.
        wait_for(
            lambda: (now := b.stats()).core.probes > before.core.probes
            and now.events_published > before.events_published
        )
        assert len(calls) == 1
        assert alive(a) == {"t0", "t1"} and alive(b) == {"t0", "t1"}
    finally:
        release.set()
    wait_for(got_second)  # delivered once the callback returns


@pytest.mark.slow
def test_stop_without_leave_is_a_crash(cluster: StartCluster) -> None:
    a, b = cluster(2)
    recorder = Recorder()
    a.add_callback(recorder)
    b.stop(leave=False)
    assert not b.running
    # No departure was announced: t1 will be suspected, never seen as left.
    wait_for(lambda: any(isinstance(e, MemberSuspected) for e in recorder.snapshot()))
    assert not [e for e in recorder.snapshot() if isinstance(e, MemberLeft)]


def test_a_start_failure_is_reported() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        node = ThreadedNode(Config.local(), name="x", bind=("127.0.0.1", port))
        with pytest.raises(RuntimeError, match="failed to start") as info:
            node.start()
        assert isinstance(info.value.__cause__, BaseException)
        assert not node.running
        with pytest.raises(RuntimeError, match="not running"):
            node.members()
    with pytest.raises(ValueError):
        ThreadedNode(Config.local(), name="x", bind=("0.0.0.0", 0))


def test_context_manager() -> None:
    with ThreadedNode(Config.local(), name="solo", bind=("127.0.0.1", 0)) as node:
        assert is_running(node)
        assert [m.name for m in node.members()] == ["solo"]
        node.broadcast(b"me")
        event = node.events.get(timeout=BOUND_S)
        assert isinstance(event, UserBroadcastReceived) and event.payload == b"me"
    assert not is_running(node)
    with pytest.raises(RuntimeError, match="once"):
        node.start()


def is_running(node: ThreadedNode) -> bool:
    return node.running  # (a call, so that mypy does not narrow the property)


def _drain(q: queue.Queue[Event], into: list[Event]) -> bool:
    while True:
        try:
            into.append(q.get_nowait())
        except queue.Empty:
            return True
