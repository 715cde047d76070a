"""Queries: Serf's request/response fan-out over the gossip layer.

The asker gossips a `Query` (as reliably as a user broadcast: the same queue, budget and
per-(origin, id) deduplication). Every member that receives it passes it on; a member
that matches its filters (names, and tags as shell-style patterns) delivers it to its
application as `QueryReceived`, acks at once if asked to, and may answer once with
`Core.respond` before the query's deadline. Acks and answers go straight back to the
asker's address as `QueryResponse` datagrams, and also through `relay_factor` random
members (a `Relay` each) for paths that lose packets. The asker reports each member's
ack and answer once (`QueryAcked`, `QueryResponded`) and closes the query at its
timeout (`QueryFinished`): Serf's default is ``gossip_interval * 16 * ceil(log10(n+1))``.

Re-asking (``reask``, which the key commands use): gossip gives each query a transmit
budget, and now and then a member hears none of the copies (or its answer is lost). So
an asker that wants every member to answer re-sends the query, same id, straight to each
live member that matches the filters and has not been heard from, every
`reask_interval_s`, until the deadline. A member that has not seen the query takes it as
new; one that has already answered sends its stored ack and answer again (only when
the copy comes from the asker's own address, at most `MAX_RESENDS` times), so a lost
answer is recovered too and no command is applied twice. The asker still counts each
member once.

What is trusted: an answer counts only if it comes from the answering member's own
address, or from a member (named in `via`) that relayed it from its own address; a relay
is forwarded only when the responder asks from its own address and the destination is
the asker's known address. So a stranger cannot forge answers, nor use members to send
datagrams to arbitrary addresses. (With encryption on, strangers cannot speak at all.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import attr
import attrs

from swim.core.broadcasts import SeenIds
from swim.core.codec import DATAGRAM_OVERHEAD, MAX_RELAY_FACTOR, encode_message
from swim.core.config import Config
from swim.core.deadlines import DeadlineHeap
from swim.core.dissemination import Dissemination
from swim.core.errors import ProtocolError
from swim.core.events import Event, QueryAcked, QueryFinished, QueryReceived, QueryResponded
from swim.core.messages import Address, MemberState, Query, QueryResponse, Relay
from swim.core.roster import Roster
from swim.core.stats import Stats
from swim.core.tags import tags_match, tags_of

#: Most queries of ours open at once, and most others' queries we may still answer.
MAX_OPEN_QUERIES: Final = 256
MAX_ANSWERABLE: Final = 1024
#: Re-asks spread over a query's timeout (at most this many rounds).
REASK_ROUNDS: Final = 8
#: Most times a member sends its ack and answer again to one query's re-asks.
MAX_RESENDS: Final = 2 * REASK_ROUNDS


@attr.s(auto_attribs=True, eq=False)
class _Asked:
    """One of our queries, open until `deadline`."""

    deadline: float
    #: The query itself, kept to re-send it (None: no re-asking).
    reask: Query | None = None
    reask_at: float = 0.0
    acks: set[str] = attr.ib(factory=set)
    responses: set[str] = attr.ib(factory=set)


@attr.s(auto_attribs=True, eq=False)
class _Answerable:
    """Another member's query we matched, answerable once until `deadline`."""

    reply_to: Address
    relay_factor: int
    deadline: float
    responded: bool = False
    #: What we sent the asker (ack, answer), sent again when it re-asks.
    sent: list[QueryResponse] = attr.ib(factory=list)
    resends: int = 0


def default_timeout_s(config: Config, n: int) -> float:
    """Serf's query timeout: ``gossip_interval * mult * ceil(log10(n + 1))``."""
    return config.gossip_interval_s * config.query_timeout_mult * math.ceil(math.log10(n + 1))


def reask_interval_s(config: Config, timeout_s: float) -> float:
    """Time between re-asks: the timeout in `REASK_ROUNDS` rounds, but no more often than
    one gossip interval (the gossip itself needs a few to spread the query)."""
    return max(timeout_s / REASK_ROUNDS, config.gossip_interval_s)


def matches(query: Query, local: MemberState) -> bool:
    """Whether `local` passes the query's filters (every one of them)."""
    if query.filter_names and local.name not in query.filter_names:
        return False
    return not query.filter_tags or tags_match(tags_of(local.meta), query.filter_tags)


