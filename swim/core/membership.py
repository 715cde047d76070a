"""The membership table and every member status transition. Nothing else changes status.

Theory of operation
-------------------
Each member keeps a table of every member it knows (itself included) as `MemberState`
values: name, address, incarnation, status (alive, suspect, dead, left) and metadata.
News arrives as `Alive`, `Suspect` and `Dead` messages (piggybacked gossip, push-pull,
or our own probes) and is applied with SWIM's incarnation precedence, in memberlist's
reading of it. `PRECEDENCE` holds the rules as a table: (kind of news, status held,
incarnation of the news against the one held) -> `Transition`, and a test walks every
row. In words (l = member, i/j incarnations):

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
forward by more than ``Config.incarnation_window`` is taken only as the member's *own
word*: an ``Alive`` that came from the member's own address (a datagram from it, or its
own entry in a push-pull we opened to it). From anyone else it is dropped and counted,
and we *verify*: we send the member our (older) view of it, which it answers with its
current ``Alive`` in its own word. So a forged message with a huge incarnation cannot
evict a member or make it unable to refute, and a real jump (a member that refuted a
forged accusation at the edge of the window) is not held against it for ever: no view
stays split. A legitimate incarnation otherwise only grows one refutation at a time.

Name conflicts: news of another process at another address claiming a live member's
name is ignored and counted. If the name is ours, we report it once per address
(`NameConflict`) and refute at most once per protocol period per address, so two
processes with one name cannot drive each other's incarnations up in a storm. A join
that claims a name held by a live member elsewhere is refused (`refuse_join`).

A member that hears ``Alive(l, i)`` at l's known address while it holds l dead or left
at an incarnation >= i tells l directly (a *rumour notice*, at most once per protocol
period per member): l is evidently running again without knowing of the rumour, for
instance restarted and joined through a seed that had already forgotten it, and
refutes at once instead of at its next push-pull.

Every public method returns an `Effects` value (news to gossip, events, notices, a
refute owed to the sender, counters) and changes nothing outside this table: the core
carries the effects out. Suspicions time out into ``Dead`` at deadlines reported by
`next_deadline`; dead and left members stay (and receive gossip, so they can refute)
for ``gossip_to_the_dead_s``, then are reaped. A reaped *failed* member (never a left
one) is kept as a tombstone for ``reconnect_timeout_s``; the core periodically tries a
push-pull with one, so two sides of a partition that outlived their dead entries find
each other again (Serf's reconnect). Left members are never reconnected, so push-pull
cannot revive departed nodes.

The table also owns the probe order (a shuffled round-robin over every other member,
joiners inserted at a random position) and random sampling of members for ping-req
helpers, gossip and push-pull targets.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Final

import attr
import attrs

from swim.core.config import Config
from swim.core.deadlines import DeadlineHeap
from swim.core.effects import NOTHING, Effects, News
from swim.core.events import (
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    MemberUpdated,
    NameConflict,
)
from swim.core.messages import Address, Alive, Dead, MemberState, Suspect
from swim.core.precedence import (
    ALIVE,
    DEAD,
    LEFT,
    PRECEDENCE,
    SUSPECT,
    NewsKind,
    Order,
    Transition,
    order_of,
)
from swim.core.roster import GONE, Roster
from swim.core.suspicion import Suspicion
from swim.core.timing import suspicion_confirmations_needed, suspicion_timeout_min_s

_GONE: Final = GONE
_INF: Final = float("inf")
#: Most failed members remembered for reconnection.
MAX_TOMBSTONES: Final = 4096
#: Most addresses remembered as claiming our name.
MAX_CONFLICTS: Final = 64


@attr.s(auto_attribs=True, eq=False)
class Membership(Roster):
    """One member's view of the cluster and the rules that change it."""

    config: Config
    rng: random.Random
    #: name -> state, the local member included.
    _members: dict[str, MemberState]
    _local_name: str
    #: Every other member's name in probe order. Joiners are inserted at a random
    #: position; reaped names are removed.
    _probe_order: list[str] = attr.ib(factory=list)
    _probe_index: int = 0
    _suspicions: dict[str, Suspicion] = attr.ib(factory=dict)
    _deadlines: DeadlineHeap[str] = attr.ib(factory=DeadlineHeap)
    #: Dead or left members and when they became so, oldest first.
    _gone_since: dict[str, float] = attr.ib(factory=dict)
    #: True once we announced our departure (a plain attribute: the core reads it after
    #: every input).
    leaving: bool = attr.ib(default=False, init=False)
    #: Failed members reaped from the table, for reconnection: name -> (state, reaped at).
    _tombstones: dict[str, tuple[MemberState, float]] = attr.ib(factory=dict)
    _noticed_at: dict[str, float] = attr.ib(factory=dict)
    #: Addresses that claimed our name, and when we last refuted them.
    _conflicts: dict[Address, float] = attr.ib(factory=dict)
    #: Unknown members the push-pull being merged may still add (None: no cap).
    _new_budget: int | None = None
    #: The effects of the public call in progress (None until something happens).
    _fx: Effects | None = None

    @classmethod
    def create(cls, config: Config, local: MemberState, *, rng: random.Random) -> Membership:
        """A table holding only the local member."""
        return cls(config, rng, {local.name: local}, local.name)

    # ------------------------------------------------------------------ news application

    def apply(self, news: News, now: float) -> Effects:
        """Apply one piece of membership news."""
        if isinstance(news, Alive):
            self._alive(news.member, now)
        elif isinstance(news, Suspect):
            self._suspect(news, now)
        else:
            self._dead(news, now)
        return self._take()

    def apply_alive(
        self, news: MemberState, now: float, source: Address | None = None
    ) -> Effects:
        """Apply ``Alive(news)``; `news` must have status alive. `source` is where it
        came from (a datagram's sender), for the own-word rule."""
        self._alive(news, now, source)
        return self._take()

    def apply_suspect(self, news: Suspect, now: float) -> Effects:
        """Apply ``Suspect(name, incarnation, accuser)``."""
        self._suspect(news, now)
        return self._take()

    def apply_dead(self, news: Dead, now: float) -> Effects:
        """Apply ``Dead(name, incarnation, accuser)``; accuser == name means it left."""
        self._dead(news, now)
        return self._take()

    def merge_remote(
        self, states: Iterable[MemberState], now: float, *, source: Address | None = None,
        new_max: int | None = None,
    ) -> Effects:
        """Merge a push-pull peer's table (memberlist's mergeState).

        A remote *dead* is merged as *suspect* with ourselves as accuser, so a member
        that only one peer believes dead gets a chance to refute instead of dying here.
        `source` is the peer's member address when we opened the exchange to it (its
        own entry is then its own word); at most `new_max` unknown members are added.
        """
        local = self._local_name
        members = self._members
        self._new_budget = new_max
        try:
            self._merge(states, now, source, local, members)
        finally:
            self._new_budget = None
        return self._take()

    def _merge(
        self, states: Iterable[MemberState], now: float, source: Address | None, local: str,
        members: dict[str, MemberState],
    ) -> None:
        for state in states:
            if members.get(state.name) is state:
                continue  # the very state we hold (simulated members share them)
            status = state.status
            if status == ALIVE:
                self._alive(state, now, source)
            elif status == LEFT:
                self._dead(Dead(state.name, state.incarnation, state.name), now)
            elif status == SUSPECT or members.get(state.name, state).status <= SUSPECT:
                # (A remote dead we also hold dead or left is agreement, not staleness:
                # it must not re-queue the news.)
                self._suspect(Suspect(state.name, state.incarnation, local), now)

    def refuse_join(self, states: Iterable[MemberState], now: float) -> MemberState | None:
        """The live member a joiner's table contradicts, if any: an alive entry for a
        name we hold alive or suspect at another address. (If the name is ours, the
        conflict is also reported, once per address, by the next call's effects.)"""
        members = self._members
        for state in states:
            if state.status != ALIVE:
                continue
            cur = members.get(state.name)
            if cur is not None and cur.status <= SUSPECT and cur.addr != state.addr:
                if state.name == self._local_name:
                    self._conflict_seen(state.addr, now)
                return cur
        return None

    def take_effects(self) -> Effects:
        """Effects left by a call that returns something else (`refuse_join`)."""
        return self._take()

    def prober_seen(self, name: str, addr: Address, now: float) -> Effects:
        """`name` pinged us from `addr`: if we hold it dead or left there, tell it."""
        cur = self._members.get(name)
        if cur is not None and cur.status in _GONE and cur.addr == addr:
            self._notify_rumour(cur, now)
        return self._take()

    # ---------------------------------------------------------------- local transitions

    def suspect_locally(self, name: str, now: float) -> Effects:
        """Our probe of `name` failed: suspect it at its current incarnation.

        If someone else already suspects it, our failed probe is an independent
        confirmation (as in memberlist), shortening the suspicion timeout. With the
        suspicion mechanism off (basic SWIM), it is declared dead at once.
        """
        cur = self._members.get(name)
        if cur is not None and cur.status <= SUSPECT:
            if not self.config.suspicion:
                self._out().failures_declared += 1
                self._dead(Dead(name, cur.incarnation, self._local_name), now)
            else:
                self._suspect(Suspect(name, cur.incarnation, self._local_name), now)
        return self._take()

    def update_local(self, meta: bytes) -> Effects:
        """New metadata for ourselves, announced with a new incarnation."""
        me = attrs.evolve(self.local, incarnation=self.local.incarnation + 1, meta=meta)
        self._members[self._local_name] = me
        self._gossip(Alive(me))
        return self._take()

    def leave(self) -> Effects:
        """Announce our own departure: ``Dead(self, inc, accuser=self)``."""
        self.leaving = True
        me = attrs.evolve(self.local, status=LEFT)
        self._members[self._local_name] = me
        self._gossip(Dead(me.name, me.incarnation, me.name))
        return self._take()

    def announce(self) -> Effects:
        """Gossip our own current Alive (at start)."""
        self._gossip(Alive(self.local))
        return self._take()

    # ---------------------------------------------------------------------------- timers

    def _deadline_live(self, deadline: float, name: str) -> bool:
        suspicion = self._suspicions.get(name)
        return suspicion is not None and suspicion.deadline == deadline

    def next_deadline(self) -> float:
        """The earliest suspicion deadline or reap time (inf if none)."""
        when = _INF
        if self._suspicions:  # without suspicions every deadline entry is stale
            best = self._deadlines.earliest(self._deadline_live)
            if best is not None:
                when = best
        if self._gone_since:
            reap_at = next(iter(self._gone_since.values())) + self.config.gossip_to_the_dead_s
            when = min(when, reap_at)
        return when

    def handle_timers(self, now: float) -> Effects:
        """Expire suspicions whose deadline passed and reap long-dead members."""
        for _, name in self._deadlines.pop_due(now, self._deadline_live):
            suspicion = self._suspicions[name]
            # Confirm the failure: SWIM's Confirm, gossiped as Dead with us as accuser.
            self._out().failures_declared += 1
            self._dead(Dead(name, suspicion.incarnation, self._local_name), now)
        # Same expression as `next_deadline` (since + gossip_to_the_dead_s), so a reap
        # that is due by the timer is also due here despite float rounding.
        keep_s = self.config.gossip_to_the_dead_s
        gone = self._gone_since
        while gone:
            name, since = next(iter(gone.items()))
            if since + keep_s > now:
                break
            del gone[name]
            state = self._members.pop(name)
            self._out().forget.append(name)
            self._probe_order.remove(name)
            self._noticed_at.pop(name, None)
            if state.status == DEAD and self.config.reconnect_interval_s > 0:
                self._tombstones[name] = (state, now)
                if len(self._tombstones) > MAX_TOMBSTONES:
                    del self._tombstones[next(iter(self._tombstones))]
        return self._take()

    # --------------------------------------------------------------------------- helpers

    def _out(self) -> Effects:
        fx = self._fx
        if fx is None:
            fx = self._fx = Effects()
        return fx

    def _take(self) -> Effects:
        fx = self._fx
        if fx is None:
            return NOTHING
        self._fx = None
        return fx

    def _alive(self, news: MemberState, now: float, source: Address | None = None) -> None:
        name = news.name
        if name == self._local_name:
            self._alive_about_self(news, now)
            return
        cur = self._members.get(name)
        if cur is None:
            self._add(news, now)
            return
        if news is cur:
            # The very state we hold (states are shared values: in a simulator's object
            # mode most gossip is), so alive, same incarnation, same address: IGNORE.
            return
        if news.incarnation > cur.incarnation + self.config.incarnation_window and not (
            source is not None and source == news.addr == cur.addr  # its own word
        ):
            self._out().implausible_incarnation += 1
            self._verify(cur, now)
            return
        if news.addr != cur.addr:
            if not self._may_reclaim(cur, now):
                self._out().name_conflicts += 1
                return
            # A new process claims a dead name from a new address: take it whatever
            # the incarnation, as a member that is new again.
            transition = Transition.REVIVE
        else:
            transition = PRECEDENCE[
                NewsKind.ALIVE, cur.status, order_of(news.incarnation, cur.incarnation)
            ]
        if transition is Transition.IGNORE:
            return
        if transition is Transition.NOTIFY:
            self._notify_rumour(cur, now)
            return
        self._members[name] = news
        if transition is Transition.REFUTED:
            self._suspicions.pop(name, None)
            self._out().events.append(MemberAlive(member=news, at=now))
        elif transition is Transition.REVIVE:
            del self._gone_since[name]
            self._out().events.append(MemberJoined(member=news, at=now))
        elif news.meta != cur.meta or news.addr != cur.addr:  # UPDATE
            self._out().events.append(MemberUpdated(member=news, at=now))
        self._gossip(Alive(news))

    def _suspect(self, news: Suspect, now: float) -> None:
        name = news.name
        cur = self._members.get(name)
        if cur is None:
            return
        order = order_of(news.incarnation, cur.incarnation)
        transition = PRECEDENCE[NewsKind.SUSPECT, cur.status, order]
        if name == self._local_name and transition is not Transition.REGOSSIP:
            # (REGOSSIP about ourselves: we are leaving and someone still suspects us;
            # our departure is gossiped again like anyone's.)
            self._accused(news.incarnation)
            return
        if transition is Transition.IGNORE:
            return
        if transition is Transition.REGOSSIP:
            self._correct_stale(cur)
            return
        if order is Order.NEWER and (
            news.incarnation > cur.incarnation + self.config.incarnation_window
        ):
            self._out().implausible_incarnation += 1
            return
        if transition is Transition.CONFIRM:
            # Already suspected: a distinct accuser is an independent confirmation.
            suspicion = self._suspicions.get(name)
            if suspicion is not None and suspicion.confirm(news.accuser):
                self._deadlines.push(suspicion.deadline, name)
                self._gossip(news)
            return
        state = attrs.evolve(cur, incarnation=news.incarnation, status=SUSPECT)  # SUSPECT
        self._members[name] = state
        self._start_suspicion(name, news.incarnation, news.accuser, now)
        fx = self._out()
        fx.suspicions += 1
        fx.events.append(MemberSuspected(member=state, accuser=news.accuser, at=now))
        self._gossip(news)

    def force_leave(self, name: str, now: float) -> Effects:
        """Record a failed member as *left* (Serf's force-leave): it will not be
        reconnected, and the news spreads as the member's own leave. Returns nothing
        for a member that is not failed (a live one must leave by itself)."""
        cur = self._members.get(name)
        if cur is not None and cur.status == DEAD:
            self._dead(Dead(name, cur.incarnation, name), now)
        elif cur is None and name in self._tombstones:
            state, _ = self._tombstones.pop(name)
            self._gossip(Dead(name, state.incarnation, name))
        return self._take()

    def _dead(self, news: Dead, now: float) -> None:
        name = news.name
        cur = self._members.get(name)
        left = news.accuser == name
        if cur is None:
            if left:
                self._tombstones.pop(name, None)  # forced out: never reconnect to it
            return
        if name == self._local_name:
            self._accused(news.incarnation)
            return
        if left and cur.status == DEAD and news.incarnation >= cur.incarnation:
            # A failed member's leave (forced by an operator): failed becomes left.
            state = attrs.evolve(cur, incarnation=news.incarnation, status=LEFT)
            self._members[name] = state
            self._out().events.append(MemberLeft(member=state, at=now))
            self._gossip(news)
            return
        order = order_of(news.incarnation, cur.incarnation)
        if PRECEDENCE[NewsKind.DEAD, cur.status, order] is Transition.IGNORE:
            return
        if order is Order.NEWER and (
            news.incarnation > cur.incarnation + self.config.incarnation_window
        ):
            self._out().implausible_incarnation += 1
            return
        left = news.accuser == name  # FAIL
        state = attrs.evolve(cur, incarnation=news.incarnation, status=LEFT if left else DEAD)
        self._members[name] = state
        self._suspicions.pop(name, None)
        self._gone_since[name] = now
        event = (
            MemberLeft(member=state, at=now)
            if left
            else MemberFailed(member=state, accuser=news.accuser, at=now)
        )
        self._out().events.append(event)
        self._gossip(news)

    def _accused(self, incarnation: int) -> None:
        """Someone suspects us or holds us dead at `incarnation`."""
        me = self.local
        if self.leaving:
            return
        if incarnation < me.incarnation:
            # An accusation we already refuted: its sender missed the refutation
            # (else its queue would have replaced the accusation with our Alive).
            self._out().owe_alive = True
            return
        if incarnation > me.incarnation + self.config.incarnation_window:
            self._out().implausible_incarnation += 1
            return
        self._refute(incarnation)

    def _refute(self, accused_incarnation: int) -> None:
        """Raise our incarnation above `accused_incarnation` and gossip that we live."""
        me = self.local
        me = attrs.evolve(me, incarnation=max(me.incarnation, accused_incarnation) + 1)
        self._members[self._local_name] = me
        fx = self._out()
        fx.refutes += 1
        fx.owe_alive = True
        self._gossip(Alive(me))

    def _alive_about_self(self, news: MemberState, now: float) -> None:
        me = self.local
        if self.leaving:
            return
        if news.incarnation < me.incarnation:
            # Its sender holds an older view of us (or asks us to verify a jump it
            # could not take from a third party): answer with our current Alive.
            self._out().owe_alive = True
            return
        if news.incarnation > me.incarnation + self.config.incarnation_window:
            self._out().implausible_incarnation += 1
            return
        if news.incarnation == me.incarnation and news.addr == me.addr and news.meta == me.meta:
            return
        if news.addr != me.addr:
            # Another process claims our name from another address: an operator error
            # (or a forgery). Report it once, and outbid it at most once per period
            # there, so two processes with one name cannot refute each other in a storm.
            last = self._conflict_seen(news.addr, now)
            if last is not None and now - last < self.config.probe_interval_s:
                return
            self._conflicts[news.addr] = now
        # Someone claims a version of us we did not announce (an older process of ours,
        # or a forgery): outbid it.
        self._refute(news.incarnation)

    def _conflict_seen(self, addr: Address, now: float) -> float | None:
        """Record that `addr` claims our name; the last refute there, if any. Reports
        `NameConflict` the first time."""
        conflicts = self._conflicts
        if addr in conflicts:
            return conflicts[addr]
        self._out().events.append(NameConflict(name=self._local_name, addr=addr, at=now))
        conflicts[addr] = -_INF
        if len(conflicts) > MAX_CONFLICTS:
            del conflicts[next(iter(conflicts))]
        return None

    def _verify(self, cur: MemberState, now: float) -> None:
        # Ask `cur` for its own word: our older view of it makes it answer with its
        # current Alive, straight from its address (at most once per period).
        name = cur.name
        last = self._noticed_at.get(name)
        if last is not None and now - last < self.config.probe_interval_s:
            return
        self._noticed_at[name] = now
        self._out().notices.append((cur.addr, Alive(attrs.evolve(cur, status=ALIVE))))

    def _add(self, news: MemberState, now: float) -> None:
        if len(self._members) >= self.config.max_members:
            self._out().table_full += 1
            return
        budget = self._new_budget
        if budget is not None:
            if budget <= 0:
                self._out().push_pull_new_capped += 1
                return
            self._new_budget = budget - 1
        name = news.name
        self._members[name] = news
        self._tombstones.pop(name, None)
        # Insert at a random position in O(1): append, then swap with a random slot
        # (memberlist does the same).
        order = self._probe_order
        order.append(name)
        slot = self.rng.randint(0, len(order) - 1)
        order[slot], order[-1] = order[-1], order[slot]
        self._out().events.append(MemberJoined(member=news, at=now))
        self._gossip(Alive(news))

    def _correct_stale(self, cur: MemberState) -> None:
        # Someone still suspects a member we hold dead or left: they missed the news
        # (with a small retransmit budget a leave can miss a member). Gossip it again,
        # unless news about it is still queued, so they learn "left" before their own
        # suspicion times out into a false "failed".
        name = cur.name
        accuser = name if cur.status == LEFT else self._local_name
        self._out().gossip.append((Dead(name, cur.incarnation, accuser), True))

    def _notify_rumour(self, cur: MemberState, now: float) -> None:
        # `cur` is dead or left here while it shows itself alive at the same address
        # (an Alive at an incarnation the rumour beats, or a ping): tell it, so it
        # refutes (or, if it already did, answers with its newer Alive).
        name = cur.name
        last = self._noticed_at.get(name)
        if last is not None and now - last < self.config.probe_interval_s:
            return
        self._noticed_at[name] = now
        accuser = name if cur.status == LEFT else self._local_name
        self._out().notices.append((cur.addr, Dead(name, cur.incarnation, accuser)))

    def _may_reclaim(self, cur: MemberState, now: float) -> bool:
        reclaim_s = self.config.dead_node_reclaim_s
        if cur.status not in _GONE or reclaim_s is None:
            return False
        return now - self._gone_since[cur.name] >= reclaim_s

    def _start_suspicion(self, name: str, incarnation: int, accuser: str, now: float) -> None:
        cfg = self.config
        n = self.count()
        min_s = suspicion_timeout_min_s(cfg.suspicion_mult, n, cfg.probe_interval_s)
        if cfg.dynamic_suspicion:
            k = suspicion_confirmations_needed(cfg.suspicion_mult, n, cfg.suspicion_confirmations)
            max_s = cfg.suspicion_max_timeout_mult * min_s
        else:
            k, max_s = 0, min_s  # plain SWIM: a fixed timeout
        suspicion = Suspicion.start(
            incarnation=incarnation, accuser=accuser, k=k, min_s=min_s, max_s=max_s, now=now
        )
        self._suspicions[name] = suspicion
        self._deadlines.push(suspicion.deadline, name)

    def _gossip(self, news: News) -> None:
        self._out().gossip.append((news, False))
