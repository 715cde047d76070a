"""The cut detector's rules, agreement's quorums and the admission hysteresis, one by one
(stable-view mode; Rapid's K = 10, H = 9, L = 3 unless a test says otherwise)."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from swim.core.stable import (
    Admission,
    Agreement,
    Configuration,
    CutDetector,
    CutParams,
    EdgeMonitor,
    EdgeParams,
    fast_quorum,
    majority,
    rings_of,
)

NAMES = [f"node-{i}" for i in range(30)]
CONF = Configuration.of(NAMES, 3)
RINGS = rings_of(CONF, 10)


def detector(**kw: float) -> CutDetector:
    return CutDetector(CutParams(), RINGS, **kw)  # type: ignore[arg-type]


def report(det: CutDetector, subject: str, rings: range | list[int], *, now: float = 0.0,
           config_id: int = CONF.id) -> int:
    """Each ring's observer alerts about `subject` on that ring (one alert per ring)."""
    up = subject not in CONF
    observers = RINGS.observers_of(subject)
    return sum(
        det.add(observer=observers[r], subject=subject, up=up, rings=[r],
                config_id=config_id, now=now)
        for r in rings
    )


def subjects_apart(count: int) -> list[str]:
    """`count` members none of which observes another (so no implicit alert links them)."""
    chosen: list[str] = []
    for name in NAMES:
        linked = {o for c in chosen for o in RINGS.observers_of(c)}
        if name not in linked and not set(RINGS.observers_of(name)) & set(chosen):
            chosen.append(name)
        if len(chosen) == count:
            return chosen
    raise AssertionError("not enough independent subjects")


# ------------------------------------------------------------------------ parameters

@pytest.mark.parametrize(("k", "h", "l", "why"), [
    (0, 1, 1, "K"), (10, 11, 3, "H must be"), (10, 0, 1, "H must be"),
    (10, 5, 6, "L must be"), (10, 9, 0, "L must be"),
])
def test_parameters_are_validated_with_a_clear_error(k: int, h: int, l: int, why: str) -> None:  # noqa: E741
    with pytest.raises(ValueError, match=why):
        CutParams(k=k, h=h, l=l)


def test_rapid_defaults() -> None:
    assert CutParams() == CutParams(k=10, h=9, l=3)


# ------------------------------------------------------------------------ the H rule

def test_a_subject_is_proposed_at_h_reports_not_before() -> None:
    det = detector()
    (s,) = subjects_apart(1)
    report(det, s, range(8))
    assert det.unstable() == [s] and det.proposal(1.0) is None
    report(det, s, [8])
    assert det.stable() == [s] and det.unstable() == []
    assert det.proposal(1.0) == ((s, False),)
    assert det.proposal(2.0) is None  # one proposal per configuration
    assert det.proposed


def test_fewer_than_l_reports_is_noise_and_blocks_nothing() -> None:
    det = detector()
    a, b = subjects_apart(2)
    report(det, a, range(10))
    report(det, b, range(2))  # below L
    assert det.unstable() == []
    assert det.proposal(0.0) == ((a, False),)


# --------------------------------------------------------------------- the L/H gap

def test_a_subject_between_l_and_h_blocks_the_proposal_until_it_is_stable() -> None:
    det = detector()
    a, b = subjects_apart(2)
    report(det, a, range(10))
    report(det, b, range(3))  # exactly L: unstable
    assert det.unstable() == [b]
    assert det.proposal(0.0) is None
    report(det, b, range(3, 9))
    # One cut holding both: the correlated failure is proposed together.
    assert det.proposal(0.0) == tuple(sorted([(a, False), (b, False)]))


@given(st.lists(st.tuples(st.integers(0, 29), st.integers(0, 9)), max_size=200))
@settings(max_examples=80, deadline=None)
def test_a_proposal_never_coexists_with_an_unstable_subject(
    alerts: list[tuple[int, int]]
) -> None:
    det = detector()
    for who, ring in alerts:
        subject = NAMES[who]
        det.add(observer=RINGS.observers_of(subject)[ring], subject=subject, up=False,
                rings=[ring], config_id=CONF.id, now=0.0)
        cut = det.proposal(0.0)
        if cut is not None:
            assert det.unstable() == []
            assert all(det.reports(s) >= 9 for s, _ in cut)
            assert [s for s, _ in cut] == det.stable()


