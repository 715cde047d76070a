"""The stable-view mode on the real core, over the test router: joins, crashes, leave,
readmission hysteresis and catching up, with one `ViewChanged` per view change."""

from __future__ import annotations

import attrs
import pytest

from swim.agent import output
from swim.core import Config, Core, MemberFailed, MemberJoined, MemberStatus, MemberSuspected
from swim.core.events import ViewChanged
from tests.router import Router, addr_of, name_of

CONFIG = Config.stable_views(Config.local(), join_after_s=0.5)


def views(cores: list[Core]) -> set[tuple[str, ...]]:
    out = set()
    for c in cores:
        assert c.stable is not None
        conf = c.stable.configuration
        out.add(() if conf is None else conf.members)
    return out


def view_ids(cores: list[Core]) -> set[int]:
    out = set()
    for c in cores:
        assert c.stable is not None and c.stable.configuration is not None
        out.add(c.stable.configuration.id)
    return out


def converged_cluster(router: Router, n: int, config: Config = CONFIG) -> list[Core]:
    cores = [router.add(name_of(i), addr_of(i), config) for i in range(n)]
    table = [c.membership.local for c in cores]
    for c in cores:
        c.bootstrap(table, now=router.now)
    return cores


def partitioned_7_3(
    router: Router, config: Config
) -> tuple[list[Core], list[Core], list[Core]]:
    """Ten converged members, partitioned 7 | 3 at 2 s: (all, the majority, the minority)."""
    cores = converged_cluster(router, 10, config)
    router.run_until(2.0)
    big, small = cores[:7], cores[7:]
    router.partition(big, small)
    return cores, big, small


def members_of(cores: list[Core]) -> tuple[str, ...]:
    """The view holding exactly `cores`."""
    return tuple(sorted(c.name for c in cores))


def test_the_default_mode_is_swim() -> None:
    assert Config.lan().membership_mode == "swim"
    core = Core(Config.lan(), name="a", addr=addr_of(0), rng=__import__("random").Random(1),
                now=0.0)
    assert core.stable is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_members_joining_one_by_one_end_in_one_identical_view(seed: int) -> None:
    router = Router(seed=seed)
    cores = router.cluster(6, CONFIG)
    names = tuple(sorted(c.name for c in cores))
    router.run_until_true(lambda: views(cores) == {names}, limit_s=120)
    assert len(view_ids(cores)) == 1
    for c in cores:
        # The application sees view changes, not SWIM's per-member events.
        assert router.events_of(c.name, MemberJoined) == []
        changes = router.events_of(c.name, ViewChanged)
        assert changes and changes[-1].members == names


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_two_crashes_are_removed_in_one_view_change(seed: int) -> None:
    router = Router(seed=seed)
    cores = converged_cluster(router, 16)
    router.run_until(5.0)
    gone = {cores[3].name, cores[11].name}
    router.crash(cores[3])
    router.crash(cores[11])
    live = router.live()
    want = tuple(sorted(c.name for c in live))
    took = router.run_until_true(lambda: views(live) == {want}, limit_s=60)
    assert took < 30
    assert len(view_ids(live)) == 1
    for c in live:
        changes = router.events_of(c.name, ViewChanged)
        assert len(changes) == 1, (seed, c.name, changes)
        assert set(changes[0].removed) == gone and changes[0].joined == ()
        # Decided it (fast path: 14 >= 12 votes; slow: a majority after the timeout),
        # or caught up from a member that did: once.
        assert c.stable is not None
        counters = c.stable.counters
        assert counters.fast_decisions + counters.slow_decisions + counters.views_adopted == 1
        assert router.events_of(c.name, MemberFailed) == []
        assert router.events_of(c.name, MemberSuspected) == []
        # Read-outs show the view's statuses (SWIM's table alone never suspected them).
        statuses = {m.name: m.status for m in c.members()}
        assert {n for n, st in statuses.items() if st == MemberStatus.DEAD} == gone
        assert c.member(cores[3].name) is not None
        assert c.member(cores[3].name).status == MemberStatus.DEAD  # type: ignore[union-attr]


def test_a_graceful_leave_is_one_view_change() -> None:
    router = Router(seed=5)
    cores = converged_cluster(router, 8)
    router.run_until(3.0)
    leaver = cores[2]
    leaver.leave(now=router.now)
    rest = [c for c in cores if c is not leaver]
    want = tuple(sorted(c.name for c in rest))
    took = router.run_until_true(lambda: views(rest) == {want}, limit_s=30)
    assert took < 5  # no probe has to fail: the leaver's own alert decides it
    for c in rest:
        (change,) = router.events_of(c.name, ViewChanged)
        assert change.removed == (leaver.name,)


