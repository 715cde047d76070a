"""Health (issue 9, item 3, library side): `Node.set_health`, the check runner and
`HealthChanged`, on the in-memory network under an autojump MockClock (the thread and
`ThreadedNode` tests at the end run on the real clock).

The point of the design: health and liveness stay distinct. A critical member keeps
answering probes, so it is ALIVE in every view the whole time, while every member's
placement ring leaves it out until it passes again.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import swim
from swim import (
    Config,
    HealthChanged,
    HealthStatus,
    MemberEvent,
    MemberEventKind,
    MemberState,
    MemberStatus,
    Node,
    ThreadedNode,
)
from swim.ring import Ring, RingOptions, RingTracker
from swim.runtime.checks import ThreadSlot, evaluate
from swim.runtime.health import (
    NOTE_MAX_BYTES,
    HealthResult,
    HealthWatch,
    clip_note,
    health_of,
    with_health,
    worst,
)
from tests.memory_cluster import MemoryCluster, eventually
from tests.ticks import ticking
from transport.memory import MemoryNetwork

PASSING, WARNING, CRITICAL = HealthStatus.PASSING, HealthStatus.WARNING, HealthStatus.CRITICAL


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
async def cluster(clock: trio.testing.MockClock) -> AsyncIterator[MemoryCluster]:
    network = MemoryNetwork(latency_s=0.001, rng=random.Random(5))
    async with trio.open_nursery() as nursery:
        yield MemoryCluster(network, nursery)
        nursery.cancel_scope.cancel()


# ============================================================ the pure parts


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({}, PASSING),  # runs no checks: healthy
        ({"health": "passing"}, PASSING),
        ({"health": "warning"}, WARNING),
        ({"health": "critical", "role": "db"}, CRITICAL),
        ({"health": "CRITICAL"}, PASSING),  # not ours (the ring matches exact text too)
        ({"health": "maintenance"}, PASSING),
        ({"health": ""}, PASSING),
    ],
)
def test_health_of_a_members_tags(tags: dict[str, str], expected: HealthStatus) -> None:
    assert health_of(tags) is expected


def test_status_parsing_and_severity() -> None:
    assert HealthStatus.parse("critical") is CRITICAL
    assert HealthStatus.parse(WARNING) is WARNING
    assert [s.severity for s in HealthStatus] == [0, 1, 2]
    for bad in ("Critical", "ok", 2, None):
        with pytest.raises(ValueError, match="one of passing, warning, critical"):
            HealthStatus.parse(bad)  # type: ignore[arg-type]


def test_health_tags_keep_the_others_and_a_clipped_note() -> None:
    tags = {"role": "web", "zone": "a"}
    assert with_health(tags, HealthResult(CRITICAL, "disk\nfull")) == {
        "role": "web", "zone": "a", "health": "critical", "health_note": "disk full",
    }
    assert with_health(tags, HealthResult(PASSING)) == {"role": "web", "zone": "a",
                                                        "health": "passing"}
    published = {"role": "web", "health": "warning", "health_note": "slow"}
    assert with_health(published, None) == {"role": "web"}
    long = "é" * 100  # 200 bytes of UTF-8
    clipped = clip_note(long)
    assert len(clipped.encode()) <= NOTE_MAX_BYTES
    assert clipped == "é" * (NOTE_MAX_BYTES // 2)
    # The whole health costs a few bytes of the 512 the metadata holds.
    extra = len(swim.encode_tags(with_health(tags, HealthResult(CRITICAL)))) - len(
        swim.encode_tags(tags)
    )
    assert extra == 16


def test_the_worst_source_wins_and_ties_go_by_source_name() -> None:
    assert worst({}) is None
    sources = {"": HealthResult(WARNING, "manual"), "disk": HealthResult(CRITICAL, "full"),
               "db": HealthResult(CRITICAL, "down")}
    assert worst(sources) == HealthResult(CRITICAL, "down")
    assert worst(dict(reversed(sources.items()))) == HealthResult(CRITICAL, "down")
    assert worst({"": HealthResult(PASSING), "a": HealthResult(PASSING, "fine")}) == (
        HealthResult(PASSING)
    )


def member(name: str, tags: dict[str, str], status: MemberStatus = MemberStatus.ALIVE,
           ) -> MemberState:
    return MemberState(name=name, addr=("10.0.0.1", 7946), incarnation=1, status=status,
                       meta=swim.encode_tags(tags))


def member_event(kind: MemberEventKind, name: str, tags: dict[str, str], at: float,
                 ) -> MemberEvent:
    return MemberEvent(kind=kind, member=member(name, tags), at=at, wall_time=1000 + at)


def test_health_watch_reports_status_changes_only() -> None:
    watch = HealthWatch([member("a", {}), member("b", {"health": "critical"}),
                         member("gone", {"health": "critical"}, MemberStatus.DEAD)])
    J, U, F = MemberEventKind.JOINED, MemberEventKind.UPDATED, MemberEventKind.FAILED
    script = [
        (member_event(U, "a", {"role": "x"}, 1.0), None),  # tags changed, health did not
        (member_event(U, "a", {"health": "warning", "health_note": "slow"}, 2.0),
         (PASSING, WARNING, "slow")),
        (member_event(U, "a", {"health": "warning", "health_note": "slower"}, 3.0), None),
        (member_event(U, "b", {"health": "passing"}, 4.0), (CRITICAL, PASSING, "")),
        (member_event(J, "c", {}, 5.0), None),  # a newcomer that passes is no news
        (member_event(J, "d", {"health": "critical"}, 6.0), (None, CRITICAL, "")),
        (member_event(F, "d", {"health": "critical"}, 7.0), None),  # liveness, not health
        (member_event(J, "d", {"health": "critical"}, 8.0), (None, CRITICAL, "")),
        (member_event(J, "gone", {"health": "critical"}, 9.0), (None, CRITICAL, "")),
    ]
    for event, expected in script:
        got = watch.observe(event)
        if expected is None:
            assert got is None, event
        else:
            old, new, note = expected
            assert got == HealthChanged(member=event.member, old=old, new=new, note=note,
                                        at=event.at, wall_time=event.wall_time)
    assert watch.status_of("a") is WARNING
    assert watch.status_of("nobody") is None


# ============================================================ set_health on a cluster


async def test_set_health_is_published_and_keeps_the_other_tags(
    cluster: MemoryCluster, clock: trio.testing.MockClock
) -> None:
    n1 = await cluster.start(1, meta=swim.encode_tags({"role": "web"}))
    n2 = await cluster.start(2)
    await n2.wait_for_alive(2, timeout_s=60)
    assert n2.health("n1") is PASSING  # no health tag yet
    assert n1.tags() == {"role": "web"}

    n1.set_health(CRITICAL, "disk full")
    assert n1.tags() == {"role": "web", "health": "critical", "health_note": "disk full"}
    assert n1.health() is CRITICAL
    await n2.wait_for(lambda v: v.tags("n1").get("health") == "critical", timeout_s=60)
    assert n2.health("n1") is CRITICAL and n2.health_note("n1") == "disk full"

    # Saying the same again gossips nothing (no new incarnation).
    incarnation = n1.member("n1").incarnation  # type: ignore[union-attr]
    n1.set_health("critical", "disk full")
    assert n1.member("n1").incarnation == incarnation  # type: ignore[union-attr]

    # update_tags keeps the node's health; its own `health` key is overridden.
    n1.update_tags({"role": "db", "health": "passing"})
    assert n1.tags() == {"role": "db", "health": "critical", "health_note": "disk full"}
    await n2.wait_for(lambda v: v.tags("n1").get("role") == "db", timeout_s=60)
    assert n2.health("n1") is CRITICAL

    n1.set_health(PASSING)
    assert n1.tags() == {"role": "db", "health": "passing"}
    await n2.wait_for(lambda v: v.tags("n1").get("health") == "passing", timeout_s=60)
    assert n2.health_note("n1") == ""

    with pytest.raises(ValueError, match="health status"):
        n1.set_health("broken")
    with pytest.raises(LookupError):
        n1.health("nobody")


async def test_health_events_cover_peers_and_this_member(
    cluster: MemoryCluster, clock: trio.testing.MockClock
) -> None:
    n1, n2 = await cluster.start_all(2)
    seen: dict[str, list[HealthChanged]] = {"n1": [], "n2": []}

    async def collect(node: Node) -> None:
        async for event in node.health_events():
            seen[node.name].append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, n1)
        nursery.start_soon(collect, n2)
        await trio.sleep(0.01)
        n2.set_health(WARNING, "slow disk")
        await eventually(lambda: seen["n1"] and seen["n2"])
        n2.set_health(CRITICAL)
        n2.set_health(CRITICAL)  # no change, no event
        n1.update_tags({"role": "x"})  # metadata but not health: no event
        await eventually(lambda: len(seen["n1"]) == 2 and len(seen["n2"]) == 2)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()

    for observer in ("n1", "n2"):
        changes = [(e.name, e.old, e.new, e.note) for e in seen[observer]]
        assert changes == [("n2", PASSING, WARNING, "slow disk"), ("n2", WARNING, CRITICAL, "")]
    own = seen["n2"][0]
    assert own.wall_time == own.at  # the cluster's wall clock is trio's here
    assert swim.tags_of(own.member.meta)["health"] == "warning"


async def test_a_critical_member_stays_alive_and_leaves_the_ring_until_it_passes(
    cluster: MemoryCluster, clock: trio.testing.MockClock
) -> None:
    nodes = await cluster.start_all(4)
    liveness_news: list[MemberEvent] = []

    async def watch(node: Node) -> None:
        async for event in node.member_events():
            if event.name == "n3" and event.kind is not MemberEventKind.UPDATED:
                liveness_news.append(event)

    def rings() -> dict[str, Ring]:
        return {node.name: Ring.build(node.members()) for node in nodes}

    before = rings()
    assert {r.checksum for r in before.values()} == {before["n1"].checksum}
    keys = [f"key-{i}" for i in range(300)]
    owned_by_n3 = [k for k in keys if before["n1"].owner(k) == "n3"]
    assert owned_by_n3

    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(watch, node)
        await trio.sleep(0.01)
        cluster["n3"].set_health(CRITICAL, "check failed")
        await eventually(lambda: all("n3" not in r for r in rings().values()))
        # For a minute (many probe rounds and suspicion timeouts), n3 is alive for
        # everyone and off everyone's ring, its own included.
        for _ in range(60):
            await trio.sleep(1)
            for node in nodes:
                assert node.member("n3").status is MemberStatus.ALIVE  # type: ignore[union-attr]
                assert node.health("n3") is CRITICAL
            current = rings()
            assert all("n3" not in ring for ring in current.values())
            assert len({ring.checksum for ring in current.values()}) == 1
        ring = current["n1"]
        assert sorted(ring.members) == ["n1", "n2", "n4"]
        # Only n3's keys moved, to the others.
        assert all(ring.owner(k) == before["n1"].owner(k) for k in keys if k not in owned_by_n3)
        assert {ring.owner(k) for k in owned_by_n3} <= {"n1", "n2", "n4"}

        cluster["n3"].set_health(PASSING)
        await eventually(lambda: all("n3" in r for r in rings().values()))
        assert rings()["n2"].checksum == before["n1"].checksum
        assert all(rings()["n4"].owner(k) == "n3" for k in owned_by_n3)
        nursery.cancel_scope.cancel()

    assert liveness_news == []  # never suspected, failed or rejoined


async def test_a_ring_tracker_follows_health_from_events(
    cluster: MemoryCluster, clock: trio.testing.MockClock
) -> None:
    n1, n2, _ = await cluster.start_all(3)
    tracker = RingTracker(RingOptions())
    own = RingTracker(RingOptions())

    async def feed(node: Node, tracker: RingTracker) -> None:
        # local_updates: this member's own metadata changes too.
        with node.subscribe(lambda event, stamped: event, local_updates=True) as events:
            tracker.update(node.members())
            async for event in events:
                tracker.observe(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed, n1, tracker)
        nursery.start_soon(feed, n2, own)
        await eventually(lambda: len(tracker.ring) == 3 and len(own.ring) == 3)
        n2.set_health(CRITICAL)
        await eventually(lambda: "n2" not in tracker.ring and "n2" not in own.ring)
        n2.set_health(WARNING)  # warning keeps it on the ring
        await eventually(lambda: "n2" in tracker.ring and "n2" in own.ring)
        nursery.cancel_scope.cancel()


# ============================================================ the check runner


async def test_a_check_that_raises_times_out_or_returns_junk_is_critical(
    cluster: MemoryCluster, clock: trio.testing.MockClock
) -> None:
    n1, n2 = await cluster.start_all(2)
    script: list[HealthStatus | str] = ["passing", "raise", "hang", "warning", "junk", PASSING]

    async def check() -> HealthStatus | str:
        step = script.pop(0)
        if step == "raise":
            raise OSError("connection refused")
        if step == "hang":
            await trio.sleep(10)
        if step == "junk":
            return 42  # type: ignore[return-value]
        return step

    results: list[tuple[HealthStatus, str]] = []
    handle = n1.start_health_check(check, interval_s=1.0, timeout_s=0.5)
    assert handle.name == "check-1"
    while script:
        runs = handle.runs
        await eventually(lambda: handle.runs > runs)  # noqa: B023
        results.append((n1.health(), n1.health_note()))
        assert handle.last == HealthResult(*results[-1])
    assert results == [
        (PASSING, ""),
        (CRITICAL, "check raised OSError: connection refused"),
        (CRITICAL, "check timed out after 0.5 s"),
        (WARNING, ""),
        (CRITICAL, "check returned 42, not a HealthStatus"),
        (PASSING, ""),
    ]
    assert handle.runs == 6 and handle.not_passing == 4
    await n2.wait_for(lambda v: v.tags("n1").get("health") == "passing", timeout_s=60)
    assert n1.member("n1").status is MemberStatus.ALIVE  # type: ignore[union-attr]
    assert n2.member("n1").status is MemberStatus.ALIVE  # type: ignore[union-attr]
    handle.stop()
    await handle.wait_stopped()
    assert not handle.running
    assert n1.tags() == {}  # no source left: the health tags are withdrawn


async def test_the_node_publishes_the_worst_source_and_a_stopped_check_withdraws(
    cluster: MemoryCluster, clock: trio.testing.MockClock,
) -> None:
    n1, _ = await cluster.start_all(2)
    n1.set_health(WARNING, "manual")
    status = CRITICAL

    def check() -> HealthStatus:  # quick and plain: run inline
        return status

    async with n1.run_health_check(check, interval_s=0.5, timeout_s=0.1, name="disk",
                                   in_thread=False) as handle:
        await eventually(lambda: handle.runs >= 1)
        assert (n1.health(), n1.health_note()) == (CRITICAL, "")
        status = PASSING
        await eventually(lambda: n1.health() is WARNING)  # the manual status is worse
        assert n1.health_note() == "manual"
        with pytest.raises(ValueError, match="already running"):
            n1.start_health_check(check, interval_s=1, timeout_s=1, name="disk")
        status = CRITICAL
        await eventually(lambda: n1.health() is CRITICAL)
        incarnation = n1.member("n1").incarnation  # type: ignore[union-attr]
        await trio.sleep(10)  # 20 more runs with the same result: nothing gossiped
        assert n1.member("n1").incarnation == incarnation  # type: ignore[union-attr]
    assert not handle.running
    assert (n1.health(), n1.health_note()) == (WARNING, "manual")
    with pytest.raises(ValueError, match="positive"):
        n1.start_health_check(check, interval_s=0, timeout_s=1)


async def test_checks_stop_with_their_node(
    cluster: MemoryCluster, clock: trio.testing.MockClock
) -> None:
    n1 = await cluster.start(1)

    async def check() -> HealthStatus:
        return CRITICAL

    handle = n1.start_health_check(check, interval_s=1, timeout_s=1)
    await eventually(lambda: handle.runs >= 2)
    await cluster.running["n1"].stop()
    assert not handle.running
    with pytest.raises(RuntimeError):
        n1.set_health(PASSING)


# ------------------------------------------------- threads (the real clock)


async def test_a_blocking_check_runs_in_a_thread_and_holds_one_thread_at_most() -> None:
    release = threading.Event()
    calls: list[float] = []

    def blocking_check() -> HealthStatus:
        calls.append(time.monotonic())
        release.wait(10)
        return PASSING

    slot = ThreadSlot()

    async with ticking() as ticks:
        first = await evaluate(blocking_check, 0.2, slot=slot)
        assert first == HealthResult(CRITICAL, "check timed out after 0.2 s")
        assert ticks.count >= 5  # the loop kept running while the check blocked
        second = await evaluate(blocking_check, 0.2, slot=slot)
        assert second == HealthResult(CRITICAL, "the previous run is still going")
        assert len(calls) == 1  # no second thread while the first one hangs
        release.set()
        with trio.fail_after(5):
            while slot.busy:
                await trio.sleep(0.01)
        assert await evaluate(blocking_check, 1.0, slot=slot) == HealthResult(PASSING)
        assert await evaluate(lambda: "warning", 1.0) == HealthResult(WARNING)
        # A check may say why: a HealthResult comes back as it is, note included.
        assert await evaluate(lambda: HealthResult(WARNING, "HTTP 429"), 1.0) == (
            HealthResult(WARNING, "HTTP 429"))

        def broken() -> HealthStatus:
            raise ZeroDivisionError("division by zero")

        assert await evaluate(broken, 1.0) == HealthResult(
            CRITICAL, "check raised ZeroDivisionError: division by zero"
        )


def test_threaded_node_health_over_loopback() -> None:
    config = Config.local()
    with ThreadedNode(config, name="t1", bind=("127.0.0.1", 0)) as t1, ThreadedNode(
        config, name="t2", bind=("127.0.0.1", 0), seeds=[t1.addr]
    ) as t2:
        t1.wait_for_alive(2, timeout_s=30)
        t2.set_health("critical", "maintenance")
        assert t2.health() is CRITICAL
        t1.wait_for(lambda v: v.tags("t2").get("health") == "critical", timeout_s=30)
        assert t1.health("t2") is CRITICAL and t1.health_note("t2") == "maintenance"

        def check() -> HealthStatus:  # runs in a worker thread of t2's loop
            return WARNING

        handle = t2.start_health_check(check, interval_s=0.2, timeout_s=1, name="w")
        t2.set_health("passing")
        t1.wait_for(lambda v: v.tags("t2").get("health") == "warning", timeout_s=30)
        handle.stop()  # from this (non-trio) thread
        t1.wait_for(lambda v: v.tags("t2").get("health") == "passing", timeout_s=30)
        assert t1.member("t2").status is MemberStatus.ALIVE  # type: ignore[union-attr]
