"""Lifeguard's extensions, each shown working and each shown off when its switch is off.

Local health (awareness), the dynamic suspicion timeout with independent confirmations,
the buddy system, nacks, and the feature switches of `Config` (`plain_swim()`).
"""

from __future__ import annotations

import itertools
import random

import attrs
import pytest

from swim.core import Config, Core, MemberAlive, MemberFailed, StreamKind
from swim.core.codec import decode_untrusted, encode
from swim.core.messages import Ack, Alive, MemberState, Nack, Ping, PingReq, Suspect
from swim.core.timing import remaining_suspicion_time_s
from tests.drain import next_deadline, out_datagrams, out_events, out_streams
from tests.router import Router
from tests.test_core_unit import ME, make_core, next_probe, ping_of, run_timers

LAN = Config.lan()


# --------------------------------------------------------------- local health (LHA)


def test_awareness_rises_when_own_traffic_is_lost_and_recovers() -> None:
    router = Router(seed=11)
    cores = router.cluster(6, LAN)
    router.run_until(5.0)
    sick = cores[2]
    assert sick.local_health == 0
    # Everything sick sends is lost: its pings, its ping-reqs (so no helper can nack)
    # and its TCP fallback pings. Each failed probe costs it 3 missing nacks.
    router.drop = lambda src, dst, msgs: src == sick.addr
    router.run_until_true(
        lambda: sick.local_health == LAN.awareness_max_multiplier - 1, limit_s=30.0
    )
    # Healthy members are untouched: their probes of each other succeed.
    assert all(c.local_health <= 1 for c in cores if c is not sick)
    # At the top score the probe interval is T * max_multiplier.
    start = router.now
    router.run_until(start + 40.0)
    probe_times = [
        t for t, src, _, data in router.trace
        if src == sick.addr and t > start
        and any(isinstance(m, Ping) for m in decode_untrusted(data))
    ]
    gaps = [b - a for a, b in itertools.pairwise(probe_times)]
    assert gaps and all(g == pytest.approx(8 * LAN.probe_interval_s) for g in gaps)
    router.heal()
    router.run_until_true(lambda: sick.local_health == 0, limit_s=60.0)


