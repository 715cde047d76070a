"""Hostile and careless input to the core (issue 8's scenarios), as protocol transcripts.

Each test plays one attack or operator mistake through the public API of `Core` (raw
datagrams and stream frames from an address the attacker controls) and checks what
the cluster ends up believing. Encryption is the real answer to forgery; these rules
bound what a forgery can do when a cluster runs without keys.
"""

from __future__ import annotations

import random

import attrs
import pytest

from swim.core import Config, Core, JoinCompleted, MemberLeft, MemberStatus, NameConflict
from swim.core.codec import encode
from swim.core.messages import Alive, Dead, MemberState, Ping, PingReq, PushPull, Refusal
from tests.drain import out_datagrams, out_events
from tests.router import Router, addr_of

LAN = Config.lan()
ALIVE = MemberStatus.ALIVE
ATTACKER = ("10.9.9.9", 7946)


def joined(n: int, *, seed: int = 1, config: Config = LAN) -> tuple[Router, list[Core]]:
    router = Router(seed=seed)
    cores = router.cluster(n, config)
    router.run_until_true(lambda: router.converged([c.name for c in cores]), limit_s=10.0)
    for evs in router.events.values():
        evs.clear()
    return router, cores


def views_of(router: Router, name: str) -> set[tuple[MemberStatus, int] | None]:
    """How every live member other than `name` holds it: (status, incarnation)."""
    out: set[tuple[MemberStatus, int] | None] = set()
    for core in router.live():
        if core.name != name:
            state = core.member(name)
            out.add(None if state is None else (state.status, state.incarnation))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_forged_death_at_the_edge_of_the_window_leaves_no_view_split(seed: int) -> None:
    """A forged Dead(x, inc + window) makes x refute at inc + window + 1; members that
    only hear the refutation second-hand verify it with x and take it: one view."""
    router, cores = joined(6, seed=seed)
    x = cores[5]
    forged = encode([Dead(x.name, LAN.incarnation_window, "nobody")])
    for victim in cores[1:3]:  # two members believe the forgery, nobody else hears it
        router.inject(forged, ATTACKER, victim.addr)
    router.run_until_true(
        lambda: views_of(router, x.name) == {(ALIVE, LAN.incarnation_window + 1)},
        limit_s=4 * LAN.probe_interval_s,
    )
    # And later news of x (a metadata update) reaches everyone.
    x.update_metadata(b"v2", now=router.now)
    router.run_until_true(
        lambda: all(getattr(c.member(x.name), "meta", None) == b"v2" for c in cores if c is not x),
        limit_s=4 * LAN.probe_interval_s,
    )


def test_a_forged_huge_alive_from_a_third_party_is_dropped_and_verified() -> None:
    router, cores = joined(3)
    a, x = cores[0], cores[2]
    forged = encode([Alive(MemberState(x.name, x.addr, 2**40))])
    a.receive_datagram(forged, ATTACKER, now=router.now)
    assert a.stats.implausible_incarnation == 1
    assert a.member(x.name).incarnation == 0  # type: ignore[union-attr]
    # a asks x for its own word: our (older or equal) view of x, sent to x itself.
    verifications = [d for d in out_datagrams(a) if d.addr == x.addr]
    assert verifications and Alive(MemberState(x.name, x.addr, 0)) in verifications[0].messages


def test_push_pull_poisoning_is_capped() -> None:
    config = attrs.evolve(LAN, push_pull_new_max=100)
    core = Core(config, name="a", addr=addr_of(0), rng=random.Random(1), now=0.0)
    fakes = tuple(MemberState(f"fake-{i}", ("10.7.0.1", 10_000 + i), 0) for i in range(5000))
    reply = core.handle_stream_request(encode([PushPull(False, fakes)]), ATTACKER, now=0.0)
    assert reply is not None  # answered as usual...
    assert len(core.members()) == 1 + 100  # ...but at most push_pull_new_max taken
    assert core.stats.push_pull_new_capped == 4900


def test_the_member_table_is_bounded() -> None:
    config = attrs.evolve(LAN, max_members=50)
    core = Core(config, name="a", addr=addr_of(0), rng=random.Random(1), now=0.0)
    news = [Alive(MemberState(f"m{i}", ("10.7.0.1", 10_000 + i), 0)) for i in range(100)]
    core.receive_datagram(encode(news), ATTACKER, now=0.0)
    assert len(core.members()) == 50
    assert core.stats.table_full == 51


