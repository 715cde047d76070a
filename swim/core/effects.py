"""`Effects`: what one input to the membership table did, for its caller to carry out.

`swim.core.membership.Membership` owns every status transition but touches nothing
outside its own table: it returns an `Effects` value and the core carries it out
(queues the news for dissemination, sends the notices, publishes the events, adds the
counters to its statistics, charges local health for refutes). Values compare by
value, so tests assert ``membership.apply_alive(...) == Effects(events=[...], ...)``.
"""

from __future__ import annotations

from typing import Final

import attr

from swim.core.events import Event
from swim.core.messages import Address, Alive, Dead, Suspect

#: Membership news, as gossiped.
News = Alive | Suspect | Dead


@attr.s(auto_attribs=True, kw_only=True)
class Effects:
    """The consequences of one membership input, in the order they arose."""

    #: News to queue for dissemination, as ``(news, unless_queued)``: news about a
    #: member replaces queued news about it; with ``unless_queued`` it is queued only
    #: if nothing about that member is queued already (a re-gossip of old news).
    gossip: list[tuple[News, bool]] = attr.ib(factory=list)
    #: Members reaped from the table: forget queued news about them.
    forget: list[str] = attr.ib(factory=list)
    #: Application events.
    events: list[Event] = attr.ib(factory=list)
    #: Datagrams to send directly: rumour notices (``Dead`` about the addressee), and
    #: verifications (our older ``Alive`` of the addressee, which it answers with its
    #: current one, in its own word).
    notices: list[tuple[Address, Dead | Alive]] = attr.ib(factory=list)
    #: The input showed its sender an outdated view of us (it made us refute, or it
    #: accused an incarnation we already left behind): answer it with our Alive.
    owe_alive: bool = False
    #: Times we refuted news about ourselves (each costs a point of local health).
    refutes: int = 0
    #: Members newly suspected, and suspicions we confirmed into failures ourselves.
    suspicions: int = 0
    failures_declared: int = 0
    #: News dropped for an implausible incarnation jump.
    implausible_incarnation: int = 0
    #: Alive news for a live name from another address.
    name_conflicts: int = 0
    #: New members dropped: the table is full, or over a push-pull's cap.
    table_full: int = 0
    push_pull_new_capped: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.gossip or self.forget or self.events or self.notices or self.owe_alive
            or self.refutes or self.suspicions or self.failures_declared
            or self.implausible_incarnation or self.name_conflicts or self.table_full
            or self.push_pull_new_capped
        )


#: The effects of an input that changed nothing (shared; never mutated).
NOTHING: Final = Effects()
