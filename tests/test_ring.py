"""swim.ring: placement that every member computes alike, weighted, zoned, filtered and
bounded, with exact reports of what moves when membership changes."""

from __future__ import annotations

import json
import math
import os
import pathlib
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from fractions import Fraction

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swim.core.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    MemberUpdated,
    UserBroadcastReceived,
)
from swim.core.messages import MemberState, MemberStatus
from swim.core.tags import encode_tags
from swim.ring import (
    SPACE,
    EmptyRingError,
    Move,
    RangeMove,
    Ring,
    RingChanged,
    RingOptions,
    RingTracker,
    position,
)
from tests.test_purity import violations

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALIVE, SUSPECT, DEAD, LEFT = (
    MemberStatus.ALIVE, MemberStatus.SUSPECT, MemberStatus.DEAD, MemberStatus.LEFT,
)
#: Fewer points than the default keep the property tests quick; placement rules do not
#: depend on the count.
SMALL = 32


def member(
    name: str, *, status: MemberStatus = ALIVE, incarnation: int = 1, port: int = 7946,
    tags: Mapping[str, str] | None = None, **more: str,
) -> MemberState:
    meta = encode_tags({**(tags or {}), **more})
    return MemberState(name, ("10.0.0.1", port), incarnation, status, meta)


def cluster(count: int, **tags: str) -> list[MemberState]:
    return [member(f"node-{i:02d}", port=7000 + i, tags=tags) for i in range(count)]


def zoned(count: int, zones: int) -> list[MemberState]:
    return [member(f"node-{i:02d}", zone=f"z{i % zones}") for i in range(count)]


KEYS = [f"key-{i}".encode() for i in range(2000)]

names = st.lists(
    st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=10, unique=True,
)


@st.composite
def memberships(draw: st.DrawFn, zones: int = 0) -> list[MemberState]:
    """A membership: names, some weighted, optionally zoned."""
    out = []
    for name in draw(names):
        tags = {}
        if draw(st.booleans()):
            tags["weight"] = draw(st.sampled_from(["0.5", "1", "2", "3"]))
        if zones:
            tags["zone"] = f"z{draw(st.integers(0, zones - 1))}"
        out.append(member(name, tags=tags))
    return out


# ---------------------------------------------------------------------- purity, determinism


def test_module_is_pure() -> None:
    source = (ROOT / "swim" / "ring.py").read_text(encoding="utf-8")
    assert violations(source) == []


PLACEMENTS = """
import json, sys
from swim.core.messages import MemberState, MemberStatus
from swim.core.tags import encode_tags
from swim.ring import Ring
view = [MemberState(f"m{i}", ("10.0.0.1", 7000 + i), 1, MemberStatus.ALIVE,
                    encode_tags({"zone": f"z{i % 3}", "weight": str(1 + i % 2)}))
        for i in range(12)]
ring = Ring.build(view[::-1])
keys = [f"key-{i}" for i in range(300)]
print(json.dumps({
    "checksum": ring.checksum,
    "owners": [ring.owners(k, 3) for k in keys],
    "bounded": list(ring.assign(keys, load_factor=0.05).values()),
}))
"""


def placements_here() -> dict[str, object]:
    view = [
        member(f"m{i}", port=7000 + i, zone=f"z{i % 3}", weight=str(1 + i % 2))
        for i in range(12)
    ]
    ring = Ring.build(view)
    keys = [f"key-{i}" for i in range(300)]
    return {
        "checksum": ring.checksum,
        "owners": [ring.owners(k, 3) for k in keys],
        "bounded": list(ring.assign(keys, load_factor=0.05).values()),
    }


@pytest.mark.parametrize("hash_seed", ["0", "4242"])
def test_placement_is_the_same_in_every_process(hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", PLACEMENTS], cwd=ROOT, env=env, capture_output=True,
        text=True, check=True,
    )
    assert json.loads(out.stdout) == placements_here()


def test_positions_and_checksums_are_pinned() -> None:
    # Changing the hash or the checksum's layout breaks agreement with members running
    # the previous version: these values must only change with swim.ring's _VERSION.
    assert position(b"") == 17619423327251739544
    assert position("key") == position(b"key") == 2795274680018408777
    ring = Ring.build([member("a"), member("b"), member("c")])
    assert ring.checksum == "767a4231f9a64f9b"
    assert ring.owners("key", 3) == ["c", "b", "a"]
    assert Ring.build([]).checksum == "fe28978c69a87d30"


