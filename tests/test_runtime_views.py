"""Views and events of a running `swim.Node` (issue 9, item 4), on the in-memory
network under an autojump MockClock: member filters by status, tags and name, tags read
through `swim.core.tags`, `wait_for` woken by membership events (never by a timer),
`wait_for_alive` / `wait_for_member`, timeouts and a stopping node; the one member-event
shape (`MemberEvent`) and the wall-clock time on every published event. The pure parts
(`member_event`, `filter_members`, `MemberView`) are checked on tables.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import swim
from swim import (
    UP_STATUSES,
    Config,
    Event,
    EventOverflow,
    MemberAlive,
    MemberEvent,
    MemberEventKind,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberState,
    MemberStatus,
    MemberSuspected,
    MemberUpdated,
    MemberView,
    Stamped,
    UserBroadcastReceived,
)
from swim.runtime import filter_members, member_event, stamp
from tests.memory_cluster import MemoryCluster as Cluster
from transport.memory import MemoryNetwork

BOUND_S = 120.0  # virtual seconds


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def network() -> MemoryNetwork:
    return MemoryNetwork(latency_s=0.001, rng=random.Random(3))


@pytest.fixture
async def cluster(network: MemoryNetwork) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        yield Cluster(network, nursery)
        nursery.cancel_scope.cancel()


def names(members: list[MemberState] | MemberView) -> list[str]:
    return sorted(m.name for m in members)


async def collect(
    subscription: AsyncIterator[MemberEvent], into: list[MemberEvent]
) -> None:
    async for event in subscription:
        into.append(event)


# ====================================================================== views


async def test_members_filter_by_status_tags_and_name(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    web = await cluster.start_running(1, meta=swim.encode_tags({"role": "web", "zone": "a"}))
    await cluster.start_running(2, meta=swim.encode_tags({"role": "db", "zone": "b"}))
    n3 = await cluster.start_running(3, meta=b"plain text, not tags")
    node = web.node
    view = await node.wait_for_alive(3, timeout_s=BOUND_S)
    assert names(view) == ["n1", "n2", "n3"]

    assert names(node.members(tags={"role": "web"})) == ["n1"]
    assert names(node.members(tags={"zone": "*"})) == ["n1", "n2"]  # n3 has no tags
    assert names(node.members(tags={"role": "d?", "zone": "[ab]"})) == ["n2"]
    assert node.members(tags={"role": "web", "zone": "b"}) == []
    assert names(node.members(name="n[23]")) == ["n2", "n3"]
    assert names(node.members(status=MemberStatus.ALIVE, tags={"role": "*"})) == ["n1", "n2"]
    assert node.tags() == {"role": "web", "zone": "a"}
    assert node.tags("n2") == {"role": "db", "zone": "b"}
    assert node.tags("n3") == {}
    with pytest.raises(LookupError):
        node.tags("nobody")

    # A member that leaves is still listed by members() (as before filters existed),
    # but no longer alive.
    await n3.node.leave()
    await node.wait_for_member("n3", MemberStatus.LEFT, timeout_s=BOUND_S)
    assert names(node.members()) == ["n1", "n2", "n3"]
    assert names(node.alive_members()) == ["n1", "n2"]
    assert names(node.members(status=MemberStatus.LEFT)) == ["n3"]
    assert names(node.members(status=UP_STATUSES)) == ["n1", "n2"]
    assert names(node.members(status=[MemberStatus.LEFT, MemberStatus.DEAD])) == ["n3"]
    assert node.view().alive().names() == [m.name for m in node.alive_members()]

    # Tags change through update_tags and reach the others.
    node.update_tags({"role": "web", "zone": "c"})
    other = cluster.running["n2"].node
    await other.wait_for(lambda v: v.tags("n1").get("zone") == "c", timeout_s=BOUND_S)
    assert names(other.members(tags={"zone": "c"})) == ["n1"]


async def test_wait_for_is_woken_by_membership_events_not_by_a_timer(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    first = await cluster.start_running(1)
    node = first.node
    calls: list[int] = []
    seen: list[MemberEvent] = []
    result: list[MemberView] = []

    def three_alive(view: MemberView) -> bool:
        calls.append(len(view))
        return len(view.alive()) >= 3

    async def waiter() -> None:
        result.append(await node.wait_for(three_alive))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, node.member_events(), seen)
        nursery.start_soon(waiter)
        # A minute of a lone node's probing, gossip and timers: no membership event,
        # so the predicate is not called again.
        await trio.sleep(60)
        assert calls == [1]
        await cluster.start_running(2)
        await cluster.start_running(3)
        with trio.fail_after(BOUND_S):
            while not result:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()

    assert names(result[0].alive()) == ["n1", "n2", "n3"]
    # Called once at the start, then at most once per membership event.
    joins = [e for e in seen if e.kind is MemberEventKind.JOINED]
    assert len(joins) == 2
    assert 2 <= len(calls) <= 1 + len(seen)
    assert node.stats().events_published >= len(seen)


async def test_wait_for_returns_at_once_when_already_true(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    node = (await cluster.start_running(1)).node
    start = trio.current_time()
    view = await node.wait_for_alive(1)
    assert view.names() == ["n1"]
    assert trio.current_time() == start


async def test_wait_for_times_out_on_the_node_clock(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    node = (await cluster.start_running(1)).node
    start = trio.current_time()
    with pytest.raises(TimeoutError):
        await node.wait_for_alive(2, timeout_s=3.0)
    assert 3.0 <= trio.current_time() - start < 3.5
    with pytest.raises(TimeoutError):
        await node.wait_for(lambda view: False, timeout_s=0)


async def test_wait_for_member_sees_a_crash_through_to_failure(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    a = await cluster.start_running(1)
    b = await cluster.start_running(2)
    await a.node.wait_for_alive(2, timeout_s=BOUND_S)
    b.crash()
    view = await a.node.wait_for_member("n2", MemberStatus.DEAD, timeout_s=BOUND_S)
    assert view.status_of("n2") is MemberStatus.DEAD
    assert view.up().names() == ["n1"]


async def test_a_waiter_learns_that_its_node_stopped(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    a = await cluster.start_running(1)
    node = a.node
    outcome: list[BaseException] = []

    async def waiter() -> None:
        try:
            await node.wait_for_alive(5)
        except RuntimeError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        await a.stop()
    assert len(outcome) == 1 and "stopped" in str(outcome[0])
    with pytest.raises(RuntimeError, match="stopped"):
        await node.wait_for_alive(1)


# ============================================================== member events


async def test_member_events_have_one_shape_and_wall_clock_times(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    # A wall clock 10^9 s ahead of trio's: every wall_time is its event's `at` shifted.
    offset = 1e9
    a = await cluster.start_running(1, wall_clock=lambda: offset + trio.current_time())
    seen: list[MemberEvent] = []
    stamped: list[MemberEvent | Stamped] = []
    raw: list[Event] = []

    async def take_stamped() -> None:
        async for item in a.node.stamped_events():
            stamped.append(item)

    async def take_raw() -> None:
        async for event in a.node.events():
            raw.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, a.node.member_events(), seen)
        nursery.start_soon(take_stamped)
        nursery.start_soon(take_raw)
        b = await cluster.start_running(2, meta=swim.encode_tags({"role": "db"}))
        c = await cluster.start_running(3)
        await a.node.wait_for_alive(3, timeout_s=BOUND_S)
        b.node.update_tags({"role": "cache"})
        await a.node.wait_for(lambda v: v.tags("n2") == {"role": "cache"}, timeout_s=BOUND_S)
        a.node.broadcast(b"hello")
        await c.stop()  # a graceful leave
        await a.node.wait_for_member("n3", MemberStatus.LEFT, timeout_s=BOUND_S)
        b.crash()
        await a.node.wait_for_member("n2", MemberStatus.DEAD, timeout_s=BOUND_S)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()

    kinds = [(e.kind, e.name) for e in seen]
    assert sorted(kinds[:2]) == [(MemberEventKind.JOINED, "n2"), (MemberEventKind.JOINED, "n3")]
    assert (MemberEventKind.UPDATED, "n2") in kinds
    assert (MemberEventKind.LEFT, "n3") in kinds
    assert kinds.index((MemberEventKind.SUSPECT, "n2")) < kinds.index(
        (MemberEventKind.FAILED, "n2")
    )
    for event in seen:
        assert event.wall_time == pytest.approx(event.at + offset, abs=1e-6)
        assert event.member.name == event.name
        if event.kind in (MemberEventKind.SUSPECT, MemberEventKind.FAILED):
            assert event.accuser  # a member's name
        else:
            assert event.accuser is None
    updated = next(e for e in seen if e.kind is MemberEventKind.UPDATED)
    assert updated.tags == {"role": "cache"}

    # Every event, stamped, in the order of the core's events; membership ones in the
    # member-event shape.
    assert [s.at for s in stamped] == [e.at for e in raw]
    assert [s for s in stamped if isinstance(s, MemberEvent)] == seen
    broadcast = [s for s in stamped if isinstance(s, Stamped)
                 and isinstance(s.event, UserBroadcastReceived)]
    assert len(broadcast) == 1
    assert broadcast[0].event == next(e for e in raw if isinstance(e, UserBroadcastReceived))
    assert broadcast[0].wall_time == pytest.approx(broadcast[0].at + offset, abs=1e-6)
    assert [member_event(e, 0.0) is not None for e in raw] == [
        isinstance(s, MemberEvent) for s in stamped
    ]


async def test_the_default_wall_time_is_the_real_clock(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    a = await cluster.start_running(1)
    seen: list[MemberEvent] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, a.node.member_events(), seen)
        await cluster.start_running(2)
        await a.node.wait_for_alive(2, timeout_s=BOUND_S)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert seen and seen[0].kind is MemberEventKind.JOINED
    # trio's clock has an arbitrary origin; wall_time is time.time()'s.
    assert abs(seen[0].wall_time - time.time()) < 60
    assert abs(seen[0].at - seen[0].wall_time) > 1000


async def test_a_slow_member_event_subscriber_is_cut_off(
    cluster: Cluster, clock: trio.testing.MockClock
) -> None:
    a = await cluster.start_running(1)
    slow = a.node.member_events(max_buffer=1)
    await cluster.start_running(2)
    await cluster.start_running(3)
    await a.node.wait_for_alive(3, timeout_s=BOUND_S)
    first = await slow.__anext__()
    assert first.kind is MemberEventKind.JOINED
    with pytest.raises(EventOverflow):
        await slow.__anext__()
    assert a.node.stats().subscriber_overflows == 1
    # Broadcasts are not membership events: a member-event subscriber never sees them.
    quiet = a.node.member_events(max_buffer=1)
    for i in range(5):
        a.node.broadcast(b"%d" % i)
    await trio.sleep(1)
    quiet.close()
    assert [e async for e in quiet] == []


# ============================================================ the pure parts


STATE = MemberState(name="m", addr=("10.0.0.9", 1), incarnation=3)


@pytest.mark.parametrize(
    ("event", "kind", "accuser"),
    [
        (MemberJoined(member=STATE, at=1.0), MemberEventKind.JOINED, None),
        (MemberSuspected(member=STATE, accuser="x", at=1.0), MemberEventKind.SUSPECT, "x"),
        (MemberAlive(member=STATE, at=1.0), MemberEventKind.ALIVE, None),
        (MemberFailed(member=STATE, accuser="y", at=1.0), MemberEventKind.FAILED, "y"),
        (MemberLeft(member=STATE, at=1.0), MemberEventKind.LEFT, None),
        (MemberUpdated(member=STATE, at=1.0), MemberEventKind.UPDATED, None),
    ],
)
def test_member_event_maps_each_membership_event(
    event: Event, kind: MemberEventKind, accuser: str | None
) -> None:
    expected = MemberEvent(kind=kind, member=STATE, at=1.0, wall_time=5.0, accuser=accuser)
    assert member_event(event, 5.0) == expected
    assert stamp(event, 5.0) == expected
    assert expected.name == "m" and expected.addr == STATE.addr
    assert expected.status is MemberStatus.ALIVE and expected.tags == {}


def test_other_events_are_stamped_unchanged() -> None:
    event = UserBroadcastReceived(origin="o", id=1, payload=b"p", at=2.0)
    assert member_event(event, 7.0) is None
    assert stamp(event, 7.0) == Stamped(event=event, wall_time=7.0)
    assert stamp(event, 7.0).at == 2.0


def _member(name: str, status: MemberStatus, **tags: str) -> MemberState:
    return MemberState(name=name, addr=("10.0.0.1", 1), incarnation=1, status=status,
                       meta=swim.encode_tags(tags))


MEMBERS = [
    _member("web-1", MemberStatus.ALIVE, role="web", zone="a"),
    _member("web-2", MemberStatus.SUSPECT, role="web", zone="b"),
    _member("db-1", MemberStatus.DEAD, role="db", zone="a"),
    _member("db-2", MemberStatus.LEFT, role="db"),
    MemberState(name="other", addr=("10.0.0.2", 1), incarnation=1, meta=b"{json}"),
]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["web-1", "web-2", "db-1", "db-2", "other"]),
        ({"status": MemberStatus.ALIVE}, ["web-1", "other"]),
        ({"status": UP_STATUSES}, ["web-1", "web-2", "other"]),
        ({"status": [MemberStatus.DEAD, MemberStatus.LEFT]}, ["db-1", "db-2"]),
        ({"tags": {"role": "web"}}, ["web-1", "web-2"]),
        ({"tags": {"zone": "*"}}, ["web-1", "web-2", "db-1"]),
        ({"tags": {"role": "db", "zone": "a"}}, ["db-1"]),
        ({"tags": {"missing": "*"}}, []),
        ({"name": "db-*"}, ["db-1", "db-2"]),
        ({"name": "*-1", "status": MemberStatus.ALIVE}, ["web-1"]),
        ({"tags": {}}, ["web-1", "web-2", "db-1", "db-2", "other"]),
    ],
)
def test_filter_members(filters: dict[str, object], expected: list[str]) -> None:
    assert [m.name for m in filter_members(MEMBERS, **filters)] == expected  # type: ignore[arg-type]
    assert MemberView(MEMBERS).filter(**filters).names() == expected  # type: ignore[arg-type]


def test_a_bad_status_filter_is_the_callers_error() -> None:
    with pytest.raises(TypeError):
        filter_members(MEMBERS, status=["alive"])  # type: ignore[list-item]


def test_member_view_is_an_immutable_sequence() -> None:
    view = MemberView(MEMBERS)
    assert len(view) == 5 and view[0] is MEMBERS[0] and list(view) == MEMBERS
    assert view[1:3] == MemberView(MEMBERS[1:3])
    assert view.get("db-1") is MEMBERS[2] and view.get("nobody") is None
    assert view.status_of("web-2") is MemberStatus.SUSPECT and view.status_of("x") is None
    assert view.alive().names() == ["web-1", "other"]
    assert view.up().names() == ["web-1", "web-2", "other"]
    assert view.tags("web-2") == {"role": "web", "zone": "b"}
    assert view.tags("other") == {}
    with pytest.raises(LookupError):
        view.tags("nobody")
    assert MEMBERS[0] in view
    assert hash(view) == hash(MemberView(list(MEMBERS)))


def test_the_tag_helpers_are_public_and_pure() -> None:
    meta = swim.encode_tags({"b": "2", "a": "1"})
    assert swim.tags_of(meta) == {"a": "1", "b": "2"}
    assert swim.decode_tags_untrusted(meta) == {"a": "1", "b": "2"}
    assert swim.tags_of(b"not tags") == {}
    with pytest.raises(swim.MalformedTags):
        swim.decode_tags_untrusted(b"not tags")
    with pytest.raises(swim.TagError):
        swim.encode_tags({"a=b": "x"})
    assert swim.parse_tag_assignment("k=v") == ("k", "v")


# ===================================================== the ThreadedNode twins


def test_thread_hosted_views_waits_stamped_callbacks_and_submit() -> None:
    # Real loopback and the real clock (each ThreadedNode runs its own trio.run); every
    # wait is bounded and ends on an outcome.
    stamped: list[MemberEvent | Stamped] = []
    a = swim.ThreadedNode(Config.local(), name="t0", bind=("127.0.0.1", 0),
                          meta=swim.encode_tags({"role": "web"}), leave_timeout_s=2.0,
                          queue_events=False)
    a.add_callback(stamped.append, stamped=True)
    with a:
        with pytest.raises(TimeoutError):
            a.wait_for_alive(2, timeout_s=0.2)
        b = swim.ThreadedNode(Config.local(), name="t1", bind=("127.0.0.1", 0),
                              seeds=[a.addr], leave_timeout_s=2.0)
        with b:
            view = a.wait_for_alive(2, timeout_s=30.0)
            assert sorted(view.names()) == ["t0", "t1"]
            assert b.wait_for_member("t0", timeout_s=30.0).status_of("t0") is MemberStatus.ALIVE
            assert [m.name for m in b.members(tags={"role": "w*"})] == ["t0"]
            assert sorted(m.name for m in b.alive_members()) == ["t0", "t1"]
            assert b.tags("t0") == {"role": "web"} and b.tags() == {}
            b.update_tags({"role": "db"})
            a.wait_for(lambda v: v.tags("t1") == {"role": "db"}, 30.0)
            assert a.view().filter(tags={"role": "db"}).names() == ["t1"]

            # submit: the trio Node, without blocking the caller.
            future = a.submit(lambda node: node.wait_for_member("t1", MemberStatus.LEFT))
            assert not future.done()
            assert b.leave(timeout_s=5.0)
            assert future.result(timeout=30.0).status_of("t1") is MemberStatus.LEFT
            pending = a.submit(lambda node: node.wait_for_alive(5))
            assert pending.cancel()
            # Cancelled in the node too: the node still answers.
            assert a.submit(lambda node: node.wait_for_alive(1)).result(30.0).names()
        assert a.events.empty()  # queue_events=False
    kinds = [(e.kind, e.name) for e in stamped if isinstance(e, MemberEvent)]
    assert (MemberEventKind.JOINED, "t1") in kinds and (MemberEventKind.LEFT, "t1") in kinds
    assert all(abs(e.wall_time - time.time()) < 60 for e in stamped)
    with pytest.raises(RuntimeError):
        a.submit(lambda node: node.wait_for_alive(1))
