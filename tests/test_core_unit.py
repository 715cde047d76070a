"""Single-member transcripts: feed one Core explicit inputs at explicit times, read outputs.

Peers are simulated by hand: news arrives as encoded datagrams, probes are answered (or
not) by the test. These pin down exact timings the multi-member scenarios only bound.
"""

from __future__ import annotations

import random

import attrs
import pytest

from swim.core import Config, Core, MemberFailed, MemberStatus, ProtocolError, StreamKind
from swim.core.codec import encode
from swim.core.messages import (
    Ack,
    Address,
    Alive,
    Dead,
    MemberState,
    Message,
    Nack,
    Ping,
    PingReq,
    Suspect,
)
from swim.core.outputs import Datagram
from tests.drain import next_deadline, out_datagrams, out_events, out_streams

LAN = Config.lan()
ME: Address = ("10.0.0.1", 7946)


def peer(i: int) -> MemberState:
    return MemberState(f"peer-{i}", (f"10.0.1.{i}", 7946), 0)


def make_core(config: Config = LAN, *, peers: int = 0, seed: int = 0) -> Core:
    core = Core(config, name="me", addr=ME, rng=random.Random(seed), now=0.0)
    if peers:
        core.receive_datagram(encode([Alive(peer(i)) for i in range(1, peers + 1)]), ME, now=0.0)
    out_datagrams(core)
    out_events(core)
    return core


def run_timers(
    core: Core, until: float, *, ack_probes: bool = False, fail_streams: bool = True
) -> list[tuple[float, Datagram]]:
    """Fire every timer due up to `until`; returns (time, datagram) sent, in order.

    Streams are left for the caller (`streams_to_open`) unless `fail_streams`. With
    `ack_probes`, every peer answers every direct ping at once.
    """
    out: list[tuple[float, Datagram]] = []
    while (t := next_deadline(core)) <= until:
        core.handle_timer(now=t)
        if fail_streams:
            for req in out_streams(core):
                core.receive_stream_response(req.id, None, now=t)
        assert next_deadline(core) > t
        sent = out_datagrams(core)
        while sent:
            d = sent.pop(0)
            out.append((t, d))
            if ack_probes:
                for m in d.messages:
                    if isinstance(m, Ping):
                        core.receive_datagram(encode([Ack(m.seq)]), d.addr, now=t)
                        sent.extend(out_datagrams(core))
    return out


def next_probe(core: Core) -> tuple[float, Datagram]:
    """Fire timers until the core sends its next direct probe; (time, ping datagram)."""
    for _ in range(1000):
        t = next_deadline(core)
        core.handle_timer(now=t)
        sent = out_datagrams(core)
        for req in out_streams(core):
            core.receive_stream_response(req.id, None, now=t)
        pings = [d for d in sent if any(isinstance(m, Ping) for m in d.messages)]
        if pings:
            (ping,) = pings
            return t, ping
    raise AssertionError("no probe sent")


def ping_of(d: Datagram) -> Ping:
    (ping,) = [m for m in d.messages if isinstance(m, Ping)]
    return ping


def first_kinds(sent: list[tuple[float, Datagram]], kind: type) -> list[tuple[float, Datagram]]:
    return [(t, d) for t, d in sent if isinstance(d.messages[0], kind)]


# ------------------------------------------------------- regression: reap timer rounding


def test_reap_due_by_timer_is_done_by_handle_timer_despite_float_rounding() -> None:
    # Found by the partition scenario: since + 30 == now but now - 30 < since in floats,
    # so the reap was due by get_timer() and never done: the driver spun at one time.
    since = 15.185784623895879
    now = since + 30.0
    assert now - 30.0 < since  # the rounding that caused it
    core = make_core(peers=1)
    core.receive_datagram(encode([Dead("peer-1", 0, "x")]), ME, now=since)
    assert next_deadline(core) <= now
    core.handle_timer(now=now)
    assert core.member("peer-1") is None
    assert next_deadline(core) > now


# -------------------------------------------------- regression: push-pull to the dead


def test_periodic_push_pull_may_pick_a_recently_dead_member_but_not_a_left_one() -> None:
    core = make_core(peers=2)
    core.receive_datagram(
        encode([Dead("peer-1", 0, "x"), Dead("peer-2", 0, "peer-2")]), ME, now=0.0
    )
    assert core.member("peer-2").status == MemberStatus.LEFT  # type: ignore[union-attr]
    targets = []
    t = 0.0
    while t < 29.0:
        t = next_deadline(core)
        core.handle_timer(now=t)
        out_datagrams(core)
        for req in out_streams(core):
            if req.kind is StreamKind.PUSH_PULL:
                targets.append((t, req.addr))
            core.receive_stream_response(req.id, None, now=t)
    # The only candidate is the dead peer-1 (peer-2 left: it is not coming back).
    assert targets and {a for _, a in targets} == {peer(1).addr}
    assert all(when < 30.0 for when, _ in targets)