@settings(max_examples=40)
@given(memberships(zones=3), st.randoms(use_true_random=False))
def test_member_order_and_addresses_do_not_matter(
    view: list[MemberState], rnd: random.Random
) -> None:
    shuffled = [attrs.evolve(m, addr=("10.9.9.9", 1), incarnation=7) for m in view]
    rnd.shuffle(shuffled)
    a = Ring.build(view, vnodes=SMALL)
    b = Ring.build(shuffled, vnodes=SMALL)
    assert a == b and a.checksum == b.checksum
    assert all(a.owners(k, 3) == b.owners(k, 3) for k in KEYS[:100])


# ---------------------------------------------------------------------- placement


@settings(max_examples=60)
@given(memberships(zones=4), st.integers(1, 12))
def test_owners_are_distinct_members_owner_first(view: list[MemberState], n: int) -> None:
    ring = Ring.build(view, vnodes=SMALL)
    for key in KEYS[:50]:
        owners = ring.owners(key, n)
        assert len(owners) == len(set(owners)) == min(n, len(ring))
        assert set(owners) <= set(ring.members)
        if owners:
            assert owners[0] == ring.owner(key)


@settings(max_examples=60)
@given(memberships(zones=4), st.integers(1, 6))
def test_owners_span_distinct_zones_when_there_are_enough(
    view: list[MemberState], n: int
) -> None:
    ring = Ring.build(view, vnodes=SMALL)
    for key in KEYS[:50]:
        owners = ring.owners(key, n)
        zones = [ring.zone(o) for o in owners]
        spread = min(n, len(ring.zones))
        # The first `spread` owners are in distinct zones; the rest fill with members.
        assert len(set(zones[:spread])) == spread


def test_zones_fall_back_to_distinct_members() -> None:
    ring = Ring.build(zoned(9, zones=2))
    for key in KEYS[:200]:
        owners = ring.owners(key, 4)
        assert len(set(owners)) == 4
        assert {ring.zone(o) for o in owners[:2]} == {"z0", "z1"}


@settings(max_examples=40)
@given(memberships(zones=3), st.integers(1, 4), st.data())
def test_a_member_outside_the_owners_can_leave_without_changing_them(
    view: list[MemberState], n: int, data: st.DataObject
) -> None:
    ring = Ring.build(view, vnodes=SMALL)
    key = data.draw(st.sampled_from(KEYS))
    owners = ring.owners(key, n)
    others = [m for m in view if m.name in ring and m.name not in owners]
    if others:
        gone = data.draw(st.sampled_from(others))
        after = Ring.build([m for m in view if m is not gone], vnodes=SMALL)
        assert after.owners(key, n) == owners


def test_text_and_bytes_keys_place_alike() -> None:
    ring = Ring.build(cluster(10))
    for i in range(100):
        assert ring.owner(f"k{i}") == ring.owner(f"k{i}".encode())
        assert ring.owners(f"k{i}", 3) == ring.owners(f"k{i}".encode(), 3)


def test_owners_default_count_and_bad_n() -> None:
    ring = Ring.build(cluster(10), replicas_default=2)
    assert len(ring.owners(b"k")) == 2
    assert len(ring.owners(b"k", 20)) == 10
    with pytest.raises(ValueError, match="at least 1"):
        ring.owners(b"k", 0)


def test_an_empty_ring_has_no_owners() -> None:
    ring = Ring.build([member("a", status=DEAD)])
    assert len(ring) == 0 and ring.owners(b"k") == []
    with pytest.raises(EmptyRingError):
        ring.owner(b"k")
    with pytest.raises(EmptyRingError):
        ring.assign([b"k"])
    assert dict(ring.assign([])) == {}


