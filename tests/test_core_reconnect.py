"""Reconnection after long partitions, rumour notices, local confirmations, bootstrap."""

from __future__ import annotations

import random

import attrs
import pytest

from swim.core import Config, Core, MemberFailed, MemberJoined, MemberStatus
from swim.core.codec import encode
from swim.core.messages import Ack, Alive, Dead, MemberState, Message, Ping, Suspect, UserBroadcast
from swim.core.outputs import StreamKind
from swim.core.timing import nack_delay_s
from tests.drain import next_deadline, out_datagrams, out_events, out_streams
from tests.router import Router, addr_of

DEAD = MemberStatus.DEAD
LAN = Config.lan()


def joined(n: int, *, seed: int = 1, config: Config = LAN) -> tuple[Router, list[Core]]:
    router = Router(seed=seed)
    cores = router.cluster(n, config)
    router.run_until_true(lambda: router.converged([c.name for c in cores]), limit_s=30.0)
    return router, cores


def test_partition_outliving_the_dead_entries_heals_by_reconnect() -> None:
    router, cores = joined(8, seed=5)
    side_a, side_b = cores[:4], cores[4:]
    router.partition(side_a, side_b)

    def each_side_forgot_the_other() -> bool:
        return all(a.member(b.name) is None and b.member(a.name) is None
                   for a in side_a for b in side_b)

    router.run_until_true(each_side_forgot_the_other, limit_s=200.0)
    # Nothing in the tables links the sides any more, only the tombstones.
    assert all(c.membership.tombstone_count == 4 for c in cores)
    router.heal()
    took = router.run_until_true(
        lambda: router.converged([c.name for c in cores]),
        limit_s=3 * LAN.reconnect_interval_s,
    )
    assert took < 3 * LAN.reconnect_interval_s
    assert all(c.membership.tombstone_count == 0 for c in cores)


def test_reconnect_can_be_disabled() -> None:
    router, cores = joined(4, seed=6, config=attrs.evolve(LAN, reconnect_interval_s=0.0))
    router.crash(cores[3])
    router.run_until(router.now + 120.0)
    assert all(c.membership.tombstone_count == 0 for c in cores[:3])


def test_left_members_are_never_reconnected() -> None:
    router, cores = joined(4, seed=7)
    leaver = cores[3]
    leaver.leave(now=router.now)
    router.run_until_true(lambda: leaver.leave_complete, limit_s=10.0)
    router.crash(leaver)  # the process exits after leaving
    router.run_until(router.now + LAN.gossip_to_the_dead_s + 5.0)
    for core in cores[:3]:
        assert core.member(leaver.name) is None
        assert core.membership.tombstone(leaver.name) is None
    # And no push-pull is ever aimed at it afterwards.
    opened: list[tuple[str, int]] = []
    for core in cores[:3]:
        core.handle_timer(now=router.now + 10 * LAN.reconnect_interval_s)
        opened += [r.addr for r in out_streams(core)]
    assert leaver.addr not in opened


def test_failed_member_is_tried_round_robin_until_the_timeout() -> None:
    config = attrs.evolve(LAN, reconnect_timeout_s=100.0)
    router, cores = joined(3, seed=8, config=config)
    router.crash(cores[2])
    router.run_until_true(
        lambda: cores[0].member(cores[2].name) is None, limit_s=200.0
    )
    core = cores[0]
    entry = core.membership.tombstone(cores[2].name)
    assert entry is not None
    state, since = entry
    assert state.status == DEAD
    assert core.membership.next_reconnect(since + 99.0) == state
    assert core.membership.next_reconnect(since + 100.0) is None
    assert core.membership.tombstone_count == 0


def test_rumour_notice_is_sent_to_a_member_announcing_itself_below_its_death() -> None:
    core = Core(LAN, name="a", addr=addr_of(0), rng=random.Random(1), now=0.0)
    b = MemberState("b", addr_of(1), 3)
    core.bootstrap([b], now=0.0)
    core.receive_datagram(encode([Dead("b", 3, "a")]), addr_of(2), now=1.0)
    out_datagrams(core)
    # b restarted (incarnation 0) and says so; we still hold it dead at 3.
    core.receive_datagram(encode([attrs_alive(b, 0)]), addr_of(1), now=2.0)
    sent = out_datagrams(core)
    assert [(d.addr, d.messages[0]) for d in sent] == [(addr_of(1), Dead("b", 3, "a"))]
    # At most one notice per protocol period per member.
    core.receive_datagram(encode([attrs_alive(b, 0)]), addr_of(1), now=2.5)
    assert out_datagrams(core) == []
    core.receive_datagram(encode([attrs_alive(b, 0)]), addr_of(1), now=3.0)
    assert len(out_datagrams(core)) == 1