# ------------------------------------------------------------------------- probing


def test_probe_ping_then_ping_req_then_suspect_at_period_end() -> None:
    core = make_core(peers=4)
    t0, ping = next_probe(core)
    target = ping_of(ping).target
    sent = run_timers(core, t0 + LAN.probe_timeout_s)
    reqs = first_kinds(sent, PingReq)
    assert len(reqs) == 3  # k = indirect_probes helpers, none of them the target
    assert all(t == t0 + LAN.probe_timeout_s for t, _ in reqs)
    target_state = core.member(target)
    assert target_state is not None
    assert target_state.addr not in {d.addr for _, d in reqs}
    assert all(d.messages[0].nack for _, d in reqs)  # type: ignore[union-attr]
    assert core.member(target).status == MemberStatus.ALIVE  # type: ignore[union-attr]
    run_timers(core, t0 + LAN.probe_interval_s)
    assert core.member(target).status == MemberStatus.SUSPECT  # type: ignore[union-attr]
    assert core.stats.probe_failures == 1
    # No nack from any of the 3 helpers: the fault may be ours, awareness += 3.
    assert core.local_health == 3


def test_acked_probe_keeps_target_alive_and_lowers_awareness() -> None:
    core = make_core(peers=2)
    for inc in (0, 1):  # two refutes: two points against local health
        core.receive_datagram(encode([Suspect("me", inc, "peer-1")]), ("10.0.1.1", 7946), now=0.0)
    assert core.local_health == 2
    out_datagrams(core)
    t0, ping = next_probe(core)
    core.receive_datagram(encode([Ack(ping_of(ping).seq)]), ping.addr, now=t0 + 0.01)
    run_timers(core, t0 + 0.99)
    assert core.stats.probe_failures == 0 and core.local_health == 1
    assert all(m.status == MemberStatus.ALIVE for m in core.members())


def test_round_robin_probes_every_member_once_per_pass() -> None:
    core = make_core(peers=7)
    targets = []
    for _ in range(14):
        t, ping = next_probe(core)
        targets.append(ping_of(ping).target)
        core.receive_datagram(encode([Ack(ping_of(ping).seq)]), ping.addr, now=t + 0.001)
    # Two passes over a shuffled list: each pass names every member exactly once.
    everyone = [f"peer-{i}" for i in range(1, 8)]
    assert sorted(targets[:7]) == everyone
    assert sorted(targets[7:]) == everyone


def test_ping_for_another_name_is_not_acked() -> None:
    core = make_core()
    core.receive_datagram(encode([Ping(7, "someone-else")]), ("10.0.0.9", 1), now=1.0)
    assert out_datagrams(core) == []
    assert core.stats.unexpected == 1
    core.receive_datagram(encode([Ping(7, "me")]), ("10.0.0.9", 1), now=1.0)
    (ack,) = out_datagrams(core)
    assert ack.addr == ("10.0.0.9", 1) and ack.messages[0] == Ack(7, core.coordinate)


# ------------------------------------------------------------------------ API misuse


def test_caller_misuse_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Core(LAN, name="", addr=ME, rng=random.Random(0), now=0.0)
    with pytest.raises(ProtocolError):
        Core(LAN, name="x" * 256, addr=ME, rng=random.Random(0), now=0.0)
    with pytest.raises(ProtocolError):
        Core(LAN, name="a", addr=ME, rng=random.Random(0), now=0.0, meta=b"m" * 513)
    with pytest.raises(ValueError):
        Core(LAN, name="a", addr=("not-an-ip", 1), rng=random.Random(0), now=0.0)
    core = make_core()
    with pytest.raises(ProtocolError):
        core.broadcast(b"x" * 2000, now=0.0)
    with pytest.raises(ProtocolError):
        core.send_user_message(ME, b"x" * (64 * 1024 + 1), now=0.0)
    with pytest.raises(ProtocolError):
        core.receive_stream_response(12345, None, now=0.0)
    core.leave(now=0.0)
    with pytest.raises(ProtocolError):
        core.update_metadata(b"x", now=0.0)


def test_leave_alone_completes_at_once_and_stops_probing() -> None:
    core = make_core()
    core.leave(now=0.0)
    assert core.leave_complete
    assert core.member("me").status == MemberStatus.LEFT  # type: ignore[union-attr]


def test_leaving_member_does_not_refute_its_own_departure() -> None:
    core = make_core(peers=1)
    core.leave(now=0.0)
    core.receive_datagram(encode([Dead("me", 0, "peer-1")]), peer(1).addr, now=0.1)
    assert core.member("me").status == MemberStatus.LEFT  # type: ignore[union-attr]
    assert core.stats.refutes == 0


