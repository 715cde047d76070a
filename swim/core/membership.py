"""The membership table and every member status transition. Nothing else changes status.

Theory of operation
-------------------
Each member keeps a table of every member it knows (itself included) as `MemberState`
values: name, address, incarnation, status (alive, suspect, dead, left) and metadata.
News arrives as `Alive`, `Suspect` and `Dead` messages (piggybacked gossip, push-pull,
or our own probes) and is applied with SWIM's incarnation precedence, in memberlist's
reading of it (l = member, i/j incarnations):

* ``Alive(l, i)`` overrides ``Suspect(l, j)``, ``Dead(l, j)`` and ``Alive(l, j)`` iff
  ``i > j``. A different address for a live name is a conflict and is ignored; for a
  dead or left name it is a *reclaim*, allowed after ``dead_node_reclaim_s``.
* ``Suspect(l, i)`` overrides ``Alive(l, j)`` iff ``i >= j``. A suspect that is already
  suspected only gains a *confirmation* (Lifeguard): a distinct accuser shortens the
  timeout and the first K confirmations are re-gossiped.
* ``Dead(l, i)`` overrides ``Alive``/``Suspect(l, j)`` iff ``i >= j`` (SWIM lets it win
  at any j; memberlist does not, and neither do we, so an old death rumour cannot kill
  a member that has since refuted). ``Dead(l, i)`` sent by l itself means l *left*.
* Dead and left are final for an incarnation; only ``Alive`` at a higher one revives.
  A ``Suspect`` about a member held dead or left shows its sender missed that news, so
  the news is gossiped again (a left member must not end up *failed* somewhere).
* News about unknown members is ignored unless it is ``Alive``.

Only a member raises its own incarnation: hearing itself suspected or declared dead at
incarnation i, it *refutes* with ``Alive(self, max(own, i) + 1)`` and counts one point
against its local health (Lifeguard). A member restarted under the same name with a
fresh incarnation learns of the old rumour in its join exchange and refutes at once, so
it rejoins promptly however high the rumour's incarnation (memberlist #311).

Hostile incarnations (memberlist #358): news that moves a known member's incarnation
forward by more than ``Config.incarnation_window`` is dropped and counted. A legitimate
incarnation only grows by refutations, one at a time, so the window is never reached in
practice, while a single forged message with a huge incarnation cannot make a member
unable to refute (or be evicted for good).

A member that hears ``Alive(l, i)`` at l's known address while it holds l dead or left
at an incarnation >= i tells l directly (a *rumour notice*, at most once per protocol
period per member): l is evidently running again without knowing of the rumour, for
instance restarted and joined through a seed that had already forgotten it, and
refutes at once instead of at its next push-pull.

Accepted news is re-gossiped through the broadcast queue and reported to the
application as events. Suspicions time out into ``Dead`` via a deadline heap; dead and
left members stay (and receive gossip, so they can refute) for
``gossip_to_the_dead_s``, then are reaped. A reaped *failed* member (never a left one)
is kept as a tombstone for ``reconnect_timeout_s``; the core periodically tries a
push-pull with one, so two sides of a partition that outlived their dead entries find
each other again (Serf's reconnect). Left members are never reconnected, so push-pull
cannot revive departed nodes.
"""

from __future__ import annotations

import collections
import heapq
import random
from collections.abc import Iterable

import attrs

from swim.core.awareness import Awareness
from swim.core.broadcasts import BroadcastQueue
from swim.core.codec import encode_message
from swim.core.config import Config
from swim.core.events import (
    Event,
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    MemberUpdated,
)
from swim.core.messages import Address, Alive, Dead, MemberState, MemberStatus, Message, Suspect
from swim.core.stats import Stats
from swim.core.suspicion import Suspicion
from swim.core.timing import (
    suspicion_confirmations_needed,
    suspicion_timeout_min_s,
)