def attrs_alive(state: MemberState, incarnation: int) -> Alive:
    return Alive(attrs.evolve(state, incarnation=incarnation))


def test_our_failed_probe_confirms_someone_elses_suspicion() -> None:
    core = Core(LAN, name="a", addr=addr_of(0), rng=random.Random(2), now=0.0)
    core.bootstrap([MemberState(f"m{i}", addr_of(i + 1), 0) for i in range(9)], now=0.0)
    core.receive_datagram(encode([Suspect("m0", 0, "m1")]), addr_of(2), now=0.0)
    suspicion = core.membership.suspicion("m0")
    assert suspicion is not None and suspicion.confirmations == 0
    before = suspicion.deadline
    core.membership.suspect_locally("m0", 1.0)
    assert suspicion.confirmations == 1
    assert suspicion.deadline < before


@pytest.mark.parametrize(
    ("profile", "expected_s"), [("lan", 0.4), ("wan", 1.6), ("local", 0.16)]
)
def test_nack_arrives_within_the_requesters_period(profile: str, expected_s: float) -> None:
    cfg = Config.profile(profile)
    delay = nack_delay_s(cfg.probe_timeout_s, cfg.probe_interval_s)
    assert delay == pytest.approx(expected_s)
    # The ping-req leaves at probe_timeout; the nack must be back before the period ends.
    assert cfg.probe_timeout_s + delay < cfg.probe_interval_s


def test_bootstrap_starts_converged_without_events_or_gossip() -> None:
    router = Router(seed=9)
    states = [MemberState(f"node-{i}", addr_of(i), 0) for i in range(20)]
    cores = [router.add(s.name, s.addr, LAN) for s in states]
    for core in cores:
        core.bootstrap(states, now=router.now)
        assert out_events(core) == []
        assert core.news_pending() == 1  # only its own Alive
    assert router.converged([s.name for s in states])
    router.crash(cores[7])
    router.run_until_true(
        lambda: all(v == DEAD for v in router.status_everywhere("node-7").values()),
        limit_s=60.0,
    )
    assert not any(isinstance(e, MemberJoined) for c in cores for e in router.events[c.name])


def test_broadcast_queue_depth_is_bounded() -> None:
    config = attrs.evolve(LAN, broadcast_queue_depth=50)
    core = Core(config, name="a", addr=addr_of(0), rng=random.Random(3), now=0.0)
    news = [Alive(MemberState(f"m{i}", addr_of(i + 1), 0)) for i in range(200)]
    core.receive_datagram(encode(news), addr_of(1), now=0.0)
    assert len(core.members()) == 201
    assert core.news_pending() == 50


def test_stream_kind_of_reconnect_is_push_pull() -> None:
    router, cores = joined(3, seed=10)
    router.crash(cores[2])
    router.run_until_true(lambda: cores[0].member(cores[2].name) is None, limit_s=200.0)
    core = cores[0]
    out_streams(core)
    kinds: list[tuple[StreamKind, tuple[str, int]]] = []
    start = router.now
    for k in range(1, 41):  # 1 failed of 2 alive: each interval tries with probability 1/2
        core.handle_timer(now=start + k * LAN.reconnect_interval_s)
        kinds += [(r.kind, r.addr) for r in out_streams(core)]
    assert (StreamKind.PUSH_PULL, cores[2].addr) in kinds


def test_reconnect_attempts_scale_with_failed_over_alive() -> None:
    """Serf's rule: about one attempt per failed member per interval, cluster-wide."""
    core = Core(LAN, name="a", addr=addr_of(0), rng=random.Random(9), now=0.0)
    members = [MemberState(f"m{i}", addr_of(i + 1), 0) for i in range(99)]
    core.bootstrap([*members, MemberState("gone", addr_of(200), 0)], now=0.0)
    core.receive_datagram(encode([Dead("gone", 0, "m1")]), addr_of(2), now=0.0)
    core.handle_timer(now=LAN.gossip_to_the_dead_s)  # reaped: now a tombstone
    assert core.member("gone") is None and core.membership.tombstone("gone") is not None
    out_streams(core)
    attempts = 0
    for k in range(1, 1001):
        core.handle_timer(now=LAN.gossip_to_the_dead_s + k * LAN.reconnect_interval_s)
        out_datagrams(core)
        attempts += sum(r.addr == addr_of(200) for r in out_streams(core))
    assert 3 <= attempts <= 25  # expected 1000 / 100 = 10


