"""`DatagramRules`: what `Core` does with a datagram, one message at a time.

The façade's input job (core.py keeps the public `receive_datagram`, which counts the
datagram and hands its messages here): each message goes to the prober (ping, ack,
nack, ping-req), the membership table (alive, suspect, dead), dissemination (user
broadcasts), the queries, or the stable-view mode; what the membership table says an
input did (`Effects`) is carried out here too, for every input path (streams and the
application's calls use `_carry_out` as well). Then the notices owed are sent, and our
own Alive to a peer that showed it holds an outdated view of us.

`ExchangeRules` (pushpull.py, the stream job) builds on this class, and `Core` on that
one: single inheritance, so the compiled core (mypyc) keeps them native classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from swim.core.codec import KIND_NAMES, MalformedMessage, decode_untrusted
from swim.core.config import Config
from swim.core.dissemination import Dissemination
from swim.core.effects import NOTHING, Effects
from swim.core.events import Event, UserMessageReceived
from swim.core.membership import Membership
from swim.core.messages import (
    Ack,
    Address,
    Alive,
    Dead,
    MemberStatus,
    Message,
    Nack,
    Ping,
    PingReq,
    Query,
    QueryResponse,
    Relay,
    StableAlert,
    StableAlerts,
    StableVote,
    Suspect,
    UserBroadcast,
    UserMessage,
    ViewDigest,
    ViewSync,
)
from swim.core.probing import Prober
from swim.core.queries import Queries
from swim.core.stats import Stats
from swim.core.vivaldi import MAX_TRACKED, Coordinate, VivaldiClient

if TYPE_CHECKING:
    from swim.core.stable.views import StableViews

_SUSPECT: Final = MemberStatus.SUSPECT


class DatagramRules:
    """Datagram input and carrying out effects for `Core` (see the module docstring)."""

    # The façade's parts, set by `Core.__init__` (plain attributes: a class compiled by
    # mypyc may declare only attributes and methods).
    config: Config
    name: str
    stats: Stats
    _events: list[Event]
    _membership: Membership
    _dis: Dissemination
    _prober: Prober
    _queries: Queries
    _vivaldi: VivaldiClient
    #: The latest coordinate each member sent us on an ack.
    _coords: dict[str, Coordinate]
    #: Rumour notices the membership table asked for, sent after the input.
    _notices: list[tuple[Address, Dead | Alive]]
    #: Set when an input showed its sender an outdated view of us (see `_answer_outdated`).
    _owe_alive: bool
    #: The stable-view mode (`Config.stable_views`), None in SWIM mode.
    _stable: StableViews | None

    def _take_in(
        self, data: bytes, messages: Sequence[Message] | None, *, stream: bool
    ) -> Sequence[Message] | None:
        """Count an incoming datagram or frame and decode it (unless the caller passed
        its messages); None if it is malformed (counted)."""
        stats = self.stats
        stats.datagrams_in += 1
        stats.bytes_in += len(data)
        if messages is not None:
            return messages
        try:
            return decode_untrusted(data, stream=stream)
        except MalformedMessage:
            stats.malformed += 1
            return None

    def _observe_rtt(self, name: str, coord: Coordinate, rtt_s: float) -> None:
        coords = self._coords
        coords.pop(name, None)
        coords[name] = coord
        if len(coords) > MAX_TRACKED:
            del coords[next(iter(coords))]
        self._vivaldi.update(name, coord, rtt_s)

    def _carry_out(self, fx: Effects) -> None:
        """Do what the membership table said its input did."""
        if fx is NOTHING:
            return
        dis = self._dis
        for news, unless_queued in fx.gossip:
            dis.queue(news, unless_queued=unless_queued)
        for name in fx.forget:
            dis.forget(name)
        if fx.events:
            stable = self._stable
            self._events.extend(
                fx.events if stable is None else filter(stable.keep_event, fx.events)
            )
        if fx.notices:
            self._notices.extend(fx.notices)
        if fx.owe_alive:
            self._owe_alive = True
        stats = self.stats
        stats.suspicions += fx.suspicions
        stats.failures_declared += fx.failures_declared
        stats.implausible_incarnation += fx.implausible_incarnation
        stats.name_conflicts += fx.name_conflicts
        stats.table_full += fx.table_full
        stats.push_pull_new_capped += fx.push_pull_new_capped
        if fx.refutes:
            stats.refutes += fx.refutes
            for _ in range(fx.refutes):
                self._prober.refuted()
        dis.cluster_size = self._membership.count()

    def _flush_notices(self) -> None:
        """Send the rumour notices the membership table asked for."""
        if self._notices:
            notices, self._notices = self._notices, []
            for addr, msg in notices:
                self._dis.send_one(addr, msg)

    def _answer_outdated(self, addr: Address, mark: int) -> None:
        """If input from `addr` showed it an outdated view of us, send it our Alive.

        That is: it made us refute (refuting to the accuser's face), or it accused an
        incarnation we had already refuted. Gossip alone may miss the very member that
        holds the rumour (with a small retransmit budget it often does), leaving us dead
        in its view until the next push-pull. Skipped when a datagram to `addr` since
        `mark` (an ack, say) already carried our current Alive.
        """
        if not self._owe_alive:
            return
        self._owe_alive = False
        alive = Alive(self._membership.local)
        if not self._dis.sent_since(mark, addr, alive):
            self._dis.send_one(addr, alive)

    def _handle_messages(self, messages: Sequence[Message], addr: Address, now: float) -> None:
        membership = self._membership
        prober = self._prober
        counter = self.stats.messages_in
        kind_names = KIND_NAMES
        table = membership.table
        carry_out = self._carry_out
        self._owe_alive = False
        mark = len(self._dis.outbox)  # Dissemination.mark, without the call
        for msg in messages:
            counter[kind_names[type(msg)]] += 1
            if isinstance(msg, Alive):
                # Most messages in a busy cluster (a join's gossip), so tested first,
                # without the match below. The very state we hold is news to nobody (a
                # state is a shared value, and most gossip in object mode repeats it).
                member = msg.member
                if table.get(member.name) is not member:
                    carry_out(membership.apply_alive(member, now, addr))
                continue
            match msg:
                case Ping(seq, target, source):
                    if target == self.name:
                        coord = self._vivaldi.coordinate if self.config.coordinates else None
                        self._dis.send_one(addr, Ack(seq, coord))
                        if source:
                            carry_out(membership.prober_seen(source, addr, now))
                    else:
                        self.stats.unexpected += 1
                case Ack(seq) if self._stable is not None and self._stable.is_admission_ack(seq):
                    self._events.extend(self._stable.admission_ack(seq, now))
                case Ack(seq, coord):
                    acked = prober.on_ack(seq, now)
                    if acked is not None and coord is not None and self.config.coordinates:
                        self._observe_rtt(acked[0], coord, acked[1])
                    if acked is not None and self._stable is not None:
                        self._events.extend(self._stable.probe_result(acked[0], True, now))
                case Suspect():
                    carry_out(membership.apply_suspect(msg, now))
                case Dead():
                    carry_out(membership.apply_dead(msg, now))
                case PingReq():
                    if self._may_serve(msg, addr):
                        prober.on_ping_req(msg, addr, now)
                    else:
                        self.stats.ping_reqs_refused += 1
                case Nack(seq):
                    prober.on_nack(seq)
                case UserBroadcast(origin):
                    if origin != self.name:
                        self._accept_user_broadcast(msg, now)
                case UserMessage(source, payload):
                    self._events.append(
                        UserMessageReceived(source=source, addr=addr, payload=payload, at=now)
                    )
                case Query():
                    self._events.extend(self._queries.on_query(
                        msg, now, membership.local, addr=addr, roster=membership
                    ))
                case QueryResponse():
                    self._events.extend(self._queries.on_response(msg, addr, now, membership))
                case Relay():
                    self._queries.on_relay(msg, addr, membership)
                case (StableAlert() | StableAlerts() | StableVote() | ViewDigest()
                      | ViewSync()) if self._stable:
                    self._events.extend(self._stable.receive(msg, addr, now))
                case _:
                    self.stats.unexpected += 1
        # Both are rare after a datagram; the tests spare a call each when idle.
        if self._notices:
            self._flush_notices()
        if self._owe_alive:
            self._answer_outdated(addr, mark)

    def _may_serve(self, req: PingReq, addr: Address) -> bool:
        """A ping-req is served only for a member we know at the address it came from,
        about a target we know at the address it names (no reflection for strangers)."""
        membership = self._membership
        requester = membership.get(req.source) if req.source else None
        if requester is None or requester.addr != addr or requester.status > _SUSPECT:
            return False
        target = membership.get(req.target)
        return target is not None and target.addr == req.target_addr

    def _accept_user_broadcast(
        self, msg: UserBroadcast, now: float, *, deliver: bool = True
    ) -> None:
        event = self._dis.accept_user_broadcast(msg, now, deliver=deliver)
        if event is not None:
            self._events.append(event)