def test_probe_interval_scales_with_local_health() -> None:
    core = make_core(peers=3)
    # Seven accusations about ourselves: each refute costs a point (score 7 = max - 1).
    for inc in range(7):
        core.receive_datagram(encode([Suspect("me", inc, "peer-1")]), ME, now=0.0)
    assert core.local_health == 7
    times = []
    for _ in range(9):
        t, ping = next_probe(core)
        times.append(t)
        core.receive_datagram(encode([Ack(ping_of(ping).seq)]), ping.addr, now=t + 0.01)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    # The interval is T * (score + 1) at each probe's start; each ack lowers the score.
    assert gaps == [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert core.local_health == 0


def test_awareness_switch_off_keeps_interval_and_score() -> None:
    core = make_core(attrs.evolve(LAN, awareness=False), peers=3)
    for inc in range(7):
        core.receive_datagram(encode([Suspect("me", inc, "peer-1")]), ME, now=0.0)
    assert core.local_health == 0
    times = [next_probe(core)[0] for _ in range(6)]  # none acked: all fail
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [1.0] * 5
    assert core.local_health == 0


def test_failed_probe_without_helpers_costs_one_point() -> None:
    core = make_core(peers=1)  # nobody to ask for indirect probes, so no nacks expected
    next_probe(core)
    next_probe(core)
    assert core.stats.probe_failures == 1 and core.local_health == 1


# ----------------------------------------------------- suspicion with confirmations


def suspicion_core(config: Config = LAN) -> Core:
    core = make_core(config, peers=9)  # n = 10: min 4 s, max 24 s, K = 2
    run_timers(core, 10.0, ack_probes=True)  # peers answer: only peer-1 is accused
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-2")]), ME, now=10.0)
    out_events(core)
    return core


def failed_at(core: Core, until: float) -> float | None:
    """When peer-1 was declared failed, if it was by `until`."""
    run_timers(core, until, ack_probes=True)
    failed = [
        e for e in out_events(core)
        if isinstance(e, MemberFailed) and e.member.name == "peer-1"
    ]
    return failed[0].at if failed else None


def test_suspicion_timeout_without_confirmations_is_the_maximum() -> None:
    core = suspicion_core()
    assert failed_at(core, 33.99) is None
    assert failed_at(core, 34.0) == 34.0


def test_suspicion_timeout_shrinks_with_each_independent_confirmation() -> None:
    core = suspicion_core()
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-3")]), ME, now=11.0)
    # Duplicates and the first accuser are not independent confirmations.
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-3")]), ME, now=11.5)
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-2")]), ME, now=11.5)
    one = 10.0 + remaining_suspicion_time_s(1, 2, 0.0, 4.0, 24.0)
    assert one == pytest.approx(10.0 + 24.0 - 20.0 * 0.6309297535714574)
    assert next_deadline(core) <= one
    assert failed_at(core, one - 0.01) is None
    core2 = suspicion_core()
    core2.receive_datagram(encode([Suspect("peer-1", 0, "peer-3")]), ME, now=11.0)
    core2.receive_datagram(encode([Suspect("peer-1", 0, "peer-4")]), ME, now=12.0)
    assert failed_at(core2, 14.0) == 14.0  # K confirmations: the minimum, 4 s
    assert failed_at(core, one) == pytest.approx(one)


def test_confirmation_after_the_new_deadline_fires_at_once() -> None:
    core = suspicion_core()
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-3")]), ME, now=11.0)
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-4")]), ME, now=20.0)  # 10 + 4 < 20
    assert next_deadline(core) <= 20.0
    core.handle_timer(now=20.0)
    assert [e.at for e in out_events(core) if isinstance(e, MemberFailed)] == [20.0]


def test_first_k_confirmations_are_regossiped() -> None:
    core = suspicion_core()

    def gossiped_suspects(now: float) -> set[str]:
        sent = run_timers(core, now, ack_probes=True)
        return {
            m.accuser for _, d in sent for m in d.messages
            if isinstance(m, Suspect) and m.name == "peer-1"
        }

    assert gossiped_suspects(10.9) == {"peer-2"}
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-3")]), ME, now=11.0)
    assert gossiped_suspects(11.9) == {"peer-3"}
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-4")]), ME, now=12.0)
    assert gossiped_suspects(12.9) == {"peer-4"}
    core.receive_datagram(encode([Suspect("peer-1", 0, "peer-5")]), ME, now=13.0)
    assert "peer-5" not in gossiped_suspects(13.5)  # beyond K: not news any more


def test_dynamic_suspicion_off_uses_the_minimum_whatever_the_confirmations() -> None:
    core = suspicion_core(attrs.evolve(LAN, dynamic_suspicion=False))
    assert failed_at(core, 13.99) is None
    assert failed_at(core, 14.0) == 14.0


# ------------------------------------------------------------------------ buddy system


def pair(config: Config) -> tuple[Core, Core]:
    a = Core(config, name="a", addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0)
    b = Core(config, name="b", addr=("10.0.0.2", 7946), rng=random.Random(2), now=0.0)
    a.receive_datagram(encode([Alive(MemberState("b", b.addr, 0))]), b.addr, now=0.0)
    b.receive_datagram(encode([Alive(MemberState("a", a.addr, 0))]), a.addr, now=0.0)
    for c in (a, b):
        out_datagrams(c)
        out_events(c)
    return a, b


@pytest.mark.parametrize("buddy", [True, False])
def test_buddy_system_lets_the_suspect_refute_at_first_contact(buddy: bool) -> None:
    a, b = pair(attrs.evolve(LAN, buddy_system=buddy, gossip_timer=False))
    a.receive_datagram(encode([Suspect("b", 0, "x")]), ("10.0.0.9", 1), now=0.0)
    out_datagrams(a)
    t, ping = next_probe(a)
    assert ping.addr == b.addr
    assert (ping.messages[:2] == (Suspect("b", 0, "a"), ping_of(ping))) is buddy
    # The buddy system matters once the suspicion's broadcast has been sent its full
    # count (or did not fit): send datagrams elsewhere until it has been.
    for _ in range(100):
        if not a.news_pending("b"):
            break
        a.send_user_message(("10.0.0.9", 1), b"", now=t)
    assert not a.news_pending("b")
    out_datagrams(a)
    t, ping = next_probe(a)
    assert ping.addr == b.addr
    b.receive_datagram(ping.data, a.addr, now=t)
    (ack,) = out_datagrams(b)
    assert isinstance(ack.messages[0], Ack)
    refuted = Alive(MemberState("b", b.addr, 1))
    assert (refuted in ack.messages) is buddy
    a.receive_datagram(ack.data, b.addr, now=t + 0.001)
    alive_again = [e for e in out_events(a) if isinstance(e, MemberAlive)]
    assert bool(alive_again) is buddy
    assert b.stats.refutes == (1 if buddy else 0)


# ------------------------------------------------------------------------------ nacks


def helper_with_request(config: Config, *, nack: bool) -> tuple[Core, Ping]:
    """A helper that received a ping-req for peer-2, and the ping it sent peer-2."""
    helper = make_core(config, peers=2)
    req = PingReq(77, "peer-2", ("10.0.1.2", 7946), nack, "peer-1")
    helper.receive_datagram(encode([req]), ("10.0.1.1", 7946), now=5.0)
    (ping,) = out_datagrams(helper)
    assert ping.addr == ("10.0.1.2", 7946) and isinstance(ping.messages[0], Ping)
    return helper, ping.messages[0]


def test_helper_nacks_when_target_silent() -> None:
    helper, _ = helper_with_request(LAN, nack=True)
    sent = [(t, d) for t, d in run_timers(helper, 5.5) if isinstance(d.messages[0], Nack)]
    assert [(t, d.addr, d.messages[0]) for t, d in sent] == [
        (5.0 + 0.8 * LAN.probe_timeout_s, ("10.0.1.1", 7946), Nack(77))
    ]


def test_helper_does_not_nack_unless_asked() -> None:
    helper, _ = helper_with_request(LAN, nack=False)
    assert not [d for _, d in run_timers(helper, 6.0) if isinstance(d.messages[0], Nack)]


def test_helper_relays_ack_and_then_sends_no_nack() -> None:
    helper, ping = helper_with_request(LAN, nack=True)
    helper.receive_datagram(encode([Ack(ping.seq)]), ("10.0.1.2", 7946), now=5.1)
    (relayed,) = out_datagrams(helper)
    assert relayed.addr == ("10.0.1.1", 7946) and relayed.messages[0] == Ack(77)
    assert not [d for _, d in run_timers(helper, 6.0) if isinstance(d.messages[0], Nack)]


def test_requester_asks_for_nacks_only_with_the_switch_on() -> None:
    for nacks in (True, False):
        core = make_core(attrs.evolve(LAN, nacks=nacks), peers=4)
        t0, _ = next_probe(core)
        reqs = [
            d.messages[0] for _, d in run_timers(core, t0 + LAN.probe_timeout_s)
            if isinstance(d.messages[0], PingReq)
        ]
        assert len(reqs) == 3 and all(r.nack is nacks for r in reqs)
        run_timers(core, t0 + LAN.probe_interval_s)
        # Nobody nacked: with nacks on that is 3 missing nacks, off a flat +1.
        assert core.local_health == (3 if nacks else 1)


# ------------------------------------------------------------------ other switches


def count_streams(config: Config, until: float, *, ack_probes: bool = False
                  ) -> dict[StreamKind, int]:
    core = make_core(config, peers=4)
    counts = dict.fromkeys(StreamKind, 0)
    while (t := next_deadline(core)) <= until:
        run_timers(core, t, ack_probes=ack_probes, fail_streams=False)
        for req in out_streams(core):
            counts[req.kind] += 1
            core.receive_stream_response(req.id, None, now=t)
    return counts


def test_tcp_fallback_ping_switch() -> None:
    assert count_streams(LAN, 3.0)[StreamKind.PING] > 0
    assert count_streams(attrs.evolve(LAN, tcp_fallback_ping=False), 3.0)[StreamKind.PING] == 0


def test_push_pull_switch() -> None:
    # Healthy peers: one exchange per push_pull_interval_s (the first one staggered).
    assert count_streams(LAN, 61.0, ack_probes=True)[StreamKind.PUSH_PULL] == 2
    off = attrs.evolve(LAN, push_pull=False)
    assert count_streams(off, 61.0, ack_probes=True)[StreamKind.PUSH_PULL] == 0


@pytest.mark.parametrize("gossip_timer", [True, False])
def test_gossip_timer_switch(gossip_timer: bool) -> None:
    core = make_core(attrs.evolve(LAN, gossip_timer=gossip_timer), peers=4)
    core.broadcast(b"news", now=0.0)
    sent = run_timers(core, 0.5)
    news_only = [d for _, d in sent if not isinstance(d.messages[0], Ping | PingReq)]
    assert bool(news_only) is gossip_timer


def test_plain_swim_turns_every_extension_off() -> None:
    plain = LAN.plain_swim()
    assert not (
        plain.nacks or plain.awareness or plain.dynamic_suspicion or plain.buddy_system
        or plain.gossip_timer or plain.tcp_fallback_ping
    )
    # Timing is unchanged.
    assert attrs.evolve(
        plain, nacks=True, awareness=True, dynamic_suspicion=True, buddy_system=True,
        gossip_timer=True, tcp_fallback_ping=True,
    ) == LAN