def test_stats_carry_the_current_awareness_score() -> None:
    core = Core(LAN, name="a", addr=addr_of(0), rng=random.Random(4), now=0.0)
    core.bootstrap([MemberState("b", addr_of(1), 0)], now=0.0)
    core.receive_datagram(encode([Suspect("a", 0, "b")]), addr_of(1), now=0.5)  # we must refute: +1
    assert core.stats.awareness == core.local_health == 1


def test_a_user_broadcast_rides_at_most_once_per_datagram() -> None:
    """Regression: the share and the leftover were two takes, the second re-taking."""
    core = Core(Config.local(), name="a", addr=addr_of(0), rng=random.Random(5), now=0.0)
    core.bootstrap([MemberState("b", addr_of(1), 0), MemberState("c", addr_of(2), 0)], now=0.0)
    core.broadcast(b"hello", now=0.0)
    core.handle_timer(now=next_deadline(core))
    sent = out_datagrams(core)
    assert sent
    for datagram in sent:
        kinds = [type(m).__name__ for m in datagram.messages]
        assert kinds.count("UserBroadcast") <= 1


def test_user_broadcast_share_is_held_back_from_membership_news() -> None:
    config = attrs.evolve(LAN, user_broadcast_share=0.5)
    core = Core(config, name="a", addr=addr_of(0), rng=random.Random(6), now=0.0)
    news = [Alive(MemberState(f"member-{i:04d}", addr_of(i + 1), 0)) for i in range(300)]
    core.receive_datagram(encode(news), addr_of(1), now=0.0)
    payload = b"x" * 200
    for _ in range(5):
        core.broadcast(payload, now=0.0)
    core.send_user_message(addr_of(1), b"", now=0.0)  # any datagram carries piggyback
    (datagram,) = out_datagrams(core)
    user_bytes = sum(len(m.payload) for m in datagram.messages if isinstance(m, UserBroadcast))
    # Half the room is theirs even though membership news alone could fill the packet.
    assert user_bytes >= 3 * len(payload)
    assert sum(type(m).__name__ == "Alive" for m in datagram.messages) >= 20


def test_pending_bytes_track_the_queue() -> None:
    from swim.core.broadcasts import BroadcastQueue

    queue = BroadcastQueue()
    queue.queue("a", Ack(1), b"xxxx")
    queue.queue("b", Ack(2), b"yyyyyy")
    queue.queue("a", Ack(3), b"zz")  # replaces a
    assert queue.pending_bytes == 8
    encoded: list[bytes] = []
    messages: list[Message] = []
    queue.take(100, 1, encoded, messages)  # limit 1: both leave after one transmit
    assert queue.pending_bytes == 0 and len(queue) == 0


def test_a_stale_suspicion_of_a_left_member_is_answered_with_the_leave() -> None:
    core = Core(LAN, name="a", addr=addr_of(0), rng=random.Random(7), now=0.0)
    core.bootstrap([MemberState("b", addr_of(1), 2), MemberState("c", addr_of(2), 0)], now=0.0)
    core.receive_datagram(encode([Dead("b", 2, "b")]), addr_of(1), now=1.0)  # b left
    while core.news_pending("b"):  # its broadcast is sent its full count
        core.send_user_message(addr_of(2), b"", now=1.0)
    out_datagrams(core)
    core.receive_datagram(encode([Suspect("b", 2, "c")]), addr_of(2), now=2.0)  # c missed it
    assert core.member("b").status == MemberStatus.LEFT  # type: ignore[union-attr]
    assert core.news_pending("b") == 1
    out_datagrams(core)
    core.send_user_message(addr_of(2), b"", now=2.0)
    (datagram,) = out_datagrams(core)
    assert Dead("b", 2, "b") in datagram.messages