# ------------------------------------------------------------------- status transitions


def msgs_in(core: Core, *messages: Message, now: float = 1.0) -> None:
    core.receive_datagram(encode(list(messages)), ("10.0.9.9", 1), now=now)


@pytest.mark.parametrize(
    ("news", "expected"),
    [
        # (incarnation, status) after ALIVE@1 receives the news (SWIM precedence).
        (Alive(attrs.evolve(peer(1), incarnation=1)), (1, "ALIVE")),
        (Alive(attrs.evolve(peer(1), incarnation=2)), (2, "ALIVE")),
        (Suspect("peer-1", 0, "x"), (1, "ALIVE")),
        (Suspect("peer-1", 1, "x"), (1, "SUSPECT")),
        (Suspect("peer-1", 2, "x"), (2, "SUSPECT")),
        (Dead("peer-1", 0, "x"), (1, "ALIVE")),
        (Dead("peer-1", 1, "x"), (1, "DEAD")),
        (Dead("peer-1", 3, "x"), (3, "DEAD")),
        (Dead("peer-1", 1, "peer-1"), (1, "LEFT")),
    ],
)
def test_precedence_from_alive(news: Message, expected: tuple[int, str]) -> None:
    core = make_core()
    msgs_in(core, Alive(attrs.evolve(peer(1), incarnation=1)))
    msgs_in(core, news)
    state = core.member("peer-1")
    assert state is not None
    assert (state.incarnation, state.status.name) == expected


@pytest.mark.parametrize(
    ("news", "expected"),
    [
        (Alive(attrs.evolve(peer(1), incarnation=1)), (1, "DEAD")),
        (Alive(attrs.evolve(peer(1), incarnation=2)), (2, "ALIVE")),
        (Suspect("peer-1", 5, "x"), (1, "DEAD")),
        (Dead("peer-1", 5, "x"), (1, "DEAD")),
    ],
)
def test_dead_is_final_until_a_higher_alive(news: Message, expected: tuple[int, str]) -> None:
    core = make_core()
    msgs_in(core, Alive(attrs.evolve(peer(1), incarnation=1)), Dead("peer-1", 1, "x"))
    msgs_in(core, news)
    state = core.member("peer-1")
    assert state is not None
    assert (state.incarnation, state.status.name) == expected


def test_news_about_unknown_member_other_than_alive_is_ignored() -> None:
    core = make_core()
    msgs_in(core, Suspect("ghost", 3, "x"), Dead("ghost", 3, "x"))
    assert core.member("ghost") is None
    assert out_events(core) == []


def test_suspicion_times_out_into_failed_with_us_as_accuser() -> None:
    core = make_core(peers=1)  # n = 2: K = 0, timeout = min = 4 s at once
    msgs_in(core, Suspect("peer-1", 0, "peer-9"), now=10.0)
    out_events(core)
    run_timers(core, 13.9)
    assert core.member("peer-1").status == MemberStatus.SUSPECT  # type: ignore[union-attr]
    run_timers(core, 14.0)
    (failed,) = [e for e in out_events(core) if isinstance(e, MemberFailed)]
    assert failed.accuser == "me" and failed.at == 14.0
    assert core.stats.failures_declared == 1


def test_refute_raises_incarnation_above_the_accusation() -> None:
    core = make_core(peers=1)
    msgs_in(core, Suspect("me", 0, "peer-1"))
    assert core.member("me").incarnation == 1  # type: ignore[union-attr]
    msgs_in(core, Dead("me", 7, "peer-1"))
    assert core.member("me").incarnation == 8  # type: ignore[union-attr]
    assert core.member("me").status == MemberStatus.ALIVE  # type: ignore[union-attr]
    assert core.stats.refutes == 2
    # Alive about us that we did not announce (older process, forgery) is outbid too.
    msgs_in(core, Alive(MemberState("me", ("10.9.9.9", 1), 8)))
    assert core.member("me").incarnation == 9  # type: ignore[union-attr]
    assert core.member("me").addr == ME  # type: ignore[union-attr]


def test_nack_from_helper_is_counted() -> None:
    core = make_core(peers=4)
    t0, _ = next_probe(core)
    reqs = first_kinds(run_timers(core, t0 + LAN.probe_timeout_s), PingReq)
    seq = reqs[0][1].messages[0].seq  # type: ignore[union-attr]
    for _, d in reqs:
        core.receive_datagram(encode([Nack(seq)]), d.addr, now=t0 + 0.9)
    run_timers(core, t0 + 1.0)
    assert core.stats.nacks_received == 3
    # Every helper answered "target silent": the target is at fault, not us.
    assert core.local_health == 0