def test_weights_are_proportional() -> None:
    view = [member(f"a{i:02d}") for i in range(20)] + [
        member(f"b{i:02d}", weight="2") for i in range(20)
    ]
    ring = Ring.build(view)
    shares = ring.shares()
    assert math.isclose(sum(shares.values()), 1.0)
    light = sum(v for k, v in shares.items() if k.startswith("a")) / 20
    heavy = sum(v for k, v in shares.items() if k.startswith("b")) / 20
    assert 1.8 < heavy / light < 2.2, (light, heavy)
    counts = Counter(ring.owner(f"w{i}") for i in range(40_000))
    got = sum(c for k, c in counts.items() if k.startswith("b")) / sum(
        c for k, c in counts.items() if k.startswith("a")
    )
    assert 1.8 < got < 2.2, got
    assert ring.weight("b00") == 2.0 and ring.weight("a00") == 1.0


@pytest.mark.parametrize(
    ("tag", "on_ring", "points"),
    [
        (None, True, 256),
        ("1", True, 256),
        ("0.5", True, 128),
        ("0", False, 0),  # drained
        ("-3", True, 256),  # malformed: ignored
        ("nan", True, 256),
        ("inf", True, 256),
        ("heavy", True, 256),
        ("1e9", True, 25_600),  # capped at MAX_WEIGHT
        ("0.0001", True, 1),  # at least one point
    ],
)
def test_weight_tags(tag: str | None, on_ring: bool, points: int) -> None:
    tags = {} if tag is None else {"weight": tag}
    ring = Ring.build([member("a", tags=tags), member("b")])
    assert ("a" in ring) is on_ring
    if on_ring:
        assert ring.entries[0].points == points


# ---------------------------------------------------------------------- who is on the ring


def test_statuses_suspects_count_as_up_by_default() -> None:
    view = [member("a"), member("b", status=SUSPECT), member("c", status=DEAD),
            member("d", status=LEFT)]
    assert Ring.build(view).members == ("a", "b")
    assert Ring.build(view, statuses={ALIVE}).members == ("a",)
    assert Ring.build(view, statuses={SUSPECT}).members == ("b",)
    for bad in ({ALIVE, DEAD}, {LEFT}, set()):
        with pytest.raises(ValueError, match="statuses"):
            Ring.build(view, statuses=bad)


def test_a_critical_health_check_takes_a_member_off() -> None:
    view = [member("a", health="critical"), member("b", health="passing"),
            member("c", health="warning"), member("d")]
    assert Ring.build(view).members == ("b", "c", "d")
    assert Ring.build(view, exclude=None).members == ("a", "b", "c", "d")
    assert Ring.build(view, exclude={"health": "critical"}, include={"health": "*ing"}).members == (
        "b", "c",
    )


def test_include_and_exclude_by_tags_and_predicates() -> None:
    view = [member("a", role="cache-hot"), member("b", role="cache"), member("c", role="db"),
            member("d")]
    assert Ring.build(view, include={"role": "cache*"}).members == ("a", "b")
    assert Ring.build(view, include={"role": "cache"}).members == ("b",)
    assert Ring.build(view, exclude={"role": "db"}).members == ("a", "b", "d")
    assert Ring.build(view, include=lambda m: m.name in {"a", "d"}).members == ("a", "d")
    # Metadata that is not a tag block means no tags, never an error.
    odd = [MemberState("x", ("10.0.0.1", 1), 1, ALIVE, b"plain text"), member("y")]
    assert Ring.build(odd).members == ("x", "y")
    assert Ring.build(odd, include={"role": "*"}).members == ()


def test_a_name_listed_twice_counts_once_by_precedence() -> None:
    alive = member("a", incarnation=1)
    dead = member("a", incarnation=2, status=DEAD)
    stale_dead = member("a", incarnation=0, status=DEAD)
    assert "a" not in Ring.build([alive, dead]) and "a" not in Ring.build([dead, alive])
    assert "a" in Ring.build([alive, stale_dead]) and "a" in Ring.build([stale_dead, alive])


def test_bad_options_are_the_callers_mistake() -> None:
    with pytest.raises(ValueError):
        RingOptions(vnodes=0)
    with pytest.raises(ValueError):
        RingOptions(replicas_default=0)
    for bad in (-0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="load_factor"):
            RingOptions(load_factor=bad)
    with pytest.raises(TypeError):
        Ring()


# ---------------------------------------------------------------------- bounded loads


