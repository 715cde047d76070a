"""`Membership` on its own: the precedence table walked row by row, and the `Effects`
each input returns (the table touches nothing outside itself)."""

from __future__ import annotations

import random

import attrs
import pytest

from swim.core import Config, Effects, MemberFailed, MemberJoined, MemberLeft
from swim.core.events import MemberAlive, MemberSuspected, MemberUpdated
from swim.core.membership import Membership
from swim.core.messages import Alive, Dead, MemberState, MemberStatus, Suspect
from swim.core.precedence import PRECEDENCE, NewsKind, Order, Transition

LAN = Config.lan()
ME = MemberState("me", ("10.0.0.1", 7946), 0)
PEER_ADDR = ("10.0.0.2", 7946)
HELD_INC = 5
INCS = {Order.OLDER: HELD_INC - 1, Order.SAME: HELD_INC, Order.NEWER: HELD_INC + 1}


def table_with(status: MemberStatus | None) -> Membership:
    """Our table, holding `peer` at incarnation 5 with `status` (None: not at all)."""
    m = Membership.create(LAN, ME, rng=random.Random(0))
    # Enough others that Lifeguard's K is not 0 (so confirmations count).
    m.bootstrap([MemberState(f"other-{i}", (f"10.0.1.{i}", 7946), 0) for i in range(8)], 0.0)
    if status is not None:
        m.bootstrap([MemberState("peer", PEER_ADDR, HELD_INC, MemberStatus.ALIVE)], 0.0)
        if status == MemberStatus.SUSPECT:
            m.apply_suspect(Suspect("peer", HELD_INC, "x"), 0.0)
        elif status == MemberStatus.DEAD:
            m.apply_dead(Dead("peer", HELD_INC, "x"), 0.0)
        elif status == MemberStatus.LEFT:
            m.apply_dead(Dead("peer", HELD_INC, "peer"), 0.0)
        held = m.get("peer")
        assert held is not None and held.status == status
    return m


def news_for(kind: NewsKind, inc: int) -> Alive | Suspect | Dead:
    if kind is NewsKind.ALIVE:
        return Alive(MemberState("peer", PEER_ADDR, inc))
    if kind is NewsKind.SUSPECT:
        return Suspect("peer", inc, "accuser")
    return Dead("peer", inc, "accuser")


#: The status the peer has after each transition.
AFTER = {
    Transition.ADD: MemberStatus.ALIVE,
    Transition.REVIVE: MemberStatus.ALIVE,
    Transition.REFUTED: MemberStatus.ALIVE,
    Transition.UPDATE: MemberStatus.ALIVE,
    Transition.SUSPECT: MemberStatus.SUSPECT,
    Transition.CONFIRM: MemberStatus.SUSPECT,
    Transition.FAIL: MemberStatus.DEAD,
}
#: The event each transition raises (none for the others).
EVENT = {
    Transition.ADD: MemberJoined,
    Transition.REVIVE: MemberJoined,
    Transition.REFUTED: MemberAlive,
    Transition.SUSPECT: MemberSuspected,
    Transition.FAIL: MemberFailed,
}


def test_the_table_covers_every_kind_status_and_order() -> None:
    statuses: list[MemberStatus | None] = [None, *MemberStatus]
    assert set(PRECEDENCE) == {(k, s, o) for k in NewsKind for s in statuses for o in Order}


@pytest.mark.parametrize(("row", "transition"), sorted(PRECEDENCE.items(), key=str), ids=str)
def test_each_row_of_the_precedence_table_is_what_membership_does(
    row: tuple[NewsKind, MemberStatus | None, Order], transition: Transition
) -> None:
    kind, status, order = row
    m = table_with(status)
    before = m.get("peer")
    news = news_for(kind, INCS[order])
    fx = m.apply(news, 1.0)
    after = m.get("peer")
    if transition in (Transition.IGNORE, Transition.REGOSSIP, Transition.NOTIFY):
        assert after == before
        assert fx.events == []
        if transition is Transition.IGNORE:
            assert fx == Effects()
        elif transition is Transition.REGOSSIP:
            assert before is not None
            accuser = "peer" if before.status == MemberStatus.LEFT else "me"
            assert fx.gossip == [(Dead("peer", HELD_INC, accuser), True)]
        else:
            assert before is not None
            assert [addr for addr, _ in fx.notices] == [PEER_ADDR]
        return
    assert after is not None and after.status == AFTER[transition]
    if transition is Transition.CONFIRM:
        suspicion = m.suspicion("peer")
        assert suspicion is not None and suspicion.confirmations == 1
        assert fx.gossip == [(news, False)]
        return
    if transition is Transition.UPDATE:
        assert fx.events == []  # same metadata: nothing for the application
    else:
        (event,) = fx.events
        assert isinstance(event, EVENT[transition])
    # Accepted news is gossiped on, as it came.
    assert fx.gossip == [(news, False)]