# ------------------------------------------------------------------ implicit alerts

def test_an_observer_in_the_pending_cut_counts_for_its_subjects() -> None:
    det = detector()
    subject = "node-5"
    observers = RINGS.observers_of(subject)
    # node-8 observes node-5 on three rings, and is in the cut itself (stable), so it
    # cannot report: those three rings count implicitly.
    failing = "node-8"
    assert observers.count(failing) == 3
    report(det, failing, range(10))
    others = [r for r in range(10) if observers[r] != failing]
    report(det, subject, others[:6])
    assert det.unstable() == [subject] and det.reports(subject) == 6
    assert det.proposal(0.0) == tuple(sorted([(subject, False), (failing, False)]))
    assert det.counters.implicit == 3
    assert det.reports(subject) == 9


def test_implicit_alerts_need_the_observer_at_l_or_more() -> None:
    det = detector()
    subject = NAMES[1]
    observers = RINGS.observers_of(subject)
    helper = observers[0]
    report(det, helper, range(2))  # below L: not in the pending cut
    report(det, subject, [r for r in range(10) if observers[r] != helper][:4])
    det.proposal(0.0)
    assert det.counters.implicit == 0
    assert det.reports(subject) == 4


# -------------------------------------------------------- duplicates, bad alerts

def test_duplicate_reports_count_once_per_ring() -> None:
    det = detector()
    (s,) = subjects_apart(1)
    assert report(det, s, [0, 1]) == 2
    assert report(det, s, [0, 1]) == 0
    assert det.reports(s) == 2 and det.counters.duplicate == 2


def test_alerts_for_another_configuration_are_ignored_and_counted() -> None:
    det = detector()
    (s,) = subjects_apart(1)
    assert report(det, s, range(10), config_id=CONF.id ^ 1) == 0
    assert det.reports(s) == 0 and det.counters.wrong_config == 10
    assert det.proposal(0.0) is None


def test_alerts_from_non_observers_wrong_rings_or_wrong_kind_are_ignored() -> None:
    det = detector()
    (s,) = subjects_apart(1)
    stranger = next(n for n in NAMES if n not in RINGS.observers_of(s) and n != s)
    det.add(observer=stranger, subject=s, up=False, rings=[0, 1], config_id=CONF.id, now=0)
    assert det.counters.not_observer == 2
    det.add(observer=RINGS.observers_of(s)[0], subject=s, up=False, rings=[10, -1],
            config_id=CONF.id, now=0)
    assert det.counters.bad_ring == 2
    det.add(observer=RINGS.observers_of(s)[0], subject=s, up=True, rings=[0],
            config_id=CONF.id, now=0)
    det.add(observer=RINGS.observers_of("joiner")[0], subject="joiner", up=False, rings=[0],
            config_id=CONF.id, now=0)
    assert det.counters.wrong_kind == 2
    assert det.reports(s) == 0


# ------------------------------------------------------------------- reinforcement

def test_observers_reinforce_a_subject_stuck_in_the_unstable_region() -> None:
    det = detector(reinforce_after_s=10.0)
    (s,) = subjects_apart(1)
    observers = RINGS.observers_of(s)
    report(det, s, range(5), now=100.0)
    assert det.deadline() == 110.0
    quiet = observers[7]
    assert det.reinforcements(quiet, 109.0) == []
    owed = det.reinforcements(quiet, 110.0)
    rings = tuple(r for r in RINGS.rings_observed_by(quiet, s) if r >= 5)
    assert owed == [(s, False, rings)]
    assert det.reinforcements(quiet, 111.0) == []  # once per subject
    assert det.counters.reinforced == 1
    # Every silent observer reinforcing brings the subject to a proposal.
    for ring in range(5, 10):
        det.add(observer=observers[ring], subject=s, up=False, rings=[ring],
                config_id=CONF.id, now=110.0)
    assert det.proposal(110.0) == ((s, False),)
    assert det.deadline() == float("inf")


# ----------------------------------------------------------- joins and graceful leave