def test_a_removed_member_is_readmitted_only_after_staying_reachable() -> None:
    config = Config.stable_views(Config.local(), readmit_after_s=20.0)
    router = Router(seed=6)
    cores = converged_cluster(router, 10, config)
    router.run_until(2.0)
    flapper = cores[4]
    everyone = tuple(sorted(c.name for c in cores))
    without = tuple(n for n in everyone if n != flapper.name)
    others = [c for c in cores if c is not flapper]
    router.drop = lambda src, dst, msgs: dst == flapper.addr  # ingress dropped
    router.run_until_true(lambda: views(others) == {without}, limit_s=60)
    healed_at = router.now
    router.drop = lambda src, dst, msgs: False
    # The flapper learns it was removed, and waits outside for the hysteresis.
    router.run_until_true(lambda: views([flapper]) == {without}, limit_s=30)
    router.run_until(healed_at + 15.0)
    assert views(cores) == {without}
    took = router.run_until_true(lambda: views(cores) == {everyone}, limit_s=60)
    assert healed_at + 20.0 <= router.now <= healed_at + 20.0 + took + 1
    for c in others:
        changes = router.events_of(c.name, ViewChanged)
        assert [ch.removed for ch in changes] == [(flapper.name,), ()]
        assert changes[-1].joined == (flapper.name,)


def test_a_member_that_missed_the_votes_catches_up_by_digest() -> None:
    router = Router(seed=7)
    cores = converged_cluster(router, 10)
    router.run_until(2.0)
    late = cores[6]
    router.crash(cores[1])
    # `late` hears no votes; everything else reaches it.
    router.drop = lambda src, dst, msgs: dst == late.addr and any(
        type(m).__name__ == "StableVote" for m in msgs)
    live = router.live()
    want = tuple(sorted(c.name for c in live))
    others = [c for c in live if c is not late]
    router.run_until_true(lambda: views(others) == {want}, limit_s=60)
    router.run_until_true(lambda: views([late]) == {want}, limit_s=30)
    assert late.stable is not None and late.stable.counters.views_adopted == 1
    (change,) = router.events_of(late.name, ViewChanged)
    assert change.removed == (cores[1].name,)


def test_stable_parameters_are_checked_when_the_config_is_built() -> None:
    with pytest.raises(ValueError, match="H must be"):
        Config.stable_views(h=11)
    with pytest.raises(ValueError, match="membership_mode"):
        attrs.evolve(Config.lan(), membership_mode="rapid")


def test_the_agent_prints_one_record_per_view_change() -> None:
    event = ViewChanged(config_id=7, epoch=3, members=("a", "c"), joined=("c",),
                        removed=("b",), at=1.0)
    record = output.event_record(event, ts=0.0)
    assert record == {"ts": 0.0, "event": "view", "member": None, "epoch": 3,
                      "config_id": 7, "size": 2, "joined": ["c"], "removed": ["b"]}
    line = output.human_line(record)
    assert "view" in line and "epoch 3: 2 members" in line
    assert line.endswith("joined=c removed=b")


def test_a_partition_majority_removes_the_minority_which_rejoins_after_the_heal() -> None:
    config = Config.stable_views(Config.local(), readmit_after_s=10.0)
    router = Router(seed=1)
    cores, big, small = partitioned_7_3(router, config)
    everyone, majority = members_of(cores), members_of(big)
    # 7 of 10 is short of the fast quorum (8): the slow path decides, by majority.
    router.run_until_true(lambda: views(big) == {majority}, limit_s=60)
    for c in big:
        assert c.stable is not None
        counters = c.stable.counters
        assert (counters.view_changes, counters.fast_decisions) == (1, 0)
        assert counters.slow_decisions + counters.views_adopted == 1
    assert any(c.stable is not None and c.stable.counters.slow_decisions for c in big)
    # The minority side cannot decide: it keeps the view it had.
    router.run_until(router.now + 10.0)
    assert views(small) == {everyone}
    router.heal()
    healed_at = router.now
    router.run_until_true(lambda: views(small) == {majority}, limit_s=30)
    router.run_until_true(lambda: views(cores) == {everyone}, limit_s=60)
    assert router.now >= healed_at + 10.0  # the readmission hysteresis
    assert len(view_ids(cores)) == 1
    for c in cores:
        changes = router.events_of(c.name, ViewChanged)
        assert [(ch.removed, ch.joined) for ch in changes] == [
            (tuple(x.name for x in small), ()), ((), tuple(x.name for x in small)),
        ]