def test_ping_req_only_from_members_for_known_targets() -> None:
    router, cores = joined(3)
    helper, member, target = cores
    # A stranger asks the helper to ping an address of its choosing: refused.
    helper.receive_datagram(
        encode([PingReq(1, target.name, ("10.8.8.8", 9), True, "evil")]), ATTACKER,
        now=router.now,
    )
    # A member asks for a target at an address the helper does not know it by: refused.
    helper.receive_datagram(
        encode([PingReq(2, target.name, ("10.8.8.8", 9), True, member.name)]), member.addr,
        now=router.now,
    )
    # A stranger claiming a member's name from another address: refused.
    helper.receive_datagram(
        encode([PingReq(3, target.name, target.addr, True, member.name)]), ATTACKER,
        now=router.now,
    )
    assert helper.stats.ping_reqs_refused == 3
    assert not [d for d in out_datagrams(helper) if isinstance(d.messages[0], Ping)]
    # The real request is served.
    helper.receive_datagram(
        encode([PingReq(4, target.name, target.addr, True, member.name)]), member.addr,
        now=router.now,
    )
    pings = [d for d in out_datagrams(helper) if isinstance(d.messages[0], Ping)]
    assert [d.addr for d in pings] == [target.addr]


@pytest.mark.parametrize("through", [0, 1], ids=["through-the-holder", "through-another"])
def test_a_second_process_under_a_live_name_is_refused(through: int) -> None:
    router, cores = joined(3)
    holder = cores[0]
    impostor = router.add(holder.name, ("10.0.5.5", 7946), LAN)
    impostor.join([cores[through].addr], now=router.now)
    router.run_until(router.now + 10.0)
    # (The router keeps events by name, so holder and impostor share a list: the
    # impostor's join outcome is the JoinCompleted from that seed.)
    joins = [e for e in router.events[holder.name]
             if isinstance(e, JoinCompleted) and e.seed == cores[through].addr]
    assert len(joins) == 1  # refused once, and no retries: retrying cannot help
    assert joins[0].ok is False
    assert "held by a live member at 10.0.0.1:7946" in joins[0].refused
    assert impostor.join_rounds == 1
    assert [m.name for m in impostor.members()] == [holder.name]  # it learned nothing
    assert cores[through].stats.joins_refused == 1
    # Nobody took the impostor in, so its departure reaches nobody.
    impostor.leave(now=router.now)
    router.run_until(router.now + 10.0)
    for core in cores:
        assert not [e for e in router.events[core.name] if isinstance(e, MemberLeft)]
    me = holder.member(holder.name)
    assert me is not None
    assert views_of(router, holder.name) - {None} == {(ALIVE, me.incarnation)}
    if through == 0:
        conflicts = [e for e in router.events[holder.name] if isinstance(e, NameConflict)]
        assert [(e.name, e.addr) for e in conflicts] == [(holder.name, ("10.0.5.5", 7946))]


def test_refutes_against_a_name_conflict_are_rate_limited() -> None:
    """Two processes with one name used to refute each other thousands of times a
    second; now the holder outbids a conflicting address at most once per period."""
    router, cores = joined(3)
    holder = cores[0]
    other = ("10.0.5.5", 7946)
    t0 = router.now
    for k in range(400):  # 100 claims per second for 4 s, each outbidding the last
        me = holder.member(holder.name)
        assert me is not None
        claim = Alive(MemberState(holder.name, other, me.incarnation))
        holder.receive_datagram(encode([claim]), other, now=t0 + k * 0.01)
        out_datagrams(holder)
    assert holder.stats.refutes <= 5  # one per protocol period, not one per claim
    conflicts = [e for e in out_events(holder) if isinstance(e, NameConflict)]
    assert len(conflicts) == 1  # reported once


def test_join_refusal_names_the_holder() -> None:
    holder = Core(LAN, name="a", addr=addr_of(0), rng=random.Random(1), now=0.0)
    request = encode([PushPull(True, (MemberState("a", ("10.0.5.5", 7946), 0),))])
    reply = holder.handle_stream_request(request, ("10.0.5.5", 50_000), now=0.0)
    assert reply is not None and reply.messages == (Refusal("a", addr_of(0)),)
    assert holder.stats.joins_refused == 1


def test_a_real_jump_is_taken_once_the_member_confirms_it_in_its_own_word() -> None:
    w = LAN.incarnation_window
    a = Core(LAN, name="a", addr=addr_of(0), rng=random.Random(1), now=0.0)
    x = Core(LAN, name="x", addr=addr_of(1), rng=random.Random(2), now=0.0, incarnation=w + 1)
    a.bootstrap([MemberState("x", x.addr, 0)], now=0.0)
    x.bootstrap([MemberState("a", a.addr, 0)], now=0.0)
    # x's real refutation at w + 1 reaches a second-hand: too big a jump to take...
    a.receive_datagram(encode([Alive(MemberState("x", x.addr, w + 1))]), ATTACKER, now=1.0)
    assert a.member("x").incarnation == 0  # type: ignore[union-attr]
    (verify,) = [d for d in out_datagrams(a) if d.addr == x.addr]
    # ...so a asks x, and x answers in its own word, from its own address.
    x.receive_datagram(verify.data, a.addr, now=1.001)
    answers = [d for d in out_datagrams(x) if d.addr == a.addr]
    assert answers
    for d in answers:
        a.receive_datagram(d.data, x.addr, now=1.002)
    assert a.member("x").incarnation == w + 1  # type: ignore[union-attr]