def test_joiners_are_admitted_by_their_temporary_observers_as_part_of_a_cut() -> None:
    det = detector()
    (s,) = subjects_apart(1)
    report(det, "joiner", range(9))
    report(det, s, range(10))
    cut = det.proposal(0.0)
    assert cut == tuple(sorted([("joiner", True), (s, False)]))
    nxt = CONF.apply(cut)
    assert "joiner" in nxt and s not in nxt and len(nxt) == len(CONF)


def test_a_leaving_member_alerting_about_itself_counts_for_every_ring() -> None:
    det = detector()
    (s,) = subjects_apart(1)
    assert det.add(observer=s, subject=s, up=False, rings=[], config_id=CONF.id, now=0) == 10
    assert det.proposal(0.0) == ((s, False),)


# --------------------------------------------------------------------- agreement

@pytest.mark.parametrize(("n", "fast", "maj"), [(1, 1, 1), (2, 2, 2), (4, 3, 3), (5, 4, 3),
                                                 (30, 23, 16), (200, 150, 101)])
def test_quorums(n: int, fast: int, maj: int) -> None:
    assert fast_quorum(n) == fast and majority(n) == maj


def test_fast_path_decides_at_three_quarters_of_identical_votes() -> None:
    agree = Agreement(CONF, fallback_after_s=5.0)
    cut = (("node-3", False),)
    other = (("node-4", False),)
    for voter in NAMES[:22]:
        assert agree.add(voter=voter, cut=cut, config_id=CONF.id, now=0.0)
    agree.add(voter=NAMES[22], cut=other, config_id=CONF.id, now=0.0)
    assert agree.decide(0.0) is None  # 22 < ceil(3 * 30 / 4) = 23
    agree.add(voter=NAMES[23], cut=cut, config_id=CONF.id, now=1.0)
    assert agree.decide(1.0) == cut and agree.counters.fast == 1
    assert agree.decide(2.0) == cut


def test_votes_are_irrevocable_and_checked() -> None:
    agree = Agreement(CONF)
    cut = (("node-3", False),)
    assert agree.add(voter="node-1", cut=cut, config_id=CONF.id, now=0)
    assert not agree.add(voter="node-1", cut=cut, config_id=CONF.id, now=0)
    assert not agree.add(voter="node-1", cut=(), config_id=CONF.id, now=0)
    assert not agree.add(voter="stranger", cut=cut, config_id=CONF.id, now=0)
    assert not agree.add(voter="node-2", cut=cut, config_id=CONF.id + 1, now=0)
    c = agree.counters
    assert (c.duplicate, c.conflicting, c.not_member, c.wrong_config) == (1, 1, 1, 1)
    assert agree.votes_for(cut) == 1 and agree.vote_of("node-1") == cut


def test_slow_path_decides_a_majority_only_after_the_fallback_time() -> None:
    agree = Agreement(CONF, fallback_after_s=5.0)
    cut = (("node-3", False),)
    for voter in NAMES[:16]:
        agree.add(voter=voter, cut=cut, config_id=CONF.id, now=10.0)
    assert agree.decide(14.9) is None
    assert agree.deadline() == 15.0
    assert agree.decide(15.0) == cut and agree.counters.slow == 1
    assert agree.deadline() == float("inf")


def test_a_split_vote_decides_nothing() -> None:
    agree = Agreement(CONF, fallback_after_s=1.0)
    for i, voter in enumerate(NAMES):
        agree.add(voter=voter, cut=((f"node-{i % 2}", False),), config_id=CONF.id, now=0.0)
    assert agree.decide(100.0) is None
    assert agree.deadline() == float("inf")  # tried; later votes are checked on arrival


@given(st.lists(st.tuples(st.integers(0, 29), st.integers(0, 2)), max_size=120),
       st.floats(0, 20))
