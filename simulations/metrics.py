"""What a run measures, kept incrementally while it runs, and the plain-data results.

Views
-----
The collector mirrors every member's membership list from the events the member emits
(`MemberJoined`/`MemberAlive`/`MemberUpdated`: alive, `MemberSuspected`: suspect,
`MemberFailed`: dead, `MemberLeft`: left; a reaped member stays "not up"). A member is
*up* in a view when it is alive or suspect, as memberlist's ``Members()`` lists it.

*Observers* are running members (started, not crashed, not paused, not leaving). The
*truth* about a member is "up" while its process exists (running or paused) and has not
left. The disagreement is the number of (observer, other member) pairs where the
observer's view differs from the truth; the cluster is *converged* when it is 0. It is
kept in O(1) per event with per-member counters::

    up_count[x] = observers (other than x) that see x up
    wrong       = sum over truly-up x of (observers other than x - up_count[x])
                + sum over truly-down x of up_count[x]

Distinct views are counted with Zobrist hashing: each member has a random 64-bit token
(from the run seed) and a view's hash is the XOR of the tokens of the members it sees up
(itself included), updated in O(1) per change.

Detection and false positives
-----------------------------
For each crash (and graceful leave) the collector records the first `MemberSuspected`
and the first `MemberFailed` about the member anywhere after it, and the time at which
no observer sees it up any more. A `MemberFailed` about a member whose process exists is
a false positive (a paused, stalled or slow member is alive, so a failure about it is
false); failures about a member that restarted less than ``restart_grace_s`` ago are not
counted (they may be about its previous process).

A member is *healthy* unless a fault of the run acts on it (`faults.anomalous_members`:
the Lifeguard paper's anomalous members, anomalous for the whole run), or it is paused
or stalled right now. Two countings of the same false failures, both exact (only the
`FalsePositives.samples` list is capped):

* once per raiser, as the Lifeguard paper counts them: a failure is *raised* by the
  member whose suspicion timed out and who declared it (the ``accuser`` of
  `MemberFailed`; its own event, whose observer is the accuser, is the declaration).
  `FalsePositives.fp` counts raises about healthy members (the paper's FP),
  `FalsePositives.fp_minus` those of them raised by a healthy member (FP-), and
  `FalsePositives.raised` every raise about a live member;
* once per observer: `FalsePositives.total` counts every `MemberFailed` about a live
  member at every member that emitted one (a declaration that spreads to all n members
  counts about n times), split by the observer's, the subject's and the accuser's
  health.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import attrs

from swim.core.events import (
    Event,
    JoinCompleted,
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    MemberUpdated,
    UserBroadcastReceived,
    UserMessageReceived,
)

# Beliefs: what an observer believes about a member.
UNKNOWN, ALIVE, SUSPECT, DEAD, LEFT = 0, 1, 2, 3, 4
_UP = (False, True, True, False, False)
_BELIEF_OF: dict[type, int] = {
    MemberJoined: ALIVE,
    MemberAlive: ALIVE,
    MemberUpdated: ALIVE,
    MemberSuspected: SUSPECT,
    MemberFailed: DEAD,
    MemberLeft: LEFT,
}
_EVENT_NAMES: dict[type, str] = {
    MemberJoined: "joined",
    MemberAlive: "alive",
    MemberUpdated: "updated",
    MemberSuspected: "suspected",
    MemberFailed: "failed",
    MemberLeft: "left",
    JoinCompleted: "join_completed",
    UserMessageReceived: "user_message",
    UserBroadcastReceived: "user_broadcast",
}

#: Node health as the false-positive accounting sees it.
HEALTHY, FAULTY, DOWN = 0, 1, 2

#: At most this many false positives are kept individually in a result.
MAX_FP_SAMPLES = 200


# =========================================================================== results


@attrs.frozen(kw_only=True)
class Detection:
    """How one crash (or graceful leave) was detected. Times are absolute; the
    ``*_s`` fields are the delays since `at` (None: never, within the run)."""

    member: int
    name: str
    kind: str
    at: float
    first_suspected_at: float | None
    first_failed_at: float | None
    #: When no observer saw the member up any more.
    all_know_at: float | None
    #: The member came back (restart) before everyone knew.
    restarted: bool
    first_suspected_s: float | None
    first_failed_s: float | None
    all_know_s: float | None


@attrs.frozen(kw_only=True)
class FalsePositive:
    """One `MemberFailed` about a member that was not down."""

    at: float
    observer: str
    subject: str
    accuser: str
    observer_healthy: bool
    subject_healthy: bool
    #: The observer is the accuser: this event is the declaration itself (a raise).
    raised: bool = False


@attrs.frozen(kw_only=True)
class FalsePositives:
    """Failures declared about live members (the module doc), exact counts.

    Once per raiser (the Lifeguard paper's counting): `raised`, `fp`, `fp_minus`.
    Once per observer that emitted the event: `total` and its splits.
    """

    #: `MemberFailed` events about live members, at every observer.
    total: int
    #: Of `total`: emitted by a healthy observer vs by an anomalous (or paused) one.
    by_healthy: int
    by_faulty: int
    #: Of `total`: about a healthy member.
    about_healthy: int
    #: Of `total`: whose accuser (the member whose suspicion timed out) was healthy.
    accused_by_healthy: int
    #: The first `MAX_FP_SAMPLES` events of `total`, individually.
    samples: tuple[FalsePositive, ...]
    #: Declarations about live members, once per raiser (the accuser's own event).
    raised: int = 0
    #: The paper's FP: of `raised`, those about a healthy member (any raiser).
    fp: int = 0
    #: The paper's FP-: of `fp`, those raised by a healthy member.
    fp_minus: int = 0


@attrs.frozen(kw_only=True)
class Convergence:
    """Time for every observer's view to match the truth after a marker (join, heal...)."""

    label: str
    at: float
    converged_at: float | None
    took_s: float | None


@attrs.frozen(kw_only=True)
class ViewSample:
    """The views at one instant."""

    at: float
    observers: int
    #: Members whose process exists (running or paused) and has not left.
    up: int
    #: (observer, member) pairs where the view differs from the truth.
    disagreement: int
    #: `disagreement` over the number of pairs.
    disagreement_frac: float
    distinct_views: int


@attrs.frozen(kw_only=True)
class MemberTraffic:
    """One member's traffic over the run (all its processes), counted by the network."""

    member: int
    name: str
    #: Seconds its processes were running (paused time included).
    up_s: float
    datagrams_out: int
    datagrams_in: int
    messages_out: int
    messages_in: int
    bytes_out: int
    bytes_in: int
    streams_out: int
    stream_bytes_out: int
    stream_bytes_in: int
    #: Per protocol period (probe_interval_s) of running time.
    datagrams_out_per_period: float
    datagrams_in_per_period: float
    messages_out_per_period: float
    bytes_out_per_period: float
    bytes_in_per_period: float


@attrs.frozen(kw_only=True)
class TrafficSummary:
    """Means and maxima over members of the per-period rates."""

    datagrams_out_per_period_mean: float
    datagrams_out_per_period_max: float
    datagrams_in_per_period_mean: float
    messages_out_per_period_mean: float
    bytes_out_per_period_mean: float
    bytes_out_per_period_max: float
    bytes_in_per_period_mean: float
    total_datagrams: int
    total_bytes: int
    total_stream_bytes: int
    #: Protocol messages sent (several may share one datagram) and streams opened.
    total_messages: int = 0
    total_streams: int = 0


@attrs.frozen(kw_only=True)
class NetworkCounters:
    """What the network did with the datagrams it was given."""

    sent: int
    delivered: int
    lost: int
    duplicated: int
    #: Dropped by a partition or a one-way loss window.
    blocked: int
    #: Held by a clogged link (then delivered).
    clogged: int
    #: Addressed to a member that was down, paused or unknown.
    undeliverable: int
    streams: int
    streams_failed: int
    #: Held in a stalled member's buffer (then handled when it resumed).
    queued: int = 0
    #: Dropped because a stalled member's buffer was full.
    overflowed: int = 0


@attrs.frozen(kw_only=True)
class LinkBytes:
    """Traffic on one directed link (when the run counts links)."""

    src: int
    dst: int
    datagrams: int
    bytes: int


@attrs.frozen(kw_only=True)
class RunResult:
    """Everything one run measured, as plain data. Always carries its seed and config."""

    seed: int
    mode: str
    nodes: int
    duration_s: float
    #: The scenario (config, network, faults) as plain data.
    scenario: dict[str, Any]
    wall_s: float
    #: Heap entries processed (datagrams, stream legs, timers, faults).
    sim_events: int
    sim_events_per_s: float
    #: Simulated member-seconds per wall-clock second.
    member_s_per_wall_s: float
    detections: tuple[Detection, ...]
    false_positives: FalsePositives
    convergence: tuple[Convergence, ...]
    timeline: tuple[ViewSample, ...]
    distinct_views_max: int
    distinct_views_final: int
    #: Largest disagreement after the cluster first converged (None: never converged).
    disagreement_peak: int | None
    disagreement_peak_frac: float | None
    disagreement_final: int
    disagreement_final_frac: float
    event_counts: dict[str, int]
    traffic: TrafficSummary
    members: tuple[MemberTraffic, ...]
    network: NetworkCounters
    links: tuple[LinkBytes, ...] | None
    #: SHA-256 of every delivered datagram, stream and event (when traced).
    trace_digest: str | None

    def to_dict(self) -> dict[str, Any]:
        """The whole result as JSON-ready nested dicts and lists."""
        return attrs.asdict(self)

    def detection_rows(self) -> list[dict[str, Any]]:
        """One dict per detection, with the seed (ready for ``pandas.DataFrame``)."""
        return [{"seed": self.seed, **attrs.asdict(d)} for d in self.detections]

    def member_rows(self) -> list[dict[str, Any]]:
        """One dict per member's traffic, with the seed."""
        return [{"seed": self.seed, **attrs.asdict(m)} for m in self.members]

    def timeline_rows(self) -> list[dict[str, Any]]:
        """One dict per view sample, with the seed."""
        return [{"seed": self.seed, **attrs.asdict(s)} for s in self.timeline]

    def summary_row(self) -> dict[str, Any]:
        """One flat dict of the headline numbers (for sweeps)."""
        return {
            "seed": self.seed,
            "nodes": self.nodes,
            "duration_s": self.duration_s,
            "mode": self.mode,
            **crash_summary(self.detections),
            "false_positives": self.false_positives.total,
            "fp_by_healthy": self.false_positives.by_healthy,
            "fp_about_healthy": self.false_positives.about_healthy,
            "failures_raised": self.false_positives.raised,
            "fp": self.false_positives.fp,
            "fp_minus": self.false_positives.fp_minus,
            "datagrams_out_per_period": self.traffic.datagrams_out_per_period_mean,
            "bytes_out_per_period": self.traffic.bytes_out_per_period_mean,
            "total_datagrams": self.traffic.total_datagrams,
            "total_messages": self.traffic.total_messages,
            "total_bytes": self.traffic.total_bytes,
            "disagreement_final": self.disagreement_final,
            "wall_s": self.wall_s,
        }


def crash_summary(detections: Iterable[Detection]) -> dict[str, Any]:
    """Crashes, mean delays to first suspicion / first failure / known to all, and how
    many crashes never became known to all (restarted members excepted)."""
    crashes = [d for d in detections if d.kind == "crash"]

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    return {
        "crashes": len(crashes),
        "first_suspected_s_mean": mean([d.first_suspected_s for d in crashes]),
        "first_failed_s_mean": mean([d.first_failed_s for d in crashes]),
        "all_know_s_mean": mean([d.all_know_s for d in crashes]),
        "undetected": sum(1 for d in crashes if d.all_know_s is None and not d.restarted),
    }


# ========================================================================= collector


@attrs.define(eq=False, slots=True)
class _Departure:
    member: int
    kind: str
    at: float
    first_suspected_at: float | None = None
    first_failed_at: float | None = None
    all_know_at: float | None = None
    restarted: bool = False


@attrs.define(eq=False, slots=True)
class _Marker:
    label: str
    at: float
    converged_at: float | None = None


class Collector:
    """Incremental views, detections and false positives for one run (see module doc)."""

    def __init__(self, names: list[str], *, seed: int, restart_grace_s: float) -> None:
        n = len(names)
        self.n = n
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}
        self.restart_grace_s = restart_grace_s
        token_rng = random.Random(f"{seed}/zobrist")
        self.token = [token_rng.getrandbits(64) for _ in range(n)]
        self.beliefs = [bytearray(n) for _ in range(n)]
        self.view_hash = list(self.token)
        self.up_count = [0] * n
        self.truth = bytearray(n)
        self.observer = bytearray(n)
        self.health = bytearray([DOWN]) * n
        self.grace_until = [-1.0] * n
        # Aggregates for the disagreement (module doc).
        self.n_up = 0
        self.n_obs = 0
        self.n_both = 0
        self.up_sum_true = 0
        self.up_sum_false = 0
        # Detection.
        self.departures: list[_Departure] = []
        self.open_departure: dict[int, _Departure] = {}
        # False positives.
        self.fp_total = 0
        self.fp_by_healthy = 0
        self.fp_about_healthy = 0
        self.fp_accused_by_healthy = 0
        self.fp_raised = 0
        self.fp_paper = 0
        self.fp_minus = 0
        self.fp_samples: list[FalsePositive] = []
        self.event_counts: dict[str, int] = {}
        # Convergence.
        self.markers: list[_Marker] = []
        self.pending_markers: list[_Marker] = []
        self.peak: int | None = None
        self.timeline: list[ViewSample] = []
        #: JoinCompleted events not ok, as (member, at), for the engine's join retries.

    # ----------------------------------------------------------------- disagreement

    @property
    def wrong(self) -> int:
        """Observer/member pairs whose view differs from the truth."""
        return (self.n_up * self.n_obs - self.n_both - self.up_sum_true + self.up_sum_false)

    def _after_change(self, now: float) -> None:
        wrong = self.wrong
        if wrong == 0:
            if self.pending_markers:
                for marker in self.pending_markers:
                    marker.converged_at = now
                self.pending_markers = []
                if self.peak is None:
                    self.peak = 0
        elif self.peak is not None and wrong > self.peak:
            self.peak = wrong

    def _flip_up(self, x: int, delta: int) -> None:
        self.up_count[x] += delta
        if self.truth[x]:
            self.up_sum_true += delta
        else:
            self.up_sum_false += delta

    def set_node(self, i: int, *, truth: bool, observer: bool, health: int, now: float) -> None:
        """Member `i` changed state (started, crashed, paused, resumed, left...)."""
        self.health[i] = health
        if bool(self.truth[i]) != truth:
            count = self.up_count[i]
            if truth:
                self.n_up += 1
                self.n_both += self.observer[i]
                self.up_sum_true += count
                self.up_sum_false -= count
            else:
                self.n_up -= 1
                self.n_both -= self.observer[i]
                self.up_sum_true -= count
                self.up_sum_false += count
            self.truth[i] = truth
        if bool(self.observer[i]) != observer:
            delta = 1 if observer else -1
            self.n_obs += delta
            self.n_both += delta * self.truth[i]
            self.observer[i] = observer
            row = self.beliefs[i]
            if row.count(0) != self.n:
                for x, belief in enumerate(row):
                    if _UP[belief] and x != i:
                        self._flip_up(x, delta)
                        self._check_all_know(x, now)
        self._after_change(now)

    def reset_view(self, i: int) -> None:
        """Member `i` runs a fresh process (knows only itself); call while not observing."""
        self.beliefs[i] = bytearray(self.n)
        self.view_hash[i] = self.token[i]

    def bootstrap(self, started: list[int], now: float) -> None:
        """Every member in `started` knows every other as alive (a converged start).

        Call before any of them is an observer or up.
        """
        template = bytearray(self.n)
        full_hash = 0
        for x in started:
            template[x] = ALIVE
            full_hash ^= self.token[x]
        for i in started:
            row = bytearray(template)
            row[i] = UNKNOWN
            self.beliefs[i] = row
            self.view_hash[i] = full_hash
        for i in started:
            self.up_count[i] = 0
        for i in started:
            self.observer[i] = 1
            self.truth[i] = 1
            self.health[i] = HEALTHY
            self.up_count[i] = len(started) - 1
        k = len(started)
        self.n_obs += k
        self.n_up += k
        self.n_both += k
        self.up_sum_true += k * (k - 1)
        self._after_change(now)

    # ------------------------------------------------------------------------ events

    def on_events(self, o: int, events: list[Event], now: float) -> None:
        """Events drained from member `o`'s core."""
        counts = self.event_counts
        beliefs = self.beliefs[o]
        observing = self.observer[o]
        index = self.index
        for event in events:
            kind = type(event)
            name = _EVENT_NAMES.get(kind, "other")
            counts[name] = counts.get(name, 0) + 1
            new = _BELIEF_OF.get(kind)
            if new is None:
                continue
            x = index.get(event.member.name, -1)  # type: ignore[union-attr]
            if x < 0 or x == o:
                continue
            old = beliefs[x]
            beliefs[x] = new
            if _UP[old] != _UP[new]:
                self.view_hash[o] ^= self.token[x]
                if observing:
                    self._flip_up(x, 1 if _UP[new] else -1)
                    if not _UP[new]:
                        self._check_all_know(x, now)
                    self._after_change(now)
            if new in (SUSPECT, DEAD):
                departure = self.open_departure.get(x)
                if departure is not None:
                    if new == SUSPECT:
                        if departure.first_suspected_at is None:
                            departure.first_suspected_at = now
                    elif departure.first_failed_at is None:
                        departure.first_failed_at = now
                if new == DEAD:
                    self._judge_failure(o, x, event, now)  # type: ignore[arg-type]

    def _judge_failure(self, o: int, x: int, event: MemberFailed, now: float) -> None:
        health = self.health
        if health[x] == DOWN or now < self.grace_until[x]:
            return
        self.fp_total += 1
        observer_healthy = health[o] == HEALTHY
        subject_healthy = health[x] == HEALTHY
        self.fp_by_healthy += observer_healthy
        self.fp_about_healthy += subject_healthy
        a = self.index.get(event.accuser, -1)
        self.fp_accused_by_healthy += a >= 0 and health[a] == HEALTHY
        # The raiser's own event is the declaration: counted once, as the paper does.
        raised = a == o
        if raised:
            self.fp_raised += 1
            if subject_healthy:
                self.fp_paper += 1
                self.fp_minus += observer_healthy
        if len(self.fp_samples) < MAX_FP_SAMPLES:
            self.fp_samples.append(
                FalsePositive(
                    at=now, observer=self.names[o], subject=self.names[x],
                    accuser=event.accuser, observer_healthy=observer_healthy,
                    subject_healthy=subject_healthy, raised=raised,
                )
            )

    def _check_all_know(self, x: int, now: float) -> None:
        if self.up_count[x] == 0:
            departure = self.open_departure.get(x)
            if departure is not None and departure.all_know_at is None:
                departure.all_know_at = now
                del self.open_departure[x]

    # ---------------------------------------------------------------- fault hooks

    def departed(self, x: int, kind: str, now: float) -> None:
        """Member `x` crashed or started leaving at `now` (call after `set_node`)."""
        old = self.open_departure.pop(x, None)
        if old is not None:
            old.restarted = True
        departure = _Departure(x, kind, now)
        self.departures.append(departure)
        self.open_departure[x] = departure
        self._check_all_know(x, now)

    def restarted(self, x: int, now: float) -> None:
        """Member `x` runs again as a new process."""
        old = self.open_departure.pop(x, None)
        if old is not None:
            old.restarted = True
        self.grace_until[x] = now + self.restart_grace_s

    def mark(self, label: str, now: float) -> None:
        """Record a convergence marker: the time until views match the truth after it."""
        marker = _Marker(label, now)
        self.markers.append(marker)
        self.pending_markers.append(marker)
        self._after_change(now)

    def sample(self, now: float) -> None:
        """Append a `ViewSample` for `now`."""
        pairs = self.n_obs * max(self.n_up - 1, 0)
        wrong = self.wrong
        hashes = {self.view_hash[o] for o in range(self.n) if self.observer[o]}
        self.timeline.append(
            ViewSample(
                at=now, observers=self.n_obs, up=self.n_up, disagreement=wrong,
                disagreement_frac=wrong / pairs if pairs else 0.0,
                distinct_views=len(hashes),
            )
        )

    # ----------------------------------------------------------------------- results

    def pairs(self) -> int:
        return self.n_obs * max(self.n_up - 1, 0)

    def detections(self) -> tuple[Detection, ...]:
        out = []
        for d in self.departures:
            def since(t: float | None, d: _Departure = d) -> float | None:
                return None if t is None else t - d.at

            out.append(
                Detection(
                    member=d.member, name=self.names[d.member], kind=d.kind, at=d.at,
                    first_suspected_at=d.first_suspected_at, first_failed_at=d.first_failed_at,
                    all_know_at=d.all_know_at, restarted=d.restarted,
                    first_suspected_s=since(d.first_suspected_at),
                    first_failed_s=since(d.first_failed_at),
                    all_know_s=since(d.all_know_at),
                )
            )
        return tuple(out)

    def false_positives(self) -> FalsePositives:
        return FalsePositives(
            total=self.fp_total,
            by_healthy=self.fp_by_healthy,
            by_faulty=self.fp_total - self.fp_by_healthy,
            about_healthy=self.fp_about_healthy,
            accused_by_healthy=self.fp_accused_by_healthy,
            samples=tuple(self.fp_samples),
            raised=self.fp_raised,
            fp=self.fp_paper,
            fp_minus=self.fp_minus,
        )

    def convergence(self) -> tuple[Convergence, ...]:
        return tuple(
            Convergence(
                label=m.label, at=m.at, converged_at=m.converged_at,
                took_s=None if m.converged_at is None else m.converged_at - m.at,
            )
            for m in self.markers
        )
