"""`swim.ThreadedNode` over real loopback UDP + TCP, driven from plain (non-trio) code.

The kinship test is the point of thread hosting: an application that blocks its own
thread or event loop for 10 s must not get its node declared failed.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator

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


@pytest.fixture
def cluster() -> Iterator[Callable[[int], list[ThreadedNode]]]:
    """Starts n thread-hosted nodes on loopback (all joining the first); stops them all."""
    started: list[ThreadedNode] = []

    def start(n: int, config: Config | None = None) -> list[ThreadedNode]:
        nodes = []
        for i in range(n):
            seeds = [started[0].addr] if started else []
            node = ThreadedNode(
                config or Config.local(),
                name=f"t{len(started)}",
                bind=("127.0.0.1", 0),
                seeds=seeds,
                leave_timeout_s=2.0,
            )
            node.start()
            started.append(node)
            nodes.append(node)
            del i
        names = {node.name for node in started}
        wait_for(lambda: all(alive(node) == names for node in started))
        return nodes

    yield start
    for node in started:
        node.stop(timeout_s=10.0)
        assert not node.running


def test_a_blocked_application_does_not_fail_its_thread_hosted_node(
    cluster: Callable[[int], list[ThreadedNode]],
) -> None:
    nodes = cluster(3)
    recorders = []
    for node in nodes:
        recorder = Recorder()
        node.add_callback(recorder)
        recorders.append(recorder)

    async def application() -> None:
        # An asyncio application that blocks its event loop (and this thread) for 10 s,
        # then hogs the CPU (and so the GIL, in 5 ms slices) for 2 s more.
        time.sleep(10)
        end = time.monotonic() + 2.0
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


def test_threaded_api(cluster: Callable[..., list[ThreadedNode]]) -> None:
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
    wait_for(lambda: all(n.member("t0").meta == b"v=2" for n in (b, c)))  # type: ignore[union-attr]
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
    wait_for(lambda: a.member("t2").status == MemberStatus.LEFT)  # type: ignore[union-attr]
    c.stop()
    with pytest.raises(RuntimeError, match="not running"):
        c.members()
    c.stop()  # idempotent
    with pytest.raises(DeliveryError):
        a.send("t2", b"gone", reliable=True)


def test_a_slow_callback_does_not_stall_the_protocol(
    cluster: Callable[[int], list[ThreadedNode]],
) -> None:
    a, b = cluster(2)
    release = threading.Event()
    calls = []

    def stuck(event: Event) -> None:
        calls.append(event)
        release.wait(10)

    b.add_callback(stuck)
    a.broadcast(b"first")
    wait_for(lambda: len(calls) == 1)
    probes = b.stats().core.probes
    time.sleep(2.5)  # the dispatcher is stuck; the node is not
    assert b.stats().core.probes > probes
    assert alive(a) == {"t0", "t1"} and alive(b) == {"t0", "t1"}
    release.set()


def test_stop_without_leave_is_a_crash(cluster: Callable[[int], list[ThreadedNode]]) -> None:
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