@settings(max_examples=80, deadline=None)
def test_two_agreements_on_the_same_votes_in_any_order_never_decide_differently(
    votes: list[tuple[int, int]], at: float
) -> None:
    cuts = [(("node-0", False),), (("node-1", False),), (("node-0", False), ("node-1", False))]
    a, b = Agreement(CONF, fallback_after_s=5.0), Agreement(CONF, fallback_after_s=5.0)
    for voter, c in votes:
        a.add(voter=NAMES[voter], cut=cuts[c], config_id=CONF.id, now=0.0)
    # b hears only the first vote of each voter, in reverse order: a different subset.
    for voter, c in reversed(votes):
        b.add(voter=NAMES[voter], cut=cuts[c], config_id=CONF.id, now=0.0)
    da, db = a.decide(at), b.decide(at)
    if da is not None and db is not None:
        assert da == db


# ----------------------------------------------------------------- edges, admission

def test_an_edge_is_faulty_after_enough_failures_in_the_window() -> None:
    edges = EdgeMonitor(EdgeParams(window=5, failures=2))
    assert not edges.record("s", False)
    assert not edges.record("s", True)
    assert edges.record("s", False)
    for _ in range(4):
        edges.record("s", True)
    assert not edges.faulty("s")
    edges.keep_only(set())
    assert not edges.faulty("s")
    with pytest.raises(ValueError, match="edge failures"):
        EdgeParams(window=3, failures=4)


def test_a_removed_member_is_readmitted_only_after_staying_reachable() -> None:
    admission = Admission(join_after_s=0.0, readmit_after_s=60.0)
    admission.probe_result("new", True, 0.0)
    assert admission.ready("new", 0.0)
    admission.removed("flapper", 0.0)
    admission.probe_result("flapper", True, 10.0)
    assert not admission.ready("flapper", 69.0)
    admission.probe_result("flapper", False, 30.0)  # a flap restarts the clock
    admission.probe_result("flapper", True, 50.0)
    assert not admission.ready("flapper", 100.0)
    assert admission.ready("flapper", 110.0)
    admission.admitted("flapper")
    assert not admission.ready("flapper", 200.0)
    assert admission.was_removed("flapper")


# ------------------------------------------------------------------ rounds after a split

SMALL = Configuration.of([f"m{i}" for i in range(4)])


def test_a_round_is_stuck_only_when_no_cut_can_still_win() -> None:
    agree = Agreement(SMALL)
    cuts = [((f"m{i}", False),) for i in range(3)]
    agree.add(voter="m0", cut=cuts[0], config_id=SMALL.id, now=0)
    agree.add(voter="m1", cut=cuts[0], config_id=SMALL.id, now=0)
    agree.add(voter="m2", cut=cuts[1], config_id=SMALL.id, now=0)
    assert not agree.stuck()  # cuts[0] has 2, and m3 could make it 3 of 4
    split = Agreement(SMALL)
    for voter, cut in zip(["m0", "m1", "m2"], cuts, strict=True):
        split.add(voter=voter, cut=cut, config_id=SMALL.id, now=0)
    assert split.stuck()
    split.next_round()
    assert split.round == 2 and split.counters.rounds == 1 and not split.stuck()
    assert not split.add(voter="m3", cut=cuts[0], config_id=SMALL.id, now=0, round_=1)
    assert split.counters.late_round == 1
    with pytest.raises(ValueError, match="not after"):
        split.next_round(2)
    # A vote of a later round moves the agreement there.
    assert split.add(voter="m3", cut=cuts[2], config_id=SMALL.id, now=0, round_=5)
    assert split.round == 5 and split.votes_for(cuts[2]) == 1


@given(st.lists(st.integers(0, 2), min_size=7, max_size=7), st.lists(st.booleans(),
       min_size=7, max_size=7))
@settings(max_examples=200, deadline=None)
def test_the_stuck_proof_is_sound(choices: list[int], heard: list[bool]) -> None:
    """Whatever subset of the votes a member heard, `stuck` never holds when the votes
    cast (heard or not) give some cut a majority: no member leaves a round that
    decides."""
    conf = Configuration.of([f"v{i}" for i in range(7)])
    cuts = [((f"v{i}", False),) for i in range(3)]
    agree = Agreement(conf)
    for i, (c, h) in enumerate(zip(choices, heard, strict=True)):
        if h:
            agree.add(voter=f"v{i}", cut=cuts[c], config_id=conf.id, now=0)
    best = max(choices.count(c) for c in range(3))
    if agree.stuck():
        assert best < majority(7)