ALIVE = MemberStatus.ALIVE
SUSPECT = MemberStatus.SUSPECT
DEAD = MemberStatus.DEAD
LEFT = MemberStatus.LEFT
_GONE = (DEAD, LEFT)
#: Most failed members remembered for reconnection.
MAX_TOMBSTONES = 4096


@attrs.define(eq=False)
class Membership:
    """One member's view of the cluster and the rules that change it."""

    config: Config
    rng: random.Random
    broadcasts: BroadcastQueue
    awareness: Awareness
    stats: Stats
    events: collections.deque[Event]
    #: name -> state, the local member included.
    members: dict[str, MemberState]
    local_name: str
    #: Every other member's name in probe order (see `Prober`). Joiners are inserted at
    #: a random position; reaped names are removed.
    probe_order: list[str] = attrs.field(factory=list)
    suspicions: dict[str, Suspicion] = attrs.field(factory=dict)
    #: Dead or left members and when they became so, oldest first.
    gone_since: dict[str, float] = attrs.field(factory=dict)
    leaving: bool = False
    #: Failed members reaped from the table, for reconnection: name -> (state, reaped at).
    tombstones: dict[str, tuple[MemberState, float]] = attrs.field(factory=dict)
    #: Datagrams to send directly (rumour notices), drained by the core.
    notices: list[tuple[Address, Message]] = attrs.field(factory=list)
    #: Set when the input being handled showed its sender an outdated view of us (it
    #: made us refute, or it accused an incarnation we already left behind): the core
    #: then answers the sender with our current Alive directly, and clears it.
    owe_alive: bool = False
    _noticed_at: dict[str, float] = attrs.field(factory=dict)
    #: Suspicion deadlines as (deadline, tiebreak, name); stale entries are skipped.
    _deadlines: list[tuple[float, int, str]] = attrs.field(factory=list)
    _tiebreak: int = 0

    @classmethod
    def create(
        cls,
        config: Config,
        local: MemberState,
        *,
        rng: random.Random,
        stats: Stats,
        awareness: Awareness,
        broadcasts: BroadcastQueue,
        events: collections.deque[Event],
    ) -> Membership:
        """A table holding only the local member, whose Alive is queued for gossip."""
        m = cls(
            config,
            rng,
            broadcasts,
            awareness,
            stats,
            events,
            {local.name: local},
            local.name,
        )
        m._gossip_alive(local)
        return m

    # ----------------------------------------------------------------------------- views

    @property
    def local(self) -> MemberState:
        """The local member's own state."""
        return self.members[self.local_name]

    def count(self) -> int:
        """n for the protocol's formulas: every member in the table, the local one too."""
        return len(self.members)

    def is_live(self, name: str) -> bool:
        """True for an alive or suspect member other than the local one."""
        state = self.members.get(name)
        return state is not None and state.status <= SUSPECT and name != self.local_name

    # ------------------------------------------------------------------ news application

    def apply_alive(self, news: MemberState, now: float) -> None:
        """Apply ``Alive(news)``; `news` must have status alive."""
        name = news.name
        if name == self.local_name:
            self._alive_about_self(news)
            return
        cur = self.members.get(name)
        if cur is None:
            self._add(news, now)
            return
        if news.incarnation > cur.incarnation + self.config.incarnation_window:
            self.stats.implausible_incarnation += 1
            return
        if news.addr != cur.addr:
            if not self._may_reclaim(cur, now):
                self.stats.name_conflicts += 1
                return
            # A new process claims a dead name from a new address: take it whatever
            # the incarnation, as a member that is new again.
        elif news.incarnation <= cur.incarnation:
            if cur.status in _GONE:
                self._notify_rumour(cur, now)
            return
        self.members[name] = news
        if cur.status == SUSPECT:
            self._cancel_suspicion(name)
            self.events.append(MemberAlive(member=news, at=now))
        elif cur.status in _GONE:
            del self.gone_since[name]
            self.events.append(MemberJoined(member=news, at=now))
        elif news.meta != cur.meta or news.addr != cur.addr:
            self.events.append(MemberUpdated(member=news, at=now))
        self._gossip_alive(news)

    def apply_suspect(self, news: Suspect, now: float) -> None:
        """Apply ``Suspect(name, incarnation, accuser)``."""
        name = news.name
        stale = self.members.get(name)
        if stale is not None and stale.status in _GONE and news.incarnation <= stale.incarnation:
            self._correct_stale(stale)
            return
        cur = self._accusable(name, news.incarnation)
        if cur is None:
            return
        if cur.status == SUSPECT:
            # Already suspected: a distinct accuser is an independent confirmation.
            suspicion = self.suspicions.get(name)
            if suspicion is not None and suspicion.confirm(news.accuser):
                self._push_deadline(suspicion.deadline, name)
                self._gossip(name, news)
            return
        state = attrs.evolve(cur, incarnation=news.incarnation, status=SUSPECT)
        self.members[name] = state
        self._start_suspicion(name, news.incarnation, news.accuser, now)
        self.stats.suspicions += 1
        self.events.append(MemberSuspected(member=state, accuser=news.accuser, at=now))
        self._gossip(name, news)

    def apply_dead(self, news: Dead, now: float) -> None:
        """Apply ``Dead(name, incarnation, accuser)``; accuser == name means it left."""
        name = news.name
        cur = self._accusable(name, news.incarnation)
        if cur is None:
            return
        left = news.accuser == name
        state = attrs.evolve(cur, incarnation=news.incarnation, status=LEFT if left else DEAD)
        self.members[name] = state
        self._cancel_suspicion(name)
        self.gone_since[name] = now
        if left:
            self.events.append(MemberLeft(member=state, at=now))
        else:
            self.events.append(MemberFailed(member=state, accuser=news.accuser, at=now))
        self._gossip(name, news)

    def merge_remote(self, states: tuple[MemberState, ...], now: float) -> None:
        """Merge a push-pull peer's table (memberlist's mergeState).

        A remote *dead* is merged as *suspect* with ourselves as accuser, so a member
        that only one peer believes dead gets a chance to refute instead of dying here.
        """
        local = self.local_name
        members = self.members
        for state in states:
            if members.get(state.name) is state:
                continue  # the very state we hold (simulated members share them)
            status = state.status
            if status == ALIVE:
                self.apply_alive(state, now)
            elif status == LEFT:
                self.apply_dead(Dead(state.name, state.incarnation, state.name), now)
            elif status == SUSPECT or self.members.get(state.name, state).status <= SUSPECT:
                # (A remote dead we also hold dead or left is agreement, not staleness:
                # it must not re-queue the news.)
                self.apply_suspect(Suspect(state.name, state.incarnation, local), now)

    # ---------------------------------------------------------------- local transitions

    def suspect_locally(self, name: str, now: float) -> None:
        """Our probe of `name` failed: suspect it at its current incarnation.

        If someone else already suspects it, our failed probe is an independent
        confirmation (as in memberlist), shortening the suspicion timeout.
        """
        cur = self.members.get(name)
        if cur is not None and cur.status <= SUSPECT:
            self.apply_suspect(Suspect(name, cur.incarnation, self.local_name), now)

    def refute(self, accused_incarnation: int) -> None:
        """Raise our incarnation above `accused_incarnation` and gossip that we live."""
        me = self.local
        me = attrs.evolve(me, incarnation=max(me.incarnation, accused_incarnation) + 1)
        self.members[self.local_name] = me
        self.stats.refutes += 1
        self.owe_alive = True
        if self.config.awareness:
            self.stats.awareness = self.awareness.apply_delta(1)
        self._gossip_alive(me)

    def update_local(self, meta: bytes) -> MemberState:
        """New metadata for ourselves, announced with a new incarnation."""
        me = attrs.evolve(self.local, incarnation=self.local.incarnation + 1, meta=meta)
        self.members[self.local_name] = me
        self._gossip_alive(me)
        return me

    def leave(self) -> None:
        """Announce our own departure: ``Dead(self, inc, accuser=self)``."""
        self.leaving = True
        me = attrs.evolve(self.local, status=LEFT)
        self.members[self.local_name] = me
        self._gossip(me.name, Dead(me.name, me.incarnation, me.name))

    # ---------------------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """The earliest suspicion deadline or reap time, or None."""
        heap = self._deadlines
        while heap:
            deadline, _, name = heap[0]
            suspicion = self.suspicions.get(name)
            if suspicion is not None and suspicion.deadline == deadline:
                break
            heapq.heappop(heap)
        best = heap[0][0] if heap else None
        if self.gone_since:
            reap_at = next(iter(self.gone_since.values())) + self.config.gossip_to_the_dead_s
            best = reap_at if best is None else min(best, reap_at)
        return best

    def handle_timers(self, now: float) -> None:
        """Expire suspicions whose deadline passed and reap long-dead members."""
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, name = heapq.heappop(heap)
            suspicion = self.suspicions.get(name)
            if suspicion is None or suspicion.deadline != deadline:
                continue
            # Confirm the failure: SWIM's Confirm, gossiped as Dead with us as accuser.
            self.stats.failures_declared += 1
            self.apply_dead(Dead(name, suspicion.incarnation, self.local_name), now)
        # Same expression as `next_deadline` (since + gossip_to_the_dead_s), so a reap
        # that is due by the timer is also due here despite float rounding.
        keep_s = self.config.gossip_to_the_dead_s
        gone = self.gone_since
        while gone:
            name, since = next(iter(gone.items()))
            if since + keep_s > now:
                break
            del gone[name]
            state = self.members.pop(name)
            self.broadcasts.discard(name)
            self.probe_order.remove(name)
            self._noticed_at.pop(name, None)
            if state.status == DEAD and self.config.reconnect_interval_s > 0:
                self.tombstones[name] = (state, now)
                if len(self.tombstones) > MAX_TOMBSTONES:
                    del self.tombstones[next(iter(self.tombstones))]

    def bootstrap(self, states: Iterable[MemberState], now: float) -> None:
        """Know `states` already, as if joined long ago: no events, no gossip.

        For simulations and tests that start from a converged cluster. Members already
        known are left as they are.
        """
        members = self.members
        order = self.probe_order
        for state in states:
            name = state.name
            if name in members:
                continue
            members[name] = state
            order.append(name)
            if state.status in _GONE:
                self.gone_since[name] = now
        self.rng.shuffle(order)

    def next_reconnect(self, now: float) -> MemberState | None:
        """The next tombstone to try a reconnection with (round-robin), or None.

        Tombstones older than ``reconnect_timeout_s`` are dropped on the way.
        """
        tombstones = self.tombstones
        horizon = self.config.reconnect_timeout_s
        for _ in range(len(tombstones)):
            name, (state, since) = next(iter(tombstones.items()))
            del tombstones[name]
            if since + horizon > now:
                tombstones[name] = (state, since)  # rotate to the back
                return state
        return None

    # --------------------------------------------------------------------------- helpers

    def _alive_about_self(self, news: MemberState) -> None:
        me = self.local
        if self.leaving or news.incarnation < me.incarnation:
            return
        if news.incarnation > me.incarnation + self.config.incarnation_window:
            self.stats.implausible_incarnation += 1
            return
        if news.incarnation == me.incarnation and news.addr == me.addr and news.meta == me.meta:
            return
        # Someone claims a version of us we did not announce (an older process of ours,
        # or a forgery): outbid it.
        self.refute(news.incarnation)

    def _add(self, news: MemberState, now: float) -> None:
        name = news.name
        self.members[name] = news
        self.tombstones.pop(name, None)
        # Insert at a random position in O(1): append, then swap with a random slot
        # (memberlist does the same).
        order = self.probe_order
        order.append(name)
        slot = self.rng.randint(0, len(order) - 1)
        order[slot], order[-1] = order[-1], order[slot]
        self.events.append(MemberJoined(member=news, at=now))
        self._gossip_alive(news)

    def _accusable(self, name: str, incarnation: int) -> MemberState | None:
        """The state a Suspect or Dead about `name` at `incarnation` would change.

        None when it changes nothing here: unknown member, older incarnation, already
        dead or left, an implausible incarnation jump (counted), or news about
        ourselves, which we refute on the spot (unless we are leaving).
        """
        cur = self.members.get(name)
        if cur is None:
            return None
        if incarnation < cur.incarnation:
            if name == self.local_name and not self.leaving:
                # An accusation we already refuted: its sender missed the refutation
                # (else its queue would have replaced the accusation with our Alive).
                self.owe_alive = True
            return None
        if cur.status in _GONE:
            return None
        if incarnation > cur.incarnation + self.config.incarnation_window:
            self.stats.implausible_incarnation += 1
            return None
        if name == self.local_name:
            if not self.leaving:
                self.refute(incarnation)
            return None
        return cur

    def _correct_stale(self, cur: MemberState) -> None:
        # Someone still suspects a member we hold dead or left: they missed the news
        # (with a small retransmit budget a leave can miss a member). Gossip it again,
        # unless it is still queued, so they learn "left" before their own suspicion
        # times out into a false "failed".
        name = cur.name
        if name not in self.broadcasts:
            accuser = name if cur.status == LEFT else self.local_name
            self._gossip(name, Dead(name, cur.incarnation, accuser))

    def prober_seen(self, name: str, addr: Address, now: float) -> None:
        """`name` pinged us from `addr`: if we hold it dead or left there, tell it."""
        cur = self.members.get(name)
        if cur is not None and cur.status in _GONE and cur.addr == addr:
            self._notify_rumour(cur, now)

    def _notify_rumour(self, cur: MemberState, now: float) -> None:
        # `cur` is dead or left here while it shows itself alive at the same address
        # (an Alive at an incarnation the rumour beats, or a ping): tell it, so it
        # refutes (or, if it already did, answers with its newer Alive).
        name = cur.name
        last = self._noticed_at.get(name)
        if last is not None and now - last < self.config.probe_interval_s:
            return
        self._noticed_at[name] = now
        accuser = name if cur.status == LEFT else self.local_name
        self.notices.append((cur.addr, Dead(name, cur.incarnation, accuser)))

    def _may_reclaim(self, cur: MemberState, now: float) -> bool:
        reclaim_s = self.config.dead_node_reclaim_s
        if cur.status not in _GONE or reclaim_s is None:
            return False
        return now - self.gone_since[cur.name] >= reclaim_s

    def _start_suspicion(self, name: str, incarnation: int, accuser: str, now: float) -> None:
        cfg = self.config
        n = self.count()
        min_s = suspicion_timeout_min_s(cfg.suspicion_mult, n, cfg.probe_interval_s)
        if cfg.dynamic_suspicion:
            k = suspicion_confirmations_needed(cfg.suspicion_mult, n)
            max_s = cfg.suspicion_max_timeout_mult * min_s
        else:
            k, max_s = 0, min_s  # plain SWIM: a fixed timeout
        suspicion = Suspicion.start(
            incarnation=incarnation, accuser=accuser, k=k, min_s=min_s, max_s=max_s, now=now
        )
        self.suspicions[name] = suspicion
        self._push_deadline(suspicion.deadline, name)

    def _cancel_suspicion(self, name: str) -> None:
        self.suspicions.pop(name, None)

    def _push_deadline(self, deadline: float, name: str) -> None:
        self._tiebreak += 1
        heapq.heappush(self._deadlines, (deadline, self._tiebreak, name))

    def _gossip_alive(self, state: MemberState) -> None:
        self._gossip(state.name, Alive(state))

    def _gossip(self, name: str, news: Alive | Suspect | Dead) -> None:
        queue = self.broadcasts
        queue.queue(name, news, encode_message(news))
        if len(queue) > self.config.broadcast_queue_depth:
            queue.drop_most_sent()