def test_a_leave_is_left_not_failed() -> None:
    m = table_with(MemberStatus.ALIVE)
    fx = m.apply_dead(Dead("peer", HELD_INC, "peer"), 1.0)
    (event,) = fx.events
    assert isinstance(event, MemberLeft)
    assert m.get("peer").status == MemberStatus.LEFT  # type: ignore[union-attr]


def test_an_update_with_new_metadata_is_reported() -> None:
    m = table_with(MemberStatus.ALIVE)
    fx = m.apply_alive(MemberState("peer", PEER_ADDR, HELD_INC + 1, meta=b"v2"), 1.0)
    (event,) = fx.events
    assert isinstance(event, MemberUpdated) and event.member.meta == b"v2"


def test_news_about_ourselves_is_refuted_and_owed_to_the_sender() -> None:
    m = Membership.create(LAN, ME, rng=random.Random(0))
    fx = m.apply_suspect(Suspect("me", 0, "peer"), 1.0)
    assert fx.refutes == 1 and fx.owe_alive
    assert fx.gossip == [(Alive(attrs.evolve(ME, incarnation=1)), False)]
    assert m.local.incarnation == 1
    # An accusation we already refuted: only owed an answer, no new refute.
    fx = m.apply_dead(Dead("me", 0, "peer"), 2.0)
    assert fx == Effects(owe_alive=True)


def test_an_implausible_jump_is_dropped_and_counted() -> None:
    m = table_with(MemberStatus.ALIVE)
    fx = m.apply_dead(Dead("peer", HELD_INC + LAN.incarnation_window + 1, "x"), 1.0)
    assert fx == Effects(implausible_incarnation=1)
    assert m.get("peer").status == MemberStatus.ALIVE  # type: ignore[union-attr]


def test_a_live_name_at_another_address_is_a_conflict() -> None:
    m = table_with(MemberStatus.ALIVE)
    fx = m.apply_alive(MemberState("peer", ("10.0.0.3", 7946), HELD_INC + 1), 1.0)
    assert fx == Effects(name_conflicts=1)


def test_a_suspicion_times_out_into_a_declared_failure() -> None:
    m = table_with(MemberStatus.SUSPECT)
    deadline = m.next_deadline()
    assert m.handle_timers(deadline - 0.001) == Effects()
    fx = m.handle_timers(deadline)
    assert fx.failures_declared == 1
    (event,) = fx.events
    assert isinstance(event, MemberFailed) and event.accuser == "me"
    assert fx.gossip == [(Dead("peer", HELD_INC, "me"), False)]


def test_a_reaped_member_is_forgotten_and_kept_as_a_tombstone() -> None:
    m = table_with(MemberStatus.DEAD)
    fx = m.handle_timers(1.0 + LAN.gossip_to_the_dead_s)
    assert fx.forget == ["peer"]
    assert m.get("peer") is None and m.tombstone("peer") is not None
    assert "peer" not in m.probe_order()


def test_membership_draws_only_from_its_rng() -> None:
    """Two tables with equally seeded rngs make the same choices."""
    def run(seed: int) -> list[str]:
        m = Membership.create(LAN, ME, rng=random.Random(seed))
        m.bootstrap([MemberState(f"p{i}", (f"10.0.1.{i}", 7946), 0) for i in range(20)], 0.0)
        picks = [s.name for s in m.sample(3, exclude="", live_only=True)]
        targets = [m.next_probe_target() for _ in range(25)]
        return picks + [t.name for t in targets if t is not None]

    assert run(4) == run(4)
    assert run(4) != run(5)