# --------------------------------------------------------------------- paper switches


def test_paper_presets_carry_the_papers_parameters() -> None:
    lifeguard, swim = Config.paper_lifeguard(), Config.paper_swim()
    assert (lifeguard.suspicion_mult, lifeguard.suspicion_max_timeout_mult) == (5, 6)
    assert lifeguard.suspicion_confirmations == 3
    assert lifeguard.nacks and lifeguard.awareness and lifeguard.buddy_system
    assert (swim.suspicion_mult, swim.suspicion_max_timeout_mult) == (5, 1)
    assert not (swim.nacks or swim.awareness or swim.dynamic_suspicion or swim.buddy_system)
    assert lifeguard.gossip_ticker and swim.gossip_ticker and swim.gossip_timer


def test_k_can_be_set_apart_from_the_suspicion_multiplier() -> None:
    config = attrs.evolve(LAN, suspicion_mult=4, suspicion_confirmations=3)
    core = make_core(config, peers=9)
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-2")]), ME, now=0.0)
    suspicion = core.membership.suspicion("peer-1")
    assert suspicion is not None and suspicion.k == 3  # not suspicion_mult - 2 = 2


def test_without_suspicion_a_failed_probe_declares_the_target_dead_at_once() -> None:
    core = make_core(attrs.evolve(LAN, suspicion=False), peers=2)
    t0, ping = next_probe(core)
    target = ping_of(ping).target
    run_timers(core, t0 + LAN.probe_interval_s)
    state = core.member(target)
    assert state is not None and state.status == MemberStatus.DEAD
    (failed,) = [e for e in out_events(core) if isinstance(e, MemberFailed)]
    assert failed.member.name == target and core.stats.suspicions == 0


def test_uniform_targets_are_random_not_one_per_member_per_pass() -> None:
    core = make_core(attrs.evolve(LAN, probe_selection="uniform"), peers=7)
    targets = []
    for _ in range(70):
        t, ping = next_probe(core)
        targets.append(ping_of(ping).target)
        core.receive_datagram(encode([Ack(ping_of(ping).seq)]), ping.addr, now=t + 0.001)
    passes = [sorted(targets[i:i + 7]) for i in range(0, 70, 7)]
    everyone = [f"peer-{i}" for i in range(1, 8)]
    assert any(p != everyone for p in passes)  # round robin would give `everyone` each time
    assert set(targets) == set(everyone)


def test_synchronous_rounds_put_every_member_on_one_grid() -> None:
    config = attrs.evolve(LAN, synchronous_rounds=True)
    starts = []
    for seed in range(5):
        core = Core(config, name="me", addr=ME, rng=random.Random(seed), now=0.3)
        core.bootstrap([peer(1)], now=0.3)
        t, _ = next_probe(core)
        starts.append(t)
    assert starts == [1.0] * 5


def test_the_gossip_ticker_holds_news_until_the_next_tick() -> None:
    def first_gossip_after_news(ticker: bool) -> float:
        config = attrs.evolve(LAN, gossip_ticker=ticker, push_pull=False)
        core = make_core(config, peers=3)
        while core.news_pending():  # quiet: everything it knew has been sent
            core.send_user_message(("10.0.9.9", 1), b"", now=0.0)
        out_datagrams(core)
        run_timers(core, 5.099)  # every timer up to the moment the news arrives
        core.receive_datagram(encode([Alive(peer(4))]), ME, now=5.1)  # news arrives
        t = max(next_deadline(core), 5.1)  # a driver runs what is overdue at once
        core.handle_timer(now=t)
        sent = [(t, d) for d in out_datagrams(core)] + run_timers(core, 6.0)
        # Gossip packets carry news only (no probe message first).
        return min(t for t, d in sent if d.messages[0] == Alive(peer(4)))

    assert first_gossip_after_news(ticker=False) == 5.1  # at once
    assert first_gossip_after_news(ticker=True) > 5.1  # at the ticker's next tick


def test_awareness_can_scale_the_probe_timeout_too() -> None:
    config = attrs.evolve(LAN, awareness_probe_timeout=True)
    core = make_core(config, peers=3)
    for inc in (0, 1):  # local health 2
        core.receive_datagram(encode([Suspect("me", inc, "peer-1")]), ("10.0.1.1", 7946), now=0.0)
    out_datagrams(core)
    t0, _ = next_probe(core)
    sent = run_timers(core, t0 + 3 * LAN.probe_interval_s)
    (first_req,) = [t for t, d in sent if isinstance(d.messages[0], PingReq)][:1]
    assert first_req == pytest.approx(t0 + 3 * LAN.probe_timeout_s)  # timeout x (2 + 1)