def test_leaves_are_not_lost_with_the_local_profile() -> None:
    """Regression: with retransmit limit 2, transmits spent on the leaver itself made a
    member miss the leave and later declare the leaver failed."""
    for seed in range(100, 112):
        router, cores = joined(5, seed=seed, config=Config.local())
        leaver = cores[4]
        leaver.leave(now=router.now)
        router.run_until_true(lambda: leaver.leave_complete, limit_s=10.0)  # noqa: B023
        router.crash(leaver)
        router.run_until(router.now + 20.0)
        for core in cores[:4]:
            state = core.member(leaver.name)
            assert state is None or state.status == MemberStatus.LEFT
            failed = [e for e in router.events[core.name] if isinstance(e, MemberFailed)]
            assert failed == [], f"seed {seed}: {core.name} declared the leaver failed"


def test_a_restarted_member_is_alive_at_its_seed_at_once() -> None:
    """Regression: with the local profile's small budget, the refutation's gossip could
    miss the very seed that told the joiner it was dead; the seed then held it dead
    until its next push-pull. The joiner now refutes straight to whoever accused it, and
    any member still holding it dead is told when it pings them."""
    for seed in range(200, 220):
        restart_through_seed(seed, Config.local())


def restart_through_seed(seed: int, config: Config) -> None:
    router, cores = joined(5, seed=seed, config=config)
    old = cores[3]
    router.crash(old)

    def gone_everywhere() -> bool:
        return all(v in (DEAD, None) for v in router.status_everywhere(old.name).values())

    router.run_until_true(gone_everywhere, limit_s=60.0)
    restarted = router.add(old.name, old.addr, config)
    restarted.join([cores[0].addr], now=router.now)

    def alive_at_seed() -> bool:
        state = cores[0].member(old.name)
        return state is not None and state.status == MemberStatus.ALIVE

    def alive_everywhere() -> bool:
        return all(
            v == MemberStatus.ALIVE for v in router.status_everywhere(old.name).values()
        )

    router.run_until_true(alive_at_seed, limit_s=0.1)
    # Members that gossip missed learn when the restarted member first pings them (its
    # ping names it; they answer with a rumour notice; it answers with its Alive): within
    # one round of its probes, (2n - 1) periods at worst, not a push-pull period.
    n = len(cores)
    router.run_until_true(alive_everywhere, limit_s=(2 * n - 1) * config.probe_interval_s + 1)


def test_a_ping_from_a_member_held_dead_is_answered_with_a_rumour_notice() -> None:
    core = Core(LAN, name="a", addr=addr_of(0), rng=random.Random(11), now=0.0)
    core.bootstrap([MemberState("b", addr_of(1), 0), MemberState("c", addr_of(2), 0)], now=0.0)
    core.receive_datagram(encode([Dead("b", 0, "c")]), addr_of(2), now=1.0)
    out_datagrams(core)
    core.receive_datagram(encode([Ping(7, "a", "b")]), addr_of(1), now=2.0)
    sent = [(d.addr, d.messages) for d in out_datagrams(core)]
    assert sent[0][1][0] == Ack(7, core.coordinate)
    assert (addr_of(1), Dead("b", 0, "a")) in [(a, m[0]) for a, m in sent]
    # From another address it is not b (or not b as we knew it): no notice.
    core.receive_datagram(encode([Ping(8, "a", "b")]), addr_of(5), now=4.0)
    assert all(isinstance(d.messages[0], Ack) for d in out_datagrams(core))


def test_a_stale_accusation_about_us_is_answered_with_our_alive() -> None:
    core = Core(LAN, name="a", addr=addr_of(0), rng=random.Random(12), now=0.0)
    core.bootstrap([MemberState("b", addr_of(1), 0)], now=0.0)
    core.receive_datagram(encode([Suspect("a", 0, "b")]), addr_of(1), now=1.0)  # refute: a is now 1
    first = out_datagrams(core)
    me = core.member("a")
    assert me is not None and me.incarnation == 1
    assert [d.addr for d in first if Alive(me) in d.messages] == [addr_of(1)]
    # Later someone still holds (and sends) the accusation we already refuted.
    core.receive_datagram(encode([Dead("a", 0, "b")]), addr_of(1), now=5.0)
    (answer,) = out_datagrams(core)
    assert answer.addr == addr_of(1) and Alive(me) in answer.messages
    assert core.stats.refutes == 1  # answered, not refuted again