@settings(max_examples=60)
@given(
    memberships(),
    st.integers(0, 400),
    st.sampled_from([0.0, 0.01, 0.1, 0.25, 1.0]),
    st.randoms(use_true_random=False),
)
def test_bounded_loads_never_exceed_the_cap(
    view: list[MemberState], count: int, eps: float, rnd: random.Random
) -> None:
    ring = Ring.build(view, vnodes=SMALL)
    if not len(ring):
        return
    keys = KEYS[:count]
    assignment = ring.assign(keys, load_factor=eps)
    assert assignment.caps is not None
    total = sum(e.points for e in ring.entries)
    for entry in ring.entries:
        cap = math.ceil((1 + Fraction(str(eps))) * count * entry.points / total)
        assert assignment.caps[entry.name] == cap
        assert assignment.loads[entry.name] <= cap
    assert sum(assignment.loads.values()) == count == len(assignment)
    assert Counter(assignment.values()) == {k: v for k, v in assignment.loads.items() if v}
    # The set of keys decides, not their order (nor duplicates).
    shuffled = [*keys, *keys[: count // 3]]
    rnd.shuffle(shuffled)
    assert ring.assign(shuffled, load_factor=eps) == assignment


def test_bounded_loads_with_equal_weights_cap_at_ceil_of_the_mean() -> None:
    ring = Ring.build(cluster(7), load_factor=0.05)
    assignment = ring.assign(KEYS)
    cap = math.ceil(1.05 * len(KEYS) / 7)
    assert set(assignment.caps.values()) == {cap}  # type: ignore[union-attr]
    assert assignment.max_load <= cap < Ring.build(cluster(7)).assign(KEYS).max_load
    assert assignment.displaced > 0
    plain = ring.assign(KEYS, load_factor=None)
    assert plain.caps is None and dict(plain) == {k: ring.owner(k) for k in KEYS}
    assert sum(1 for k in KEYS if assignment[k] != plain[k]) == assignment.displaced


def test_bounded_loads_with_room_to_spare_are_plain_placement() -> None:
    ring = Ring.build(cluster(5))
    assert ring.assign(KEYS, load_factor=1.0) == ring.assign(KEYS, load_factor=None)


def test_bounded_movement_on_one_failure_stays_near_the_ideal() -> None:
    view = cluster(20)
    ring = Ring.build(view, load_factor=0.1)
    after = Ring.build(view[1:], load_factor=0.1)
    keys = [f"k{i}".encode() for i in range(20_000)]
    before_a, after_a = ring.assign(keys), after.assign(keys)
    moved = sum(1 for k in keys if before_a[k] != after_a[k])
    ideal = before_a.loads[view[0].name]
    assert ideal <= moved < 4 * ideal, (moved, ideal)


# ---------------------------------------------------------------------- movement, diff


def test_one_failure_moves_only_its_keys_about_one_nth() -> None:
    view = cluster(50)
    ring = Ring.build(view)
    gone = view[17].name
    after = Ring.build([m for m in view if m.name != gone])
    keys = [f"k{i}".encode() for i in range(40_000)]
    diff = Ring.diff(ring, after, keys)
    assert diff.left == (gone,) and diff.joined == () and diff.changed == ()
    assert {m.old_owner for m in diff.moves} == {gone}
    assert [m.key for m in diff.moves] == [k for k in keys if ring.owner(k) == gone]
    assert all(m.new_owner == after.owner(m.key) for m in diff.moves)
    assert 0.5 / 50 < len(diff.moves) / len(keys) < 1.5 / 50
    # The moved arcs are exactly the failed member's share of the hash space.
    assert math.isclose(diff.moved_share, ring.shares()[gone], rel_tol=1e-12)


def test_one_join_moves_keys_only_to_the_joiner() -> None:
    view = cluster(50)
    ring = Ring.build(view)
    after = Ring.build([*view, member("new")])
    keys = [f"k{i}".encode() for i in range(40_000)]
    diff = Ring.diff(ring, after, keys)
    assert diff.joined == ("new",) and diff.left == ()
    assert {m.new_owner for m in diff.moves} == {"new"}
    assert 0.5 / 51 < len(diff.moves) / len(keys) < 1.5 / 51
    assert math.isclose(diff.moved_share, after.shares()["new"], rel_tol=1e-12)


def test_raising_a_weight_only_moves_keys_to_that_member() -> None:
    view = cluster(10)
    ring = Ring.build(view)
    after = Ring.build([*view[1:], member(view[0].name, weight="2")])
    diff = Ring.diff(ring, after, KEYS)
    assert diff.changed == (view[0].name,) and not diff.joined and not diff.left
    assert diff.moves and {m.new_owner for m in diff.moves} == {view[0].name}


@settings(max_examples=40)
@given(memberships(zones=2), memberships(zones=2))
def test_diff_ranges_and_moves_agree_with_the_rings(
    before: list[MemberState], after: list[MemberState]
) -> None:
    old = Ring.build(before, vnodes=SMALL)
    new = Ring.build(after, vnodes=SMALL)
    keys = KEYS[:300]
    diff = Ring.diff(old, new, keys)

    def owner(ring: Ring, key: bytes) -> str | None:
        return ring.owner(key) if len(ring) else None

    assert diff.moves == tuple(
        Move(k, owner(old, k), owner(new, k)) for k in keys if owner(old, k) != owner(new, k)
    )
    assert diff.joined == tuple(sorted(set(new.members) - set(old.members)))
    assert diff.left == tuple(sorted(set(old.members) - set(new.members)))
    starts = [r.start for r in diff.ranges]
    assert starts == sorted(starts)
    assert all(0 <= r.start < r.end <= SPACE for r in diff.ranges)
    for key in keys:
        pos = position(key)
        inside = [r for r in diff.ranges if pos in r]
        assert len(inside) <= 1
        if inside:
            assert (inside[0].old_owner, inside[0].new_owner) == (owner(old, key), owner(new, key))
        else:
            assert owner(old, key) == owner(new, key)
    if old == new:
        assert diff.ranges == () and diff.moved_share == 0


def test_diff_between_an_empty_and_a_full_ring_moves_everything() -> None:
    empty = Ring.build([])
    full = Ring.build(cluster(3))
    diff = Ring.diff(empty, full, [b"a", b"b"])
    assert diff.moved_share == 1.0
    assert {r.old_owner for r in diff.ranges} == {None}
    assert diff.moves == (Move(b"a", None, full.owner(b"a")), Move(b"b", None, full.owner(b"b")))
    assert RangeMove(0, SPACE, "x", None).share == 1.0


def test_bounded_diff_compares_assignments() -> None:
    view = cluster(8)
    old = Ring.build(view, load_factor=0.05)
    new = Ring.build(view[1:], load_factor=0.05)
    diff = Ring.diff(old, new, KEYS, bounded=True)
    before, after = old.assign(KEYS), new.assign(KEYS)
    assert diff.moves == tuple(
        Move(k, before[k], after[k]) for k in KEYS if before[k] != after[k]
    )


# ---------------------------------------------------------------------- checksum


def test_checksum_equal_iff_same_membership() -> None:
    base = Ring.build(zoned(6, zones=2)).checksum
    # Order, addresses, incarnations, suspicion and unrelated tags do not count...
    same = [
        attrs.evolve(m, addr=("10.1.1.1", 9), incarnation=5,
                     status=SUSPECT if i == 2 else ALIVE,
                     meta=encode_tags({"zone": f"z{i % 2}", "role": "x"}))
        for i, m in enumerate(zoned(6, zones=2))
    ]
    assert Ring.build(same[::-1]).checksum == base
    # ...names, weights and zones do.
    view = zoned(6, zones=2)
    variants = [
        view[1:],
        [*view, member("node-99", zone="z0")],
        [*view[1:], member("node-00", zone="z1")],
        [*view[1:], member("node-00", zone="z0", weight="2")],
        [*view[1:], member("node-0", zone="z0")],
    ]
    sums = [Ring.build(v).checksum for v in variants]
    assert base not in sums and len(set(sums)) == len(sums)


# ---------------------------------------------------------------------- tracker


def test_tracker_emits_on_real_changes_only() -> None:
    tracker = RingTracker(RingOptions(vnodes=SMALL))
    view = cluster(4, zone="z0")
    first = tracker.update(view, at=1.0)
    assert first is not None and len(first.old) == 0 and first.at == 1.0
    assert first.new == tracker.ring == Ring.build(view, vnodes=SMALL)
    assert first.checksum == tracker.ring.checksum
    assert tracker.update(view[::-1]) is None

    a = view[0]
    quiet = [
        MemberUpdated(member=attrs.evolve(a, meta=encode_tags({"zone": "z0", "v": "2"})), at=2.0),
        MemberUpdated(member=attrs.evolve(a, addr=("10.2.2.2", 1)), at=2.0),
        MemberSuspected(member=attrs.evolve(a, status=SUSPECT), accuser="node-01", at=3.0),
        MemberAlive(member=attrs.evolve(a, incarnation=2), at=4.0),
        MemberJoined(member=view[1], at=4.0),
        UserBroadcastReceived(origin="x", id=1, payload=b"", at=5.0),
        MemberFailed(member=member("stranger", status=DEAD), accuser="x", at=5.0),
        "not an event",
    ]
    assert [tracker.observe(e) for e in quiet] == [None] * len(quiet)

    heavier = attrs.evolve(a, meta=encode_tags({"zone": "z0", "weight": "2"}))
    change = tracker.observe(MemberUpdated(member=heavier, at=6.0))
    assert isinstance(change, RingChanged) and change.at == 6.0
    assert change.new.weight(a.name) == 2.0 and change.old.weight(a.name) == 1.0
    assert change.diff().changed == (a.name,)

    failed = tracker.observe(MemberFailed(member=view[1], accuser="node-00", at=7.0))
    assert failed is not None and view[1].name not in failed.new
    assert failed.diff(KEYS).left == (view[1].name,)
    assert tracker.observe(MemberFailed(member=view[1], accuser="node-02", at=7.5)) is None
    back = tracker.observe(MemberAlive(member=attrs.evolve(view[1], incarnation=3), at=8.0))
    assert back is not None and view[1].name in back.new

    sick = attrs.evolve(view[2], meta=encode_tags({"zone": "z0", "health": "critical"}))
    out = tracker.observe(MemberUpdated(member=sick, at=9.0))
    assert out is not None and view[2].name not in out.new
    well = attrs.evolve(view[2], meta=encode_tags({"zone": "z0", "health": "passing"}))
    again = tracker.observe(MemberUpdated(member=well, at=10.0))
    assert again is not None and again.new.checksum == out.old.checksum

    left = tracker.observe(MemberLeft(member=view[3], at=11.0))
    assert left is not None
    assert left.new.members == tuple(sorted([a.name, view[1].name, view[2].name]))


def test_tracker_counts_suspects_as_its_options_say() -> None:
    tracker = RingTracker(RingOptions(vnodes=SMALL, statuses={ALIVE}))
    view = cluster(3)
    tracker.update(view)
    suspected = tracker.observe(
        MemberSuspected(member=attrs.evolve(view[0], status=SUSPECT), accuser="x", at=1.0)
    )
    assert suspected is not None and view[0].name not in suspected.new
    refuted = tracker.observe(MemberAlive(member=attrs.evolve(view[0], incarnation=2), at=2.0))
    assert refuted is not None and refuted.new == Ring.build(view, vnodes=SMALL, statuses={ALIVE})


@settings(max_examples=30)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from("jfslu"),
                          st.sampled_from(["1", "2"])), max_size=25))
def test_tracker_ring_matches_a_fresh_build(script: list[tuple[str, str, str]]) -> None:
    """Any sequence of events leaves the tracker's ring equal to one built from scratch
    from the members' latest states, and it reports a change exactly when that ring's
    checksum changes."""
    tracker = RingTracker(RingOptions(vnodes=SMALL))
    latest: dict[str, MemberState] = {}
    for name, kind, weight in script:
        state = member(name, weight=weight)
        if kind == "j":
            event: object = MemberJoined(member=state, at=0.0)
        elif kind == "u":
            event = MemberUpdated(member=state, at=0.0)
        elif kind == "s":
            state = attrs.evolve(state, status=SUSPECT)
            event = MemberSuspected(member=state, accuser="z", at=0.0)
        elif kind == "f":
            state = attrs.evolve(state, status=DEAD)
            event = MemberFailed(member=state, accuser="z", at=0.0)
        else:
            state = attrs.evolve(state, status=LEFT)
            event = MemberLeft(member=state, at=0.0)
        before = tracker.ring.checksum
        change = tracker.observe(event)
        latest[name] = state
        expected = Ring.build(latest.values(), vnodes=SMALL)
        assert tracker.ring == expected
        assert (change is not None) == (expected.checksum != before)