class Queries:
    """Both sides of queries for one member: those it asked and those it may answer."""

    def __init__(self, config: Config, stats: Stats, dissemination: Dissemination, name: str):
        self.config: Final = config
        self._stats = stats
        self._out = dissemination
        self._name = name
        self._seen = SeenIds(config.user_broadcast_memory)
        self._asked: dict[int, _Asked] = {}
        self._answerable: dict[tuple[str, int], _Answerable] = {}
        #: Deadlines keyed ("asked", "", id) or ("answer", origin, id).
        self._timers: DeadlineHeap[tuple[str, str, int]] = DeadlineHeap()

    # ------------------------------------------------------------------------ asking

    def ask(
        self, query: Query, now: float, local: MemberState, *, reask: bool = False
    ) -> list[Event]:
        """Gossip our `query` (already numbered); the events of our own match, if any.

        With `reask`, re-send it to the matching live members not heard from, until the
        deadline (see the module docs)."""
        if len(self._asked) >= MAX_OPEN_QUERIES:
            raise ProtocolError(f"at most {MAX_OPEN_QUERIES} queries may be open at once")
        if len(query.payload) > self.config.query_size_limit:
            raise ProtocolError(
                f"query payload of {len(query.payload)} bytes is over the limit "
                f"({self.config.query_size_limit})"
            )
        if not 0 <= query.relay_factor <= MAX_RELAY_FACTOR:
            raise ProtocolError(f"relay_factor must be in 0..{MAX_RELAY_FACTOR}")
        encoded = encode_message(query)
        if len(encoded) + DATAGRAM_OVERHEAD > self.config.packet_budget:
            raise ProtocolError(
                f"query of {len(encoded)} bytes encoded does not fit the packet budget "
                f"({self.config.packet_budget})"
            )
        deadline = now + query.timeout_ms / 1000.0
        asked = self._asked[query.id] = _Asked(deadline)
        self._timers.push(deadline, ("asked", "", query.id))
        if reask:
            asked.reask = query
            self._schedule_reask(query.id, asked, now)
        return self.on_query(query, now, local, encoded=encoded)

    def on_response(
        self, response: QueryResponse, addr: Address, now: float, roster: Roster
    ) -> list[Event]:
        """An ack or answer to one of our queries, directly or relayed."""
        asked = self._asked.get(response.id) if response.origin == self._name else None
        speaker = roster.get(response.via or response.source)
        if (
            asked is None or now >= asked.deadline or speaker is None or speaker.addr != addr
            or roster.get(response.source) is None
        ):
            self._stats.query_responses_refused += 1
            return []
        heard = asked.acks if response.ack else asked.responses
        if response.source in heard:
            return []  # the same answer again (a relayed copy)
        heard.add(response.source)
        if response.ack:
            return [QueryAcked(id=response.id, source=response.source, at=now)]
        return [
            QueryResponded(id=response.id, source=response.source, payload=response.payload,
                           at=now)
        ]

    # --------------------------------------------------------------------- answering

    def on_query(
        self, query: Query, now: float, local: MemberState, *, encoded: bytes | None = None,
        addr: Address | None = None, roster: Roster | None = None,
    ) -> list[Event]:
        """A query (ours or another's) that came from `addr`: pass it on; deliver it if it
        matches us. A copy of one already seen is a re-ask if the asker sent it."""
        key = (query.origin, query.id)
        if not self._seen.add(key):
            if addr is not None and roster is not None:
                self._resend(key, now, addr, roster)
            return []
        self._out.queue_user(("query", *key), query, encoded or encode_message(query))
        if not matches(query, local):
            return []
        self._stats.queries_received += 1
        deadline = now + query.timeout_ms / 1000.0
        events: list[Event] = [
            QueryReceived(origin=query.origin, id=query.id, name=query.name,
                          payload=query.payload, deadline=deadline, at=now)
        ]
        if query.origin == self._name:
            if query.want_ack:
                events += self.on_local(QueryResponse(query.origin, query.id, self._name, True,
                                                      b""), now)
        else:
            if len(self._answerable) >= MAX_ANSWERABLE:
                oldest = next(iter(self._answerable))
                del self._answerable[oldest]
            answerable = _Answerable(query.reply_to, query.relay_factor, deadline)
            self._answerable[key] = answerable
            self._timers.push(deadline, ("answer", *key))
            if query.want_ack:
                ack = QueryResponse(query.origin, query.id, self._name, True, b"")
                answerable.sent.append(ack)
                self._send(ack, query.reply_to, ())
        return events

    def _resend(self, key: tuple[str, int], now: float, addr: Address, roster: Roster) -> None:
        """The asker re-asked a query we have seen: send what we sent it again (a lost
        ack or answer), never to any address but the one the query named."""
        answerable = self._answerable.get(key)
        asker = roster.get(key[0])
        if (
            answerable is None or now >= answerable.deadline or not answerable.sent
            or asker is None or asker.addr != addr or answerable.resends >= MAX_RESENDS
        ):
            return  # a gossip copy, or nothing to say again
        answerable.resends += 1
        for response in answerable.sent:
            self._out.send_one(answerable.reply_to, response)

    def relays_wanted(self, origin: str, query_id: int) -> int:
        """How many members an answer to (origin, id) should also go through."""
        answerable = self._answerable.get((origin, query_id))
        return 0 if answerable is None else answerable.relay_factor

    def respond(
        self, origin: str, query_id: int, payload: bytes, now: float,
        relays: Sequence[Address],
    ) -> list[Event]:
        """Answer (origin, id) once, before its deadline; raises `ProtocolError` if not."""
        if len(payload) > self.config.query_response_size_limit:
            raise ProtocolError(
                f"answer of {len(payload)} bytes is over the limit "
                f"({self.config.query_response_size_limit})"
            )
        response = QueryResponse(origin, query_id, self._name, False, payload)
        if origin == self._name:
            asked = self._asked.get(query_id)
            if asked is None or self._name in asked.responses:
                raise ProtocolError(f"query {query_id} is not open or was answered")
            return self.on_local(response, now)
        answerable = self._answerable.get((origin, query_id))
        if answerable is None or now >= answerable.deadline:
            raise ProtocolError(f"no open query {query_id} from {origin!r} to answer")
        if answerable.responded:
            raise ProtocolError(f"query {query_id} from {origin!r} was already answered")
        answerable.responded = True
        answerable.sent.append(response)
        self._send(response, answerable.reply_to, relays)
        return []

    def on_local(self, response: QueryResponse, now: float) -> list[Event]:
        """Our own ack or answer to our own query."""
        asked = self._asked.get(response.id)
        if asked is None:
            return []
        heard = asked.acks if response.ack else asked.responses
        if self._name in heard:
            return []
        heard.add(self._name)
        if response.ack:
            return [QueryAcked(id=response.id, source=self._name, at=now)]
        return [QueryResponded(id=response.id, source=self._name, payload=response.payload,
                               at=now)]

    def on_relay(self, relay: Relay, addr: Address, roster: Roster) -> None:
        """Forward another member's answer to the asker, if both are who they claim."""
        response = relay.response
        responder = roster.get(response.source)
        asker = roster.get(response.origin)
        if (
            responder is None or responder.addr != addr or asker is None
            or asker.addr != relay.dest or response.via
        ):
            self._stats.query_responses_refused += 1
            return
        self._out.send_one(relay.dest, attrs.evolve(response, via=self._name))

    # ------------------------------------------------------------------------ timers

    def _schedule_reask(self, query_id: int, asked: _Asked, now: float) -> None:
        assert asked.reask is not None
        at = now + reask_interval_s(self.config, asked.reask.timeout_ms / 1000.0)
        if at < asked.deadline:
            asked.reask_at = at
            self._timers.push(at, ("reask", "", query_id))

    def _reask(self, query_id: int, now: float, roster: Roster) -> None:
        """Send our query straight to every live member it matches that is silent."""
        asked = self._asked[query_id]
        query = asked.reask
        assert query is not None
        heard = asked.acks | asked.responses
        for member in roster.states():
            if (
                member.name != self._name and member.name not in heard
                and roster.is_live(member.name) and matches(query, member)
            ):
                self._stats.query_reasks += 1
                self._out.send_one(member.addr, query)
        self._schedule_reask(query_id, asked, now)

    def _live(self, when: float, key: tuple[str, str, int]) -> bool:
        kind, origin, query_id = key
        if kind == "asked":
            asked = self._asked.get(query_id)
            return asked is not None and asked.deadline == when
        if kind == "reask":
            asked = self._asked.get(query_id)
            return asked is not None and asked.reask_at == when
        answerable = self._answerable.get((origin, query_id))
        return answerable is not None and answerable.deadline == when

    def deadline(self) -> float | None:
        """The next query deadline, if any."""
        if not self._asked and not self._answerable:
            return None
        return self._timers.earliest(self._live)

    def handle_timers(self, now: float, roster: Roster | None = None) -> list[Event]:
        """Close our queries that timed out, re-ask where due (given the `roster`);
        forget answerable ones past their deadline."""
        events: list[Event] = []
        for _, (kind, origin, query_id) in self._timers.pop_due(now, self._live):
            if kind == "reask":
                if roster is not None:
                    self._reask(query_id, now, roster)
            elif kind == "asked":
                asked = self._asked.pop(query_id)
                events.append(QueryFinished(id=query_id, acks=len(asked.acks),
                                            responses=len(asked.responses), at=now))
            else:
                del self._answerable[(origin, query_id)]
        return events

    def _send(self, response: QueryResponse, dest: Address, relays: Sequence[Address]) -> None:
        self._out.send_one(dest, response)
        for relay in relays:
            self._out.send_one(relay, Relay(dest, response))