def test_split_votes_are_recovered_by_a_new_round() -> None:
    import random

    from swim.core.codec import encode
    from swim.core.messages import StableVote

    cores = [Core(CONFIG, name=name_of(i), addr=addr_of(i), rng=random.Random(i), now=0.0)
             for i in range(4)]
    table = [c.membership.local for c in cores]
    a = cores[0]
    a.bootstrap(table, now=0.0)
    assert a.stable is not None and a.stable.configuration is not None
    conf_id = a.stable.configuration.id

    def vote(voter: int, cut: tuple[tuple[str, bool], ...], round_: int, now: float) -> None:
        bitmap = bytes([1 << voter])
        a.receive_datagram(encode([StableVote(conf_id, cut, bitmap, round_)]),
                           addr_of(voter), now=now)

    x, y, z = ((name_of(1), False),), ((name_of(2), False),), ((name_of(3), False),)
    vote(1, x, 1, 1.0)
    vote(2, y, 1, 1.0)
    agreement = a.stable.agreement
    assert agreement is not None and agreement.round == 1  # 1 + 2 unheard could still win
    vote(3, z, 1, 1.0)
    # Three cuts, one vote each, one voter left: no cut can reach 3 of 4. Round 2, and
    # our vote there is the union of the round's cuts (our detector has no cut).
    agreement = a.stable.agreement
    assert agreement is not None and agreement.round == 2
    union = tuple(sorted(x + y + z))
    assert agreement.vote_of(name_of(0)) == union
    vote(2, x, 1, 2.0)  # late: ignored
    assert agreement.counters.late_round >= 1
    vote(1, union, 2, 2.0)
    vote(2, union, 2, 2.0)  # 3 of 4 identical votes: the fast quorum
    changes = [e for e in a.poll().events if isinstance(e, ViewChanged)]
    assert [(c.removed, c.members) for c in changes] == [
        (tuple(n for n, _ in union), (name_of(0),))
    ]


def test_a_vote_for_a_later_round_moves_a_member_there() -> None:
    import random

    from swim.core.codec import encode
    from swim.core.messages import StableVote

    core = Core(CONFIG, name=name_of(0), addr=addr_of(0), rng=random.Random(1), now=0.0)
    core.bootstrap([Core(CONFIG, name=name_of(i), addr=addr_of(i), rng=random.Random(i),
                         now=0.0).membership.local for i in range(5)], now=0.0)
    assert core.stable is not None and core.stable.configuration is not None
    cut = ((name_of(4), False),)
    core.receive_datagram(
        encode([StableVote(core.stable.configuration.id, cut, b"\x02", 3)]), addr_of(1),
        now=1.0,
    )
    agreement = core.stable.agreement
    assert agreement is not None and agreement.round == 3
    assert agreement.vote_of(name_of(1)) == cut


def test_the_deciding_vote_bundle_goes_straight_to_our_subjects() -> None:
    import random

    from swim.core.codec import encode
    from swim.core.messages import StableVote

    cores = [Core(CONFIG, name=name_of(i), addr=addr_of(i), rng=random.Random(i), now=0.0)
             for i in range(8)]
    a = cores[0]
    a.bootstrap([c.membership.local for c in cores], now=0.0)
    assert a.stable is not None and a.stable.configuration is not None
    conf_id = a.stable.configuration.id
    detector = a.stable.detector
    assert detector is not None
    subjects = set(detector.rings.subjects_of(a.name))
    addr = {name_of(i): addr_of(i) for i in range(8)}
    cut = ((name_of(7), False),)
    a.poll()
    # Six voters of eight (the fast quorum) in one bundle, none of them us.
    a.receive_datagram(encode([StableVote(conf_id, cut, bytes([0b01111110]))]), addr_of(1),
                       now=1.0)
    out = a.poll()
    assert [e.removed for e in out.events if isinstance(e, ViewChanged)] == [(name_of(7),)]
    sent_to = {d.addr for d in out.datagrams
               if any(isinstance(m, StableVote) and m.config_id == conf_id
                      and m.voters == bytes([0b01111110]) for m in d.messages)}
    # Every subject of ours in the old view but the removed one, and no one else.
    assert subjects - {name_of(7)}
    assert sent_to == {addr[s] for s in subjects - {name_of(7)}}
