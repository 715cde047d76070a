"""`StableViews`: one member's stable-view mode, wiring the pure parts to the core.

Theory of operation (Rapid, Suresh et al., ATC 2018, on SWIM's machinery):

1. Monitoring. The member probes, in turn, its K subjects in the current configuration
   (`rings.Rings.subjects_of`) and the outsiders it is a temporary observer of
   (`rings.Rings.observers_of` an outsider), using the core's ordinary prober (ping,
   ping-req helpers, Lifeguard nacks). Failed probes no longer raise SWIM suspicions;
   each outcome goes to `probe_result`. A new joiner (an outsider never removed from a
   view we held) is also sent one *admission ping* of its own as soon as we start
   watching it, outside the rotation (at most `ADMISSION_PINGS` per protocol period):
   its ack counts as an answered probe (`admission_ack`). Otherwise every observer
   would reach its joiners one per protocol period, after its subjects, and a mass
   join would take as many periods as an observer has joiners. Members removed before
   get no such ping: their readmission clock runs on the rotation alone.
2. Alerts. When an edge to a subject turns faulty (`admission.EdgeMonitor`), or an
   outsider has answered probes long enough (`admission.Admission`: ``join_after_s``
   for a new joiner, ``readmit_after_s`` for a member removed before), the member
   alerts for the rings it observes that member on. Alerts are irrevocable for the
   configuration, and gossiped in bundles the way votes are: a `StableAlerts` carries
   one subject and a bitmap of the rings whose observers' alerts the sender has
   counted (the observers are the configuration's, so they need no names), and a
   member that learns new rings for a subject queues its own bundle for it again
   (replacing the queued one), with the membership news (piggybacked and batched,
   transmit-limited). A graceful leave, the subject's own alert, is a `StableAlert`.
3. Cut detection and votes. Every alert goes to the member's `cut.CutDetector`; when
   it proposes a cut, the member votes for it once. Votes are counted by
   `agreement.Agreement` and gossiped in bundles: a `StableVote` carries a cut and a
   bitmap of every voter for it the sender has counted, and a member that learns new
   voters for a cut queues its own bundle for that cut again (replacing the queued
   one), so a thousand votes spread as a few hundred-byte messages rather than a
   thousand messages relayed by everyone. A decided cut is applied at once:
   the next configuration (same member set, epoch and id everywhere) and ONE
   `ViewChanged` event carrying the whole cut. After a change the member alerts again
   about subjects whose edges are still faulty (alerts do not carry over), and stops
   spreading the old configuration's alerts and votes but for the vote bundle that
   decided (it holds a quorum), which it also sends straight to its subjects in the
   old configuration, so members still short of the quorum decide without waiting for
   a digest. When the votes heard prove the
   round split (no cut can reach a majority), it votes again in the next round.
4. Catching up. Every ``digest_interval_s`` (``outsider_digest_interval_s`` while it
   is outside its own view) the member sends a `ViewDigest` (epoch, id, and how many
   alerts and votes it holds) to one random member; so does a member that hears an
   alert or vote for another configuration, to its sender. The end that
   holds the older epoch is sent the newer configuration as `ViewSync` parts, which
   it checks against the id before adopting it: this is how members that missed
   votes, joiners, members removed from the view and the minority side of a healed
   partition learn the current view. In the same configuration, the end that holds
   fewer alerts and votes is sent all of the other's (gossip is transmit-limited, so
   one member may miss an alert that no one will send again: without this its
   detector could wait forever on a subject it sees short of H).

Joins: a joiner (`joining`) drops the one-member configuration it started with and
holds none (epoch 0) until a `ViewSync` arrives; the join push-pull puts it in its seeds'
membership tables, gossip spreads it, and its temporary observers vouch for it. A member
removed from the view stays in the tables, so it is an outsider at once and is
readmitted the same way once it has stayed reachable for ``readmit_after_s``. An
outsider that fails every probe of a temporary observer for ``forget_after_s`` is
`forgotten`: that observer has the core declare it dead in the membership table, the
`Dead` spreads as ordinary membership news, and every member reaps it after
``gossip_to_the_dead_s``, so nobody probes it any more (no event: it left the view
before, and SWIM's per-member events are not raised in this mode). A flapper that
comes back after that hears of its death (gossip to the dead) and refutes, or rejoins
by its own push-pull, and is readmitted as above.
Graceful leave (`leave`): the member alerts about itself, which counts for all K rings.

What is guaranteed is `agreement`'s: members that decide in a configuration decide the
same cut. See there for partitions (the minority side keeps its old view until the
heal), split votes and tiny clusters.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import attrs

from swim.core.codec import DATAGRAM_OVERHEAD, encode_message
from swim.core.config import Config
from swim.core.dissemination import Dissemination
from swim.core.events import (
    Event,
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    ViewChanged,
)
from swim.core.messages import (
    Address,
    MemberState,
    MemberStatus,
    Message,
    Ping,
    StableAlert,
    StableAlerts,
    StableVote,
    ViewDigest,
    ViewSync,
)
from swim.core.roster import Roster
from swim.core.stable.admission import Admission, EdgeMonitor
from swim.core.stable.agreement import Agreement
from swim.core.stable.cut import Cut, CutDetector
from swim.core.stable.rings import Configuration, Rings, rings_of
from swim.core.stable.sync import SyncAssembly, sync_parts

_INF: Final = float("inf")
_SUSPECT: Final = MemberStatus.SUSPECT
#: SWIM's per-member events, which the stable mode replaces by `ViewChanged`.
_SWIM_EVENTS: Final = (MemberJoined, MemberSuspected, MemberAlive, MemberFailed, MemberLeft)
#: Most view changes one input may cause (a decision's re-alerts may decide again).
_MAX_SETTLE: Final = 8
#: Most peers remembered for the digest and sync rate limits.
_RATE_MEMORY: Final = 4096
#: Most admission pings sent per protocol period (the rest wait for the next period).
ADMISSION_PINGS: Final = 16
#: Most admission pings awaiting their ack (the oldest is forgotten first).
_PINGS_MEMORY: Final = 1024


@attrs.define(eq=False)
class StableCounters:
    """What the stable-view mode did and ignored, besides the detector's and the
    agreement's own counters (`CutDetector.counters`, `Agreement.counters`, reset
    with each configuration)."""

    alerts_sent: int = 0
    votes_sent: int = 0
    view_changes: int = 0
    #: View changes we decided on the fast path (¾ of the view) and the slow path.
    fast_decisions: int = 0
    slow_decisions: int = 0
    #: Views adopted from a `ViewSync` (we were behind).
    views_adopted: int = 0
    digests_sent: int = 0
    syncs_sent: int = 0
    #: Times we sent a peer in our view the alerts and votes it lacked.
    evidence_sent: int = 0
    #: Alerts and votes for a configuration we held before (still spreading).
    late_input: int = 0
    #: Alerts and votes for a configuration we never held (we compare views).
    stale_input: int = 0
    #: `ViewSync` parts for a view no newer than ours (both ends pushed at once).
    late_syncs: int = 0
    #: Vote bundles whose bitmap does not fit the configuration.
    bad_votes: int = 0
    #: Alerts whose rings or kind (join, removal) do not fit the configuration.
    bad_alerts: int = 0
    #: Digests of the same epoch with another id (should not happen).
    forked: int = 0
    #: Outsiders we had declared dead after ``forget_after_s`` without an answer.
    forgotten: int = 0
    #: Admission pings sent to new joiners, and the acks they brought.
    admission_pings: int = 0
    admission_acks: int = 0


class StableViews:
    """The stable-view mode of one member (see the module doc)."""

    def __init__(
        self, config: Config, dissemination: Dissemination, roster: Roster,
        rng: random.Random, *, name: str, now: float,
        next_seq: Callable[[], int] | None = None,
    ) -> None:
        """`next_seq` draws the prober's sequence numbers, for admission pings (None:
        no admission pings, joiners wait for the rotation)."""
        params = config.stable
        self.params: Final = params
        self.name: Final = name
        self._cut_params = params.cut_params()
        self._dis = dissemination
        self._roster = roster
        self._rng = rng
        self.counters: Final = StableCounters()
        self._edges = EdgeMonitor(params.edge_params())
        self._admission = Admission(
            join_after_s=params.join_after_s, readmit_after_s=params.readmit_after_s,
            forget_after_s=params.forget_after_s,
        )
        self._digest_at = now + rng.uniform(0.0, params.digest_interval_s)
        self._started_at = now
        self._last_digest: dict[Address, float] = {}
        self._last_sync: dict[Address, float] = {}
        self._assembly = SyncAssembly()
        self._targets: list[str] = []
        self._target_index = 0
        #: Outsiders we just started watching: probed before the rotation goes on.
        self._urgent: collections.deque[str] = collections.deque()
        self._next_seq = next_seq
        #: New joiners we started watching, owed an admission ping.
        self._to_ping: collections.deque[str] = collections.deque()
        #: Admission pings awaiting their ack: seq -> the joiner pinged.
        self._pings: dict[int, str] = {}
        self._outsiders_key: tuple[int, int] = (-1, -1)
        self._watched: set[str] = set()
        #: The ids of the last few configurations we held (input for them is late).
        self._previous_ids: collections.deque[int] = collections.deque(maxlen=4)
        # A member started on its own founds a one-member configuration (epoch 1).
        self._conf: Configuration | None = None
        self._install(Configuration.of([name], 1), now, announce=False)

    # ================================================================= read-outs

    @property
    def configuration(self) -> Configuration | None:
        """The current view (None: joining, none received yet)."""
        return self._conf

    @property
    def detector(self) -> CutDetector | None:
        """The current configuration's cut detector."""
        return self._detector if self._conf is not None else None

    @property
    def agreement(self) -> Agreement | None:
        """The current configuration's votes."""
        return self._agreement if self._conf is not None else None

    @property
    def syncs_rejected(self) -> int:
        """`ViewSync` parts refused, and configurations that did not match their id."""
        return self._assembly.rejected

    @property
    def is_member(self) -> bool:
        """True if this member is in its own current view."""
        return self._conf is not None and self.name in self._conf

    def project(self, state: MemberState) -> MemberState:
        """`state` with the view's status: alive in the current configuration (and
        ourselves, always), dead outside it, left if it left."""
        conf = self._conf
        name = state.name
        if name == self.name or (conf is not None and name in conf):
            status = MemberStatus.ALIVE
        elif state.status == MemberStatus.LEFT:
            return state
        else:
            status = MemberStatus.DEAD
        return state if state.status == status else attrs.evolve(state, status=status)

    def keep_event(self, event: Event) -> bool:
        """False for SWIM's per-member events, which this mode replaces."""
        return not isinstance(event, _SWIM_EVENTS)

    def deadline(self) -> float:
        """The mode's next deadline: a reinforcement, the slow path, a digest."""
        when = self._digest_at
        if self._conf is not None:
            when = min(when, self._agreement.deadline())
            if self.is_member:  # only members reinforce
                when = min(when, self._detector.deadline())
        return when

    # ============================================================ lifecycle inputs

    def bootstrap(self, names: Iterable[str], now: float) -> None:
        """Start in the configuration of `names` (epoch 1), as if formed long ago."""
        self._install(Configuration.of(names, 1), now, announce=False)

    def joining(self) -> None:
        """We join an existing cluster: drop the one-member view we founded and wait
        for the cluster's (a view we already share with others is kept)."""
        conf = self._conf
        if conf is not None and conf.members == (self.name,) and conf.epoch == 1:
            self._conf = None
            self._targets = []
            # Outside the view now: compare views at the outsiders' pace from the start.
            self._digest_at = min(self._digest_at, self._started_at + self._rng.uniform(
                0.0, self.params.outsider_digest_interval_s))

    def leave(self, now: float) -> list[Event]:
        """Leave gracefully: alert about ourselves (it counts for all K rings)."""
        if not self.is_member:
            return []
        self._alert(self.name, False, (), now)
        return self._settle(now)

    # =============================================================== probing

    def next_probe_target(self) -> MemberState | None:
        """The next subject or watched outsider to probe, in turn (None: nobody).
        Called once per protocol period, it also sends that period's admission pings."""
        self._refresh_outsiders()
        if self._to_ping:
            self._send_admission_pings()
        while self._urgent:
            state = self._roster.get(self._urgent.popleft())
            if state is not None and state.status <= _SUSPECT and state.name in self._watched:
                return state
        targets = self._targets
        for _ in range(len(targets)):
            if self._target_index >= len(targets):
                self._target_index = 0
            name = targets[self._target_index]
            self._target_index += 1
            state = self._roster.get(name)
            if state is not None and state.status <= _SUSPECT:
                return state
        return None

    def probe_result(self, name: str, ok: bool, now: float) -> list[Event]:
        """The outcome of our probe of `name`: feeds the edge detector or, for an
        outsider we watch, the admission hysteresis; may alert."""
        conf = self._conf
        if conf is None or not self.is_member:
            return []
        if name in conf:
            if name in self._subjects and self._edges.record(name, ok):
                self._alert_edge(name, now)
        elif name in self._watched:
            self._admission.probe_result(name, ok, now)
            if ok and self._admission.ready(name, now) and name not in self._alerted:
                self._alert(name, True, self._rings.rings_observed_by(self.name, name), now)
        return self._settle(now)

    def is_admission_ack(self, seq: int) -> bool:
        """True if an ack with `seq` answers one of our admission pings."""
        return seq in self._pings

    def admission_ack(self, seq: int, now: float) -> list[Event]:
        """The ack of an admission ping: an answered probe of that joiner."""
        name = self._pings.pop(seq, None)
        if name is None or name not in self._watched:
            return []
        self.counters.admission_acks += 1
        return self.probe_result(name, True, now)

    def forgotten(self, name: str, now: float) -> MemberState | None:
        """After a failed probe of `name`: its state if it is an outsider we watch that
        has failed every probe of ours for ``forget_after_s``. The caller declares it
        dead (at that state's incarnation) in the membership table, so it is reaped
        everywhere and probed no more. None otherwise."""
        if name not in self._watched:
            return None
        state = self._roster.get(name)
        if (state is None or state.status > _SUSPECT
                or not self._admission.gone(name, now, state.incarnation)):
            return None
        self._admission.forgotten(name, state.incarnation)
        self.counters.forgotten += 1
        return state

    # =============================================================== messages

    def receive(self, msg: Message, addr: Address, now: float) -> list[Event]:
        """A stable-view message from `addr`."""
        match msg:
            case StableAlerts():
                return self._on_alerts(msg, addr, now)
            case StableAlert():
                return self._on_alert(msg, addr, now)
            case StableVote():
                return self._on_vote(msg, addr, now)
            case ViewDigest():
                self._on_digest(msg, addr, now)
            case ViewSync():
                return self._on_sync(msg, now)
            case _:
                pass
        return []

    def handle_timer(self, now: float) -> list[Event]:
        """Reinforcements, the slow path of the vote, and the periodic digest."""
        if self.is_member:
            for subject, up, rings in self._detector.reinforcements(self.name, now):
                self._alert(subject, up, rings, now)
        events = self._settle(now)
        if now >= self._digest_at:
            self._digest_at = now + (self.params.digest_interval_s if self.is_member
                                     else self.params.outsider_digest_interval_s)
            peer = self._digest_peer()
            if peer is not None:
                self._send_digest(peer.addr, now, force=True)
        return events

    # ============================================================== internals

    def _install(self, conf: Configuration, now: float, *, announce: bool,
                 decided: bool = False) -> list[Event]:
        """Move to `conf`: a fresh detector and vote, new subjects; the event."""
        old = self._conf
        before = set(old.members) if old is not None else set()
        if old is not None:
            self._previous_ids.append(old.id)
        joined = tuple(m for m in conf.members if m not in before)
        removed = tuple(sorted(before.difference(conf.members)))
        decisive: StableVote | None = None
        if decided:
            # Everyone who decides stops spreading the old configuration's alerts and
            # votes, but for the vote bundle that decided: it holds a quorum, so a
            # member still short of one decides as soon as it hears it. The rest of
            # the way, members that are behind catch up by digest.
            for key in self._queued:
                self._dis.forget(key)
            cut = self._agreement.decided
            if cut is not None and cut in self._bitmaps:
                decisive = self._vote_bundle(cut)
                # And our subjects there, straight away: most gossip may go to members
                # outside that view (joiners), which cannot count it.
                for name in dict.fromkeys(self._rings.subjects_of(self.name)):
                    state = self._roster.get(name)
                    if state is not None and name not in removed:
                        self._dis.send_one(state.addr, decisive)
        #: The keys we queued gossip under in this configuration (an ordered set: a
        #: bundle is queued again under its key each time it grows).
        self._queued: dict[tuple[object, ...], None] = {}
        self._conf = conf
        self._index: dict[str, int] = {m: i for i, m in enumerate(conf.members)}
        #: Per cut voted for: the bitmap of the voters counted (see `StableVote`).
        self._bitmaps: dict[Cut, bytearray] = {}
        self._rings: Rings = rings_of(conf, self._cut_params.k)
        self._detector: CutDetector = CutDetector(
            self._cut_params, self._rings, reinforce_after_s=self.params.reinforce_after_s,
            max_cut=self.params.max_cut,
        )
        self._agreement: Agreement = Agreement(
            conf, fallback_after_s=self.params.vote_fallback_s
        )
        self._alerted: set[str] = set()
        #: Per subject, the bitmap of rings whose observers' alerts we counted (see
        #: `StableAlerts`); and the graceful leaves (a member's alert about itself).
        self._alert_rings: dict[str, int] = {}
        self._leaves: dict[str, StableAlert] = {}
        self._voted = False
        subjects = self._rings.subjects_of(self.name)
        self._subjects: set[str] = set(subjects)
        self._edges.keep_only(self._subjects)
        for name in removed:
            self._admission.removed(name, now)
        for name in joined:
            self._admission.admitted(name)
        self._outsiders_key = (-1, -1)
        events: list[Event] = []
        if announce:
            self.counters.view_changes += 1
            events.append(ViewChanged(
                config_id=conf.id, epoch=conf.epoch, members=conf.members, joined=joined,
                removed=removed, at=now,
            ))
        if decisive is not None:
            self._gossip(("decided", decisive.config_id), decisive)
        if decided:
            # Tell the joiners we observe their new view straight away.
            for name in joined:
                state = self._roster.get(name)
                if name in self._subjects and state is not None:
                    self._send_sync(state.addr, now, force=True)
        # Alerts do not carry over: say again what is still wrong.
        for name in dict.fromkeys(subjects):
            if self._edges.faulty(name):
                self._alert_edge(name, now)
        return events

    def _refresh_outsiders(self) -> None:
        """Recompute the probe targets when the view or the table changed: our
        subjects, then the outsiders (live in the table, not in the view) we are a
        temporary observer of."""
        conf = self._conf
        if conf is None or not self.is_member:
            self._targets = []
            self._watched = set()
            return
        key = (conf.id, self._roster.count())
        if key == self._outsiders_key:
            return
        self._outsiders_key = key
        me = self.name
        rings = self._rings
        watched = sorted(
            m.name for m in self._roster.states()
            if m.status <= _SUSPECT and m.name != me and m.name not in conf
            and me in rings.observers_of(m.name)
        )
        for name in self._watched.difference(watched):
            self._admission.forget(name)
        # A joiner waits for its first probe from each temporary observer: new joiners
        # get an admission ping, and a member removed before (it gets none) is probed
        # first rather than after a whole rotation.
        for name in watched:
            if name in self._watched:
                continue
            if self._next_seq is not None and not self._admission.was_removed(name):
                self._to_ping.append(name)
            else:
                self._urgent.append(name)
        self._watched = set(watched)
        self._targets = list(dict.fromkeys(rings.subjects_of(me))) + watched

    def _send_admission_pings(self) -> None:
        """Ping up to `ADMISSION_PINGS` of the joiners owed one (still watched, live)."""
        next_seq = self._next_seq
        assert next_seq is not None
        pings = self._pings
        sent = 0
        while self._to_ping and sent < ADMISSION_PINGS:
            name = self._to_ping.popleft()
            state = self._roster.get(name)
            if state is None or state.status > _SUSPECT or name not in self._watched:
                continue
            seq = next_seq()
            pings[seq] = name
            if len(pings) > _PINGS_MEMORY:
                del pings[next(iter(pings))]
            self._dis.send_one(state.addr, Ping(seq, name, self.name))
            sent += 1
        self.counters.admission_pings += sent

    def _alert_edge(self, name: str, now: float) -> None:
        if name not in self._alerted:
            self._alert(name, False, self._rings.rings_observed_by(self.name, name), now)

    def _alert(self, subject: str, up: bool, rings: Sequence[int], now: float) -> None:
        """Gossip our alert about `subject` and count it ourselves."""
        conf = self._conf
        assert conf is not None
        if subject != self.name and not rings:
            return
        self._alerted.add(subject)
        self.counters.alerts_sent += 1
        if subject == self.name:
            self._on_leave(StableAlert(conf.id, self.name, subject, up, ()), now)
        else:
            self._count_alerts(subject, up, _ring_bits(rings), now)

    def _on_alerts(self, msg: StableAlerts, addr: Address, now: float) -> list[Event]:
        """A bundle of alerts about one subject."""
        conf = self._conf
        if conf is None or msg.config_id != conf.id:
            self._stale(msg.config_id, addr, now)
            return []
        if msg.rings >> self.params.k:
            self.counters.bad_alerts += 1  # a ring we do not have
            return []
        if not self._count_alerts(msg.subject, msg.up, msg.rings, now):
            return []
        return self._settle(now)

    def _on_alert(self, msg: StableAlert, addr: Address, now: float) -> list[Event]:
        """A single alert: a graceful leave, or one observer's alert on its rings."""
        conf = self._conf
        if conf is None or msg.config_id != conf.id:
            self._stale(msg.config_id, addr, now)
            return []
        if msg.observer == msg.subject:
            new = self._on_leave(msg, now)
        else:
            # Only the rings the sender observes the subject on count (else a member
            # could speak for other observers).
            observers = self._rings.observers_of(msg.subject)
            bits = _ring_bits(r for r in msg.rings
                              if 0 <= r < len(observers) and observers[r] == msg.observer)
            if bits != _ring_bits(msg.rings):
                self.counters.bad_alerts += 1
            new = self._count_alerts(msg.subject, msg.up, bits, now)
        return self._settle(now) if new else []

    def _on_leave(self, msg: StableAlert, now: float) -> bool:
        """A member's graceful leave (its own alert, for every ring); True if new."""
        if not self._detector.add(observer=msg.observer, subject=msg.subject, up=msg.up,
                                  rings=(), config_id=msg.config_id, now=now):
            return False
        self._leaves[msg.subject] = msg
        self._gossip(("leave", msg.subject), msg)
        return True

    def _count_alerts(self, subject: str, up: bool, rings: int, now: float) -> bool:
        """Count the alerts about `subject` of the observers on the rings set in
        `rings`; if any is new, queue our bundle for the subject again. True if new."""
        conf = self._conf
        assert conf is not None
        if up == (subject in conf) or not rings:
            # A join alert about a member or a removal alert about an outsider.
            self.counters.bad_alerts += up == (subject in conf)
            return False
        held = self._alert_rings.get(subject, 0)
        new = rings & ~held
        if not new:
            return False
        held |= new
        self._alert_rings[subject] = held
        observers = self._rings.observers_of(subject)
        by_observer: dict[str, list[int]] = {}
        for ring in range(new.bit_length()):
            if new >> ring & 1:
                by_observer.setdefault(observers[ring], []).append(ring)
        for observer, observed in by_observer.items():
            self._detector.add(observer=observer, subject=subject, up=up, rings=observed,
                               config_id=conf.id, now=now)
        self._gossip(("alerts", subject), StableAlerts(conf.id, subject, up, held))
        return True

    def _alert_bundles(self) -> list[Message]:
        """Every alert held for the current configuration: leaves, then bundles."""
        conf = self._conf
        assert conf is not None
        bundles = [StableAlerts(conf.id, subject, subject not in conf, rings)
                   for subject, rings in sorted(self._alert_rings.items())]
        return [*self._leaves.values(), *bundles]

    def _evidence(self) -> int:
        """Alerts (one per subject and ring, leaves as one) and votes held for the
        current configuration."""
        if self._conf is None:
            return 0
        alerts = sum(rings.bit_count() for rings in self._alert_rings.values())
        return alerts + len(self._leaves) + len(self._agreement.votes())

    def _on_vote(self, msg: StableVote, addr: Address, now: float) -> list[Event]:
        conf = self._conf
        if conf is None or msg.config_id != conf.id:
            self._stale(msg.config_id, addr, now)
            return []
        members = conf.members
        if len(msg.voters) != (len(members) + 7) // 8:
            self.counters.bad_votes += 1
            return []
        new = False
        for byte_index, raw in enumerate(msg.voters):
            bits = raw
            while bits:
                low = bits & -bits
                bits ^= low
                i = byte_index * 8 + low.bit_length() - 1
                if i >= len(members):
                    self.counters.bad_votes += 1
                    return []
                new |= self._count_vote(members[i], msg.cut, now, msg.round)
        if msg.round != self._agreement.round:
            # A late round: nothing in it counts any more. Show the sender where the
            # vote is now, so it moves on too.
            if self._bitmaps:
                self._dis.send_one(addr, self._vote_bundle(max(self._bitmaps)))
            return self._settle(now)
        mine = self._bitmaps.get(msg.cut)
        if mine is not None and any(a & ~b for a, b in zip(mine, msg.voters, strict=True)):
            # The sender lacks votes we hold: tell it straight back (a bundle sent only
            # a few times may otherwise leave it short of the quorum until a digest).
            self._dis.send_one(addr, self._vote_bundle(msg.cut))
        if not new:
            return []
        self._gossip_votes(msg.cut)
        return self._settle(now)

    def _count_vote(self, voter: str, cut: Cut, now: float, round_: int) -> bool:
        """Count one vote of round `round_`; True if it was new (then it joins the
        cut's bitmap). A vote for a later round takes us to that round first."""
        conf = self._conf
        assert conf is not None
        agreement = self._agreement
        if round_ > agreement.round and agreement.decided is None:
            self._enter_round(round_, now)
        if not agreement.add(voter=voter, cut=cut, config_id=conf.id, now=now,
                             round_=round_):
            return False
        bitmap = self._bitmaps.get(cut)
        if bitmap is None:
            bitmap = self._bitmaps[cut] = bytearray((len(conf) + 7) // 8)
        i = self._index[voter]
        bitmap[i >> 3] |= 1 << (i & 7)
        return True

    def _vote_bundle(self, cut: Cut) -> StableVote:
        """Every vote for `cut` we counted, as one message."""
        conf = self._conf
        assert conf is not None
        return StableVote(conf.id, cut, bytes(self._bitmaps[cut]), self._agreement.round)

    def _gossip_votes(self, cut: Cut) -> None:
        self._gossip(("votes", self._agreement.round, cut), self._vote_bundle(cut))

    def _enter_round(self, round_: int, now: float) -> None:
        """Move the vote to round `round_` (ours was proven stuck, or a member that
        proved it votes there) and, as a member, vote again: the cut our detector
        makes now, or else the union of the cuts voted for in the round we leave."""
        agreement = self._agreement
        previous = agreement.cuts()
        agreement.next_round(round_)
        for key in self._queued:
            if key[0] == "votes":
                self._dis.forget(key)
        self._bitmaps = {}
        self._voted = False
        if not self.is_member:
            return
        cut = self._detector.current(now)
        if cut is None:
            merged = {name: up for c in previous for name, up in c}
            cut = tuple(sorted(merged.items()))[: self.params.max_cut]
        if cut:
            self._vote(cut, now)

    def _settle(self, now: float) -> list[Event]:
        """Vote if our detector proposes; apply a decided cut (and again, if the
        re-alerts that follow decide another: bounded)."""
        events: list[Event] = []
        for _ in range(_MAX_SETTLE):
            conf = self._conf
            if conf is None:
                break
            if not self._voted and self.is_member:
                cut = self._detector.proposal(now)
                if cut is not None:
                    self._vote(cut, now)
            decided = self._agreement.decide(now)
            if decided is None and self._agreement.stuck():
                # Split votes: no cut can win this round any more; vote again.
                self._enter_round(self._agreement.round + 1, now)
                continue
            if decided is None:
                break
            if self._agreement.counters.fast:
                self.counters.fast_decisions += 1
            else:
                self.counters.slow_decisions += 1
            events.extend(self._install(conf.apply(decided), now, announce=True,
                                        decided=True))
        return events

    def _vote(self, cut: Cut, now: float) -> None:
        conf = self._conf
        assert conf is not None
        self._voted = True
        self.counters.votes_sent += 1
        if self._count_vote(self.name, cut, now, self._agreement.round):
            self._gossip_votes(cut)

    def _gossip(self, key: tuple[object, ...], msg: Message) -> None:
        """Queue `msg` with the membership news (keys are tuples: never a name)."""
        self._queued[key] = None
        self._dis.queue_keyed(key, msg)

    # ------------------------------------------------------------- catching up

    def _epoch(self) -> int:
        return 0 if self._conf is None else self._conf.epoch

    def _digest_peer(self) -> MemberState | None:
        """One random other member of our view (any live member while we have none)."""
        conf = self._conf
        roster = self._roster
        if conf is not None and len(conf) > 1:
            for _ in range(4):
                name = conf.members[int(self._rng.random() * len(conf))]
                state = roster.get(name) if name != self.name else None
                if state is not None:
                    return state
        peers = roster.sample(1, exclude=self.name, live_only=True)
        return peers[0] if peers else None

    def _rate_ok(self, table: dict[Address, float], addr: Address, now: float) -> bool:
        last = table.get(addr)
        if last is not None and now - last < self.params.digest_interval_s / 2:
            return False
        if len(table) >= _RATE_MEMORY:
            table.clear()
        table[addr] = now
        return True

    def _send_digest(self, addr: Address, now: float, *, force: bool = False) -> None:
        if not self._rate_ok(self._last_digest, addr, now) and not force:
            return
        conf = self._conf
        self.counters.digests_sent += 1
        self._dis.send_one(
            addr, ViewDigest(0 if conf is None else conf.id, self._epoch(), self._evidence())
        )

    def _stale(self, config_id: int, addr: Address, now: float) -> None:
        """Input for another configuration: ignored; unless it is one we held (it is
        still spreading), we compare views with its sender."""
        if config_id in self._previous_ids:
            self.counters.late_input += 1
            return
        self.counters.stale_input += 1
        self._send_digest(addr, now)

    def _on_digest(self, msg: ViewDigest, addr: Address, now: float) -> None:
        """The behind end is sent what it lacks: the newer view, or (same view) every
        alert and vote; the ahead end answers with its own digest so the other pushes."""
        mine = self._epoch()
        conf = self._conf
        if msg.epoch < mine:
            self._send_sync(addr, now)
        elif msg.epoch > mine:
            self._send_digest(addr, now)
        elif conf is not None and msg.config_id != conf.id:
            self.counters.forked += 1
        elif conf is not None:
            evidence = self._evidence()
            if msg.evidence < evidence and self._rate_ok(self._last_sync, addr, now):
                votes = [self._vote_bundle(cut) for cut in self._agreement.cuts()]
                self.counters.evidence_sent += 1
                self._send_batched(addr, [*self._alert_bundles(), *votes])
            elif msg.evidence > evidence:
                self._send_digest(addr, now)

    def _send_sync(self, addr: Address, now: float, *, force: bool = False) -> None:
        """Send our configuration to `addr`, in parts, a few per datagram, at most once
        per half digest interval unless `force` (a view just decided: the joiner may
        have been sent the one before it a moment ago)."""
        conf = self._conf
        if conf is None or (not self._rate_ok(self._last_sync, addr, now) and not force):
            return
        self._send_batched(addr, sync_parts(conf))
        self.counters.syncs_sent += 1

    def _send_batched(self, addr: Address, messages: Sequence[Message]) -> None:
        """Send `messages` to `addr`, as many per datagram as the budget allows."""
        room = self._dis.config.packet_budget - DATAGRAM_OVERHEAD
        batch: list[Message] = []
        encoded: list[bytes] = []
        size = 0
        for msg in messages:
            data = encode_message(msg)
            if batch and size + len(data) > room:
                self._dis.send(addr, batch, encoded)
                batch, encoded, size = [], [], 0
            batch.append(msg)
            encoded.append(data)
            size += len(data)
        if batch:
            self._dis.send(addr, batch, encoded)

    def _on_sync(self, msg: ViewSync, now: float) -> list[Event]:
        """Collect the parts of a newer configuration; adopt it once whole and valid."""
        if msg.epoch <= self._epoch():
            self.counters.late_syncs += 1
            return []
        conf = self._assembly.add(msg)
        if conf is None:
            return []
        self.counters.views_adopted += 1
        return self._install(conf, now, announce=True)


def _ring_bits(rings: Iterable[int]) -> int:
    """Ring numbers as a bitmap (bit ``i`` for ring ``i``)."""
    bits = 0
    for ring in rings:
        bits |= 1 << ring
    return bits
