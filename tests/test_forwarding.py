"""Forwarding (`swim.forward`, issue 9, item 2) on the in-memory network under an
autojump MockClock: requests served by the key's owner, failover to the next owner when
the owner crashed, hangs or refuses, the errors when every owner fails, bounded pending
state, the ring following health, and the frame codec (any bytes decode to a frame or
raise `MalformedFrame`, nothing else)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from swim import HealthStatus, Node, UserMessageReceived
from swim.forward import (
    MAX_BODY_BYTES,
    Attempt,
    ForwardBusy,
    Forwarder,
    Frame,
    FrameKind,
    MalformedFrame,
    NoOwnerError,
    OwnersUnavailable,
    RemoteError,
    decode_frame_untrusted,
    encode_frame,
    is_forwarding_frame,
)
from swim.ring import RingChanged, RingOptions
from tests.memory_cluster import MemoryCluster, eventually
from transport.memory import MemoryNetwork

OPTIONS = RingOptions(replicas_default=2)


# ====================================================================== the codec


def test_frames_round_trip_with_a_thirteen_byte_header() -> None:
    for kind in (FrameKind.REQUEST, FrameKind.ANSWER, FrameKind.ERROR, FrameKind.REFUSED):
        frame = Frame(kind, 2**64 - 1, b"body")
        wire = encode_frame(frame)
        assert wire[:4] == b"\xffFW\x01" and len(wire) == 13 + 4
        assert is_forwarding_frame(wire)
        assert decode_frame_untrusted(wire) == frame
    assert encode_frame(Frame(FrameKind.REQUEST, 7, b"")) == (
        b"\xffFW\x01\x01\x00\x00\x00\x00\x00\x00\x00\x07"
    )
    assert len(encode_frame(Frame(FrameKind.ANSWER, 1, bytes(MAX_BODY_BYTES)))) == 64 * 1024
    for bad in (Frame(9, 1, b""), Frame(FrameKind.ANSWER, -1, b""),
                Frame(FrameKind.ANSWER, 1, bytes(MAX_BODY_BYTES + 1))):
        with pytest.raises(ValueError):
            encode_frame(bad)


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"hello", "not a forwarding frame"),
        (b"\xffFW\x01\x01", "not a forwarding frame"),  # short
        (b"\xffFW\x02\x01" + bytes(8), "unknown forwarding version 2"),
        (b"\xffFW\x01\x05" + bytes(8), "unknown frame kind 5"),
        (b"\xff\x01tags" + bytes(9), "not a forwarding frame"),  # our tag block
    ],
)
def test_malformed_frames(wire: bytes, why: str) -> None:
    with pytest.raises(MalformedFrame, match=why):
        decode_frame_untrusted(wire)


@given(st.one_of(st.binary(max_size=64), st.binary(max_size=40).map(lambda b: b"\xffFW" + b)))
def test_any_bytes_give_a_frame_or_malformed(data: bytes) -> None:
    try:
        frame = decode_frame_untrusted(data)
    except MalformedFrame:
        return
    assert encode_frame(frame) == data


# ====================================================================== a cluster


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@attrs.define(eq=False)
class Member:
    """A node with its forwarder, and what its handler served."""

    node: Node
    forwarder: Forwarder
    served: list[bytes]
    #: Requests this member's handler should hang on (until `release` is set).
    hang: set[bytes] = attrs.Factory(set)
    release: trio.Event = attrs.Factory(trio.Event)


class Cluster:
    def __init__(self, nodes: MemoryCluster) -> None:
        self.nodes = nodes
        self.members: dict[str, Member] = {}

    def __getitem__(self, name: str) -> Member:
        return self.members[name]

    async def start(self, n: int, **forwarder_options: object) -> list[Member]:
        nodes = await self.nodes.start_all(n)
        for node in nodes:
            await self.attach(node, **forwarder_options)
        for member in self.members.values():
            await member.forwarder.wait_for_ring(lambda r: len(r) == n, timeout_s=60)
        return list(self.members.values())

    async def attach(self, node: Node, **forwarder_options: object) -> Member:
        served: list[bytes] = []
        member: Member

        async def handler(request: bytes) -> bytes:
            served.append(request)
            if request in member.hang:
                await member.release.wait()
            if request.startswith(b"fail"):
                raise ValueError("bad request")
            return node.name.encode() + b":" + request

        forwarder = await self.nodes.nursery.start(
            _run_forwarder, node, handler, forwarder_options
        )
        member = self.members[node.name] = Member(node, forwarder, served)
        return member

    def crash(self, name: str) -> None:
        self.nodes.running[name].crash()


async def _run_forwarder(
    node: Node,
    handler: Callable[[bytes], Awaitable[bytes]],
    options: dict[str, object],
    *,
    task_status: trio.TaskStatus[Forwarder],
) -> None:
    async with Forwarder(node, OPTIONS, handler, seed=1, **options) as forwarder:  # type: ignore[arg-type]
        task_status.started(forwarder)
        await trio.sleep_forever()


@pytest.fixture
async def cluster(clock: trio.testing.MockClock) -> AsyncIterator[Cluster]:
    network = MemoryNetwork(latency_s=0.001, rng=random.Random(9))
    async with trio.open_nursery() as nursery:
        yield Cluster(MemoryCluster(network, nursery))
        nursery.cancel_scope.cancel()


def key_owned_by(forwarder: Forwarder, owners: list[str]) -> bytes:
    """A key whose owners (in order) start with `owners`."""
    for i in range(10_000):
        key = f"key-{i}".encode()
        if forwarder.owners(key)[: len(owners)] == owners:
            return key
    raise AssertionError(f"no key owned by {owners}")


# ====================================================================== tests


async def test_the_owner_serves_every_request_from_every_member(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    members = await cluster.start(3)
    checksums = {m.forwarder.ring.checksum for m in members}
    assert len(checksums) == 1
    keys = [f"key-{i}".encode() for i in range(30)]
    for asker in members:
        for key in keys:
            owner = asker.forwarder.owners(key)[0]
            answer = await asker.forwarder.handle_or_forward(key, b"GET " + key)
            assert answer == owner.encode() + b":GET " + key
            assert asker.forwarder.is_local(key) == (owner == asker.node.name)
    for member in members:
        mine = [k for k in keys if member.forwarder.owners(k)[0] == member.node.name]
        assert sorted(member.served) == sorted(b"GET " + k for k in mine * 3)
        stats = member.forwarder.stats()
        assert stats.served_locally == len(mine)
        assert stats.forwarded == stats.answered == len(keys) - len(mine)
        assert stats.served_for_others == 2 * len(mine)
        assert stats.failovers == stats.late_answers == stats.malformed == 0


async def test_a_crashed_owner_fails_over_to_the_next_owner_at_once(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    await cluster.start(3)
    n1 = cluster["n1"].forwarder
    key = key_owned_by(n1, ["n2", "n3"])
    cluster.crash("n2")
    start = trio.current_time()
    # Before anyone noticed: n2 is still on n1's ring, and the request moves on.
    assert "n2" in n1.ring
    assert await n1.handle_or_forward(key, b"GET") == b"n3:GET"
    assert trio.current_time() - start < 1.5
    stats = n1.stats()
    assert (stats.failovers, stats.delivery_errors, stats.answered) == (1, 1, 1)
    # Once n2 is declared dead it leaves the ring, and n3 is asked first.
    await n1.wait_for_ring(lambda ring: "n2" not in ring, timeout_s=60)
    assert await n1.handle_or_forward(key, b"GET") == b"n3:GET"
    assert n1.stats().failovers == 1


async def test_an_owner_that_does_not_answer_in_time_is_skipped_and_its_late_answer_dropped(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    await cluster.start(3, attempt_timeout_s=1.0)
    n1 = cluster["n1"].forwarder
    key = key_owned_by(n1, ["n2", "n3"])
    cluster["n2"].hang.add(b"slow")
    start = trio.current_time()
    assert await n1.handle_or_forward(key, b"slow") == b"n3:slow"
    assert 1.0 <= trio.current_time() - start < 2.0
    assert n1.stats().timeouts == 1
    cluster["n2"].release.set()  # n2 answers now, too late
    await eventually(lambda: n1.stats().late_answers == 1)
    assert n1.stats().answered == 1


async def test_when_every_owner_fails_the_error_lists_each_attempt(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    await cluster.start(4)
    n1 = cluster["n1"].forwarder
    key = key_owned_by(n1, ["n2", "n3"])
    cluster.crash("n2")
    cluster.crash("n3")
    with pytest.raises(OwnersUnavailable) as caught:
        await n1.handle_or_forward(key, b"GET")
    assert caught.value.key == key
    assert caught.value.attempts == (Attempt("n2", "not delivered"),
                                     Attempt("n3", "not delivered"))
    assert "no owner of" in str(caught.value)
    assert n1.stats().exhausted == 1


async def test_a_handler_error_is_the_answer_not_a_reason_to_retry(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    await cluster.start(3)
    n1 = cluster["n1"].forwarder
    key = key_owned_by(n1, ["n2", "n3"])
    with pytest.raises(RemoteError) as caught:
        await n1.handle_or_forward(key, b"fail please")
    assert (caught.value.member, caught.value.text) == ("n2", "ValueError: bad request")
    assert cluster["n3"].served == []
    assert n1.stats().failovers == 0
    # Served here, the handler's own exception propagates.
    local = key_owned_by(n1, ["n1"])
    with pytest.raises(ValueError, match="bad request"):
        await n1.handle_or_forward(local, b"fail")


async def test_pending_requests_are_bounded(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    await cluster.start(3, max_pending=1)
    n1 = cluster["n1"].forwarder
    key = key_owned_by(n1, ["n2"])
    cluster["n2"].hang.add(b"hold")
    results: list[bytes] = []

    async def first() -> None:
        results.append(await n1.handle_or_forward(key, b"hold"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await eventually(lambda: cluster["n2"].served == [b"hold"])
        with pytest.raises(ForwardBusy):
            await n1.handle_or_forward(key, b"second")
        cluster["n2"].release.set()
    assert results == [b"n2:hold"]
    assert n1.stats().busy == 1


async def test_a_busy_owner_refuses_and_the_asker_moves_on(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    await cluster.start(3, max_serving=1)
    n1, n3 = cluster["n1"].forwarder, cluster["n3"].forwarder
    key = key_owned_by(n1, ["n2", "n1"])
    cluster["n2"].hang.add(b"hold")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(n3.handle_or_forward, key, b"hold")
        await eventually(lambda: cluster["n2"].served == [b"hold"])
        # n2 serves one request at a time: n1's is refused and n1 serves it itself.
        assert await n1.handle_or_forward(key, b"GET") == b"n1:GET"
        cluster["n2"].release.set()
    assert n1.stats().refused == 1 and n1.stats().failovers == 1
    assert cluster["n2"].forwarder.stats().refused_busy == 1


async def test_a_critical_owner_leaves_every_ring_and_comes_back(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    members = await cluster.start(3)
    n2 = cluster["n2"]
    key = key_owned_by(n2.forwarder, ["n2", "n3"])
    n2.node.set_health(HealthStatus.CRITICAL, "disk full")
    for member in members:  # its own forwarder follows its own health at once
        await member.forwarder.wait_for_ring(lambda ring: "n2" not in ring, timeout_s=60)
    for member in members:  # the critical member still forwards (it is alive)
        assert await member.forwarder.handle_or_forward(key, b"GET") == b"n3:GET"
    assert n2.served == []
    n2.node.set_health(HealthStatus.PASSING)
    for member in members:
        await member.forwarder.wait_for_ring(lambda ring: "n2" in ring, timeout_s=60)
    assert await cluster["n1"].forwarder.handle_or_forward(key, b"GET") == b"n2:GET"


async def test_other_user_messages_are_left_alone_and_forged_frames_counted(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    await cluster.start(2)
    n1, n2 = cluster["n1"], cluster["n2"]
    seen: list[bytes] = []

    async def app() -> None:
        async for event in n1.node.events():
            if isinstance(event, UserMessageReceived) and not is_forwarding_frame(event.payload):
                seen.append(event.payload)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app)
        await trio.sleep(0.01)
        await n2.node.send("n1", b"hello", reliable=True)
        await n2.node.send("n1", b"\xffFW\x07junk-junk-junk", reliable=True)
        await n2.node.send("n1", encode_frame(Frame(FrameKind.ANSWER, 12345, b"x")),
                           reliable=True)
        await eventually(lambda: n1.forwarder.stats().late_answers == 1)
        nursery.cancel_scope.cancel()
    assert seen == [b"hello"]
    stats = n1.forwarder.stats()
    assert (stats.malformed, stats.late_answers, stats.served_for_others) == (1, 1, 0)


async def test_no_member_on_the_ring_and_ring_change_callbacks(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    node = await cluster.nodes.start(1)
    changes: list[RingChanged] = []
    async with Forwarder(node, RingOptions(include={"role": "cache"}), None,
                         on_ring_change=changes.append) as empty:
        with pytest.raises(NoOwnerError):
            await empty.handle_or_forward(b"k", b"GET")
        assert changes == []  # the ring was empty and stays empty
        node.update_tags({"role": "cache"})
        await empty.wait_for_ring(lambda ring: len(ring) == 1, timeout_s=5)
        assert [sorted(c.new.members) for c in changes] == [["n1"]]
        with pytest.raises(RuntimeError, match="no handler"):
            await empty.handle_or_forward(b"k", b"GET")
    with pytest.raises(ValueError, match="at least 1"):
        Forwarder(node, OPTIONS, None, max_pending=0)
