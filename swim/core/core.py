"""`Core`: one SWIM + Lifeguard member as a sans-IO state machine (the façade).

Inputs are method calls that take a keyword-only ``now`` (seconds, any monotonic
origin): datagrams (`receive_datagram`), stream frames (`handle_stream_request`,
`receive_stream_response`), the timer (`handle_timer`) and the application's calls.
Everything the core has for its driver comes out of one call, `poll`: datagrams to
send, streams to open, application events, the absolute deadline of the next
`handle_timer`, and whether a leave is over. The core never reads a clock, never does
I/O and draws every random choice from the `random.Random` it is given, so a driver
(the trio runtime, the simulator, a test) fully determines its run.

The work is split by job, each part in its own module:

* `Membership` (membership.py): the table and every status transition; it returns
  `Effects`, which this façade carries out;
* `Prober` (probing.py): the probe cycle, the ping-req helper side, local health;
* `Dissemination` (dissemination.py): news queues, piggybacking, the datagram outbox;
* `DatagramRules` (receiving.py): what the façade does with each message of a
  datagram, and carrying out `Effects`;
* `Exchange` (exchange.py): streams, their timeouts and the join rounds, and
  `ExchangeRules` (pushpull.py): what the façade does with streams and full states;
* `DriverPolicy` (policy.py): the join, leave and timer rules every driver shares.

One datagram's path: `receive_datagram` -> `decode_untrusted` (codec.py) -> one
message at a time to the prober (ping, ack, nack, ping-req), the membership table
(alive, suspect, dead) or dissemination (user broadcasts) -> `Effects` carried out
(news queued, events kept, notices and acks sent through `Dissemination.send`, which
piggybacks news) -> `poll`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from swim.core.codec import (
    DATAGRAM_OVERHEAD,
    KIND_NAMES,
    MAX_SEQ,
    MAX_USER_PAYLOAD_BYTES,
    encode,
    encode_message,
)
from swim.core.config import META_MAX_BYTES, NAME_MAX_BYTES, Config
from swim.core.dissemination import Dissemination
from swim.core.effects import NOTHING
from swim.core.errors import ProtocolError
from swim.core.events import Event
from swim.core.exchange import Exchange
from swim.core.membership import Membership
from swim.core.messages import (
    Address,
    Alive,
    Dead,
    MemberState,
    MemberStatus,
    Message,
    Ping,
    Query,
    UserBroadcast,
    UserMessage,
)
from swim.core.outputs import Output, StreamKind, StreamReply
from swim.core.policy import DriverPolicy
from swim.core.probing import Prober, advance
from swim.core.pushpull import ExchangeRules
from swim.core.queries import Queries, default_timeout_s
from swim.core.stats import Stats
from swim.core.timing import push_pull_scale
from swim.core.vivaldi import Coordinate, VivaldiClient

if TYPE_CHECKING:
    from swim.core.stable.views import StableViews

__all__ = ["Core", "ProtocolError"]

_INF: Final = float("inf")
_ALIVE: Final = MemberStatus.ALIVE
_SUSPECT: Final = MemberStatus.SUSPECT


class Core(ExchangeRules):
    """One member of a SWIM cluster, without I/O.

    Args:
        config: protocol settings (e.g. ``Config.lan()``).
        name: this member's unique name (at most 255 bytes of UTF-8).
        addr: the (IP literal, port) other members reach this member at.
        rng: the source of every random choice (seed it for reproducible runs).
        now: the current time.
        meta: metadata gossiped with this member (at most 512 bytes).
        incarnation: starting incarnation (0 for a new process).
        policy: join retry, leave and timer rules (`DriverPolicy()` by default).
    """

    def __init__(
        self,
        config: Config,
        *,
        name: str,
        addr: Address,
        rng: random.Random,
        now: float,
        meta: bytes = b"",
        incarnation: int = 0,
        policy: DriverPolicy | None = None,
    ) -> None:
        if not name or len(name.encode("utf-8")) > NAME_MAX_BYTES:
            raise ProtocolError(f"name must be 1..{NAME_MAX_BYTES} bytes of UTF-8")
        _check_meta(meta)
        encode_message(Alive(MemberState(name, addr, incarnation)))  # validates addr
        self.config = config
        self.policy: Final = policy if policy is not None else DriverPolicy()
        self.name = name
        self.addr: Final = addr
        self._rng = rng
        self.stats = Stats()
        self._events: list[Event] = []
        self._membership = Membership.create(
            config, MemberState(name, addr, incarnation, _ALIVE, meta), rng=rng
        )
        first_seq = rng.randrange(MAX_SEQ + 1)
        self._user_broadcast_id = rng.getrandbits(62)
        # Staggered starts, so members started together do not probe in lock step
        # (unless asked to: synchronous rounds start on the global grid of periods).
        first_probe_at = now + rng.uniform(0.0, config.probe_interval_s)
        if config.synchronous_rounds:
            period = config.probe_interval_s
            first_probe_at = (int(now / period) + 1) * period
        self._gossip_at = now + rng.uniform(0.0, config.gossip_interval_s)
        self._push_pull_at = now + rng.uniform(0.5, 1.0) * push_pull_scale(
            config.push_pull_interval_s, 1
        )
        self._reconnect_at = now + rng.uniform(0.5, 1.0) * config.reconnect_interval_s
        self._dis = Dissemination(config, self.stats)
        self._prober = Prober(
            config, self.stats, self._dis, name=name, first_seq=first_seq,
            first_probe_at=first_probe_at,
        )
        self._exchange = Exchange(config, self.policy, self.stats, rng)
        self._queries = Queries(config, self.stats, self._dis, name)
        self._vivaldi = VivaldiClient(rng)
        self._coords = {}
        self._notices = []
        self._owe_alive = False
        self._leave_deadline = _INF
        self._leave_expired = False
        self._push_pull_on = config.push_pull
        self._reconnect_on = config.reconnect_interval_s > 0
        self._gossip_on = config.gossip_timer and config.gossip_nodes > 0
        self._gossip_ticker = config.gossip_ticker
        #: The stable-view mode (`Config.stable_views`), None in SWIM mode.
        self._stable = None
        if config.membership_mode == "stable":
            # The opt-in mode, imported when used (a SWIM-mode member never loads it).
            from swim.core.stable.views import StableViews

            self._stable = StableViews(
                config, self._dis, self._membership, rng, name=name, now=now,
                next_seq=self._prober.next_seq,
            )
        self._carry_out(self._membership.announce())

    # ============================================================== application inputs

    def join(self, seeds: Iterable[Address], *, now: float) -> list[int]:
        """Join through `seeds`: a full-state exchange with each; returns the stream ids.

        Each exchange ends in a `JoinCompleted` event (``ok=False`` if the seed did not
        answer). If a whole round fails and no other live member is known, the core
        retries on its own timer with the policy's jittered, capped backoff (never
        once we are leaving).
        """
        if self._stable is not None:
            self._stable.joining()
        return self._join_round(self._exchange.start_join(list(seeds), self.addr), now)

    def bootstrap(
        self,
        members: Iterable[MemberState] | Mapping[str, MemberState],
        *,
        now: float,
        probe_order: Sequence[str] | None = None,
    ) -> None:
        """Start out knowing `members`, as if joined long ago: no events, no gossip.

        For simulations and tests that begin with a converged cluster (joining ten
        thousand members one by one is a different experiment). A prebuilt
        ``name -> state`` mapping, shared by every member of a simulated cluster, is
        copied at C speed; `probe_order` (every other member's name) then spares the
        shuffle. See `Membership.bootstrap`.
        """
        self._membership.bootstrap(members, now, probe_order)
        self._dis.cluster_size = self._membership.count()
        if self._stable is not None:
            self._stable.bootstrap((m.name for m in self._membership.states()), now)

    def leave(self, *, now: float, timeout_s: float | None = None) -> None:
        """Leave gracefully: gossip our departure and stop probing and joining.

        The driver keeps running the core until `poll` reports ``leave_done``: the
        departure was sent its full count, or `timeout_s` (default: the policy's
        ``leave_timeout_s``) passed.
        """
        if self._membership.leaving:
            return
        self._carry_out(self._membership.leave())
        if self._stable is not None:
            self._events.extend(self._stable.leave(now))
        self._prober.stop()
        self._exchange.stop_joining()
        timeout = self.policy.leave_timeout_s if timeout_s is None else timeout_s
        self._leave_deadline = now + timeout

    @property
    def leaving(self) -> bool:
        """True once `leave` was called."""
        return self._membership.leaving

    @property
    def leave_complete(self) -> bool:
        """True once our departure was sent its full count, or no one is left to tell."""
        if not self._membership.leaving:
            return False
        if not self._dis.has_news_about(self.name):
            return True
        return not self._membership.has_live_peer()

    def update_metadata(self, meta: bytes, *, now: float) -> None:
        """Replace our metadata; gossiped with a new incarnation."""
        _check_meta(meta)
        if self._membership.leaving:
            raise ProtocolError("cannot update metadata after leaving")
        self._carry_out(self._membership.update_local(meta))

    def broadcast(self, payload: bytes, *, now: float) -> int:
        """Gossip `payload` to every member; returns its id.

        The payload must fit in one datagram next to its header. It is delivered to
        every member once, the local one included (as a `UserBroadcastReceived`).
        """
        if not isinstance(payload, bytes):
            raise ProtocolError("payload must be bytes")
        msg = UserBroadcast(self.name, self._next_user_id(), payload)
        encoded = encode_message(msg)
        if len(encoded) + DATAGRAM_OVERHEAD > self.config.packet_budget:
            raise ProtocolError(
                f"broadcast of {len(payload)} bytes does not fit the packet budget "
                f"({self.config.packet_budget}); send it as a reliable message instead"
            )
        event = self._dis.accept_user_broadcast(msg, now, encoded=encoded)
        if event is not None:
            self._events.append(event)
        return msg.id

    def query(
        self,
        name: str,
        payload: bytes = b"",
        *,
        now: float,
        filter_names: Sequence[str] = (),
        filter_tags: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        timeout_s: float | None = None,
        want_ack: bool = False,
        relay_factor: int = 0,
        reask: bool = False,
    ) -> int:
        """Ask every member matching the filters; returns the query's id.

        `filter_names` limits it to those members; `filter_tags` maps tag keys to
        shell-style patterns their values must match. Answers arrive as
        `QueryResponded` (and, with `want_ack`, receipts as `QueryAcked`), once per
        member, until `QueryFinished` at the timeout (Serf's default:
        ``gossip_interval * query_timeout_mult * ceil(log10(n + 1))``). Answers also
        travel through `relay_factor` random members (0..5). With `reask`, the query is
        re-sent straight to the matching live members not heard from, until the timeout
        (`swim.core.queries`), for when every one of them must answer.
        """
        if not isinstance(payload, bytes) or not isinstance(name, str) or not name:
            raise ProtocolError("a query needs a non-empty name and bytes as payload")
        tags = tuple(filter_tags.items()) if isinstance(filter_tags, Mapping) else tuple(
            filter_tags
        )
        if timeout_s is None:
            timeout_s = default_timeout_s(self.config, self._membership.count())
        if not 0 < timeout_s <= 3600:
            raise ProtocolError("timeout_s must be in (0, 3600]")
        msg = Query(
            self.name, self._next_user_id(), name, payload, self.addr,
            max(1, round(timeout_s * 1000)), want_ack, relay_factor, tuple(filter_names), tags,
        )
        try:
            encode_message(msg)
        except (ValueError, TypeError) as exc:
            raise ProtocolError(f"invalid query: {exc}") from None
        self._events.extend(self._queries.ask(msg, now, self._membership.local, reask=reask))
        return msg.id

    def respond(self, origin: str, query_id: int, payload: bytes = b"", *, now: float) -> None:
        """Answer query `query_id` from `origin` (a `QueryReceived`), once, before its
        deadline; raises `ProtocolError` otherwise or if the answer is too large."""
        if not isinstance(payload, bytes):
            raise ProtocolError("payload must be bytes")
        relays = self._queries.relays_wanted(origin, query_id)
        through = [
            m.addr for m in self._membership.sample(
                relays, exclude=origin, live_only=True, alive_only=True
            )
        ] if relays else []
        self._events.extend(self._queries.respond(origin, query_id, payload, now, through))

    def force_leave(self, name: str, *, now: float) -> bool:
        """Mark failed member `name` as left cluster-wide (Serf's force-leave), so it is
        not reconnected and shows as left rather than failed. Returns False (nothing
        done) unless `name` is failed or remembered for reconnection."""
        if name == self.name:
            raise ProtocolError("force_leave is for another member; use leave()")
        fx = self._membership.force_leave(name, now)
        done = fx is not NOTHING
        self._carry_out(fx)
        return done

    def send_user_message(
        self, addr: Address, payload: bytes, *, now: float, reliable: bool = False
    ) -> int | None:
        """Send `payload` to the member at `addr`.

        Unreliable messages that fit go as one datagram (returns None); reliable or
        larger ones as a stream (returns its id; the outcome arrives through
        `receive_stream_response`).
        """
        if not isinstance(payload, bytes) or len(payload) > MAX_USER_PAYLOAD_BYTES:
            raise ProtocolError(f"payload must be bytes of at most {MAX_USER_PAYLOAD_BYTES}")
        msg = UserMessage(self.name, payload)
        encoded = encode_message(msg)
        if not reliable and len(encoded) + DATAGRAM_OVERHEAD <= self.config.packet_budget:
            self._dis.send(addr, [msg], [encoded])
            return None
        return self._exchange.open(StreamKind.USER_MESSAGE, addr, [msg], now)

    def note_send_error(self) -> None:
        """The driver failed to send something (counted, never fatal)."""
        self.stats.send_errors += 1

    # ================================================================ network inputs

    def receive_datagram(
        self, data: bytes, addr: Address, *, now: float,
        messages: Sequence[Message] | None = None,
    ) -> None:
        """Handle a datagram from `addr`. Malformed input is dropped and counted.

        A simulator that hands message values over (object mode) passes them as
        `messages` with the datagram's bytes as `data`: decoding is skipped, everything
        else (accounting included) is the same.
        """
        messages = self._take_in(data, messages, stream=False)
        if messages is None:
            return
        if messages:
            self.stats.bytes_in_by_kind[KIND_NAMES[type(messages[0])]] += len(data)
        self._handle_messages(messages, addr, now)

    def handle_stream_request(
        self, data: bytes, addr: Address, *, now: float,
        messages: Sequence[Message] | None = None,
    ) -> StreamReply | None:
        """Answer a stream a peer opened to us; returns the reply to send back.

        None means the request was malformed or not for us: close the stream. As with
        `receive_datagram`, `messages` may carry the decoded request (object mode).
        """
        messages = self._take_in(data, messages, stream=True)
        if messages is None:
            return None
        response = self._answer_stream(messages, addr, now)
        if response is None:
            return None
        data_out = encode(response)
        stats = self.stats
        stats.datagrams_out += 1
        stats.bytes_out += len(data_out)
        return StreamReply(data_out, tuple(response))

    def receive_stream_response(
        self, stream_id: int, data: bytes | None, *, now: float,
        messages: Sequence[Message] | None = None,
    ) -> None:
        """The outcome of a `StreamRequest`: the response bytes, or None on failure.

        An outcome for a stream that already timed out is ignored (and counted).
        """
        pending = self._exchange.complete(stream_id)
        messages = None if data is None else self._take_in(data, messages, stream=True)
        if pending is not None:
            self._stream_done(pending, messages, now)

    # ==================================================================== timers

    def handle_timer(self, *, now: float) -> None:
        """Run everything due at or before `now`."""
        cfg = self.config
        membership = self._membership
        prober = self._prober
        for pending in self._exchange.expire(now):
            self._stream_done(pending, None, now)
        target = prober.needs_helpers(now)
        probe = prober.probe
        helpers = None
        if target is not None:
            helpers = membership.sample(
                cfg.indirect_probes, exclude=target, live_only=True, alive_only=True
            )
        failed = prober.handle_timeouts(now, helpers)
        if target is not None and probe is not None and cfg.tcp_fallback_ping:
            self._exchange.open(
                StreamKind.PING, probe.addr, [Ping(probe.seq, probe.target, self.name)],
                now, probe.seq,
            )
        stable = self._stable
        if failed is not None and stable is not None:
            self._events.extend(stable.probe_result(failed, False, now))
            gone = stable.forgotten(failed, now)
            if gone is not None:  # an outsider silent for forget_after_s: reap it
                self._carry_out(membership.apply_dead(
                    Dead(gone.name, gone.incarnation, self.name), now))
        elif failed is not None:
            self._carry_out(membership.suspect_locally(failed, now))
        self._carry_out(membership.handle_timers(now))
        leaving = membership.leaving
        if prober.due(now):
            prober.start_probe(now, membership.next_probe_target() if stable is None
                               else stable.next_probe_target())
        if stable is not None:
            self._events.extend(stable.handle_timer(now))
        if now >= self._gossip_at:
            if cfg.gossip_timer:
                self._gossip(now)
            self._gossip_at = advance(self._gossip_at, cfg.gossip_interval_s, now)
        if not leaving and cfg.push_pull and now >= self._push_pull_at:
            self._periodic_push_pull(now)
            interval = push_pull_scale(cfg.push_pull_interval_s, membership.count())
            self._push_pull_at = advance(self._push_pull_at, interval, now)
        if not leaving and cfg.reconnect_interval_s > 0 and now >= self._reconnect_at:
            self._maybe_reconnect(now)
            self._reconnect_at = advance(self._reconnect_at, cfg.reconnect_interval_s, now)
        exchange = self._exchange
        if now >= exchange.join_retry_at:
            seeds = exchange.join_retry_due(
                now, has_peer=membership.has_alive_peer(), leaving=leaving
            )
            if seeds:
                self._join_round(seeds, now)
        if leaving and now >= self._leave_deadline:
            self._leave_expired = True
        self._events.extend(self._queries.handle_timers(now, membership))

    # =================================================================== outputs

    def poll(self) -> Output:
        """Everything queued for the driver since the last call, and the next deadline."""
        # Each list is handed over and replaced (a fresh empty one if it is empty), so
        # what the driver holds never changes under it.
        events = self._events
        if events:
            self._events = []
        else:
            events = []
        dis = self._dis
        datagrams = dis.outbox
        if datagrams:
            dis.outbox = []
        else:
            datagrams = []
        exchange = self._exchange
        streams = exchange.outbox
        if streams:
            exchange.outbox = []
        else:
            streams = []
        leaving = self._membership.leaving
        return Output(
            datagrams,
            streams,
            events,
            self._deadline(leaving),
            leaving and (self._leave_expired or self.leave_complete),
        )

    # ================================================================= read-outs

    def members(self) -> list[MemberState]:
        """Every member this member knows, itself included (dead ones until reaped).

        In the stable-view mode the statuses are the view's: alive in the current
        configuration, dead outside it (left, if it left)."""
        states = self._membership.states()
        stable = self._stable
        return states if stable is None else [stable.project(m) for m in states]

    def member(self, name: str) -> MemberState | None:
        """One member's state, or None if unknown (with the view's status in the
        stable-view mode, as `members`)."""
        state = self._membership.get(name)
        stable = self._stable
        return state if stable is None or state is None else stable.project(state)

    @property
    def membership(self) -> Membership:
        """The membership table, for read-outs (changing it directly bypasses the core)."""
        return self._membership

    @property
    def stable(self) -> StableViews | None:
        """The stable-view mode's state (its `configuration` is the view), or None in
        SWIM mode."""
        return self._stable

    @property
    def local_health(self) -> int:
        """The Lifeguard awareness score: 0 is healthy, higher means slower probing."""
        return self._prober.awareness.score

    def news_pending(self, name: str | None = None) -> int:
        """Membership news items still queued for dissemination (about `name`, if given:
        0 or 1)."""
        if name is None:
            return self._dis.queued_news
        return int(self._dis.has_news_about(name))

    @property
    def coordinate(self) -> Coordinate:
        """Our Vivaldi network coordinate (Serf's), learned from our probes' RTTs."""
        return self._vivaldi.coordinate

    def coordinate_of(self, name: str) -> Coordinate | None:
        """The latest coordinate `name` sent us (on an ack to our probe), if any; with
        `swim.core.vivaldi.estimate_rtt_s` it estimates RTTs between any two members."""
        if name == self.name:
            return self._vivaldi.coordinate
        return self._coords.get(name)

    @property
    def join_rounds(self) -> int:
        """Join rounds started (the first and every retry)."""
        return self._exchange.join_rounds

    # ================================================================== internals

    def _deadline(self, leaving: bool) -> float:
        # Every driver asks after every input, so this is kept lean: config switches
        # are read once at construction (`_push_pull_on`, `_gossip_on`...), and each
        # test reads a plain attribute before anything that costs a call.
        membership = self._membership
        when = self._prober.deadline()
        if not leaving:
            if self._push_pull_on and self._push_pull_at < when:
                when = self._push_pull_at
            if self._reconnect_on and self._reconnect_at < when and membership.tombstone_count:
                when = self._reconnect_at
        elif not self._leave_expired and self._leave_deadline < when:
            when = self._leave_deadline
        if self._gossip_on and self._gossip_at < when and (
            self._gossip_ticker or self._dis.has_news
        ):
            when = self._gossip_at
        query_at = self._queries.deadline()
        if query_at is not None and query_at < when:
            when = query_at
        at = membership.next_deadline()
        when = min(when, at)
        if self._stable is not None:
            when = min(when, self._stable.deadline())
        at = self._exchange.deadline()
        return at if at < when else when

    def _next_user_id(self) -> int:
        """A fresh id for a user broadcast or query (unique per origin)."""
        self._user_broadcast_id = (self._user_broadcast_id + 1) & ((1 << 63) - 1)
        return self._user_broadcast_id

    def _gossip(self, now: float) -> None:
        """The gossip timer: send queued news to a few random members.

        Recently failed members are included, so a member wrongly declared dead learns
        it and refutes (memberlist's gossip to the dead); members that left are not, as
        nothing they hear matters any more and every transmit spent on them is one the
        live members miss.
        """
        if not self._dis.has_news:
            return
        cfg = self.config
        targets = self._membership.sample(
            cfg.gossip_nodes,
            exclude="",
            live_only=False,
            gone_after=now - cfg.gossip_to_the_dead_s,
            left_too=False,
        )
        self._dis.gossip(t.addr for t in targets)


def _check_meta(meta: bytes) -> None:
    if not isinstance(meta, bytes) or len(meta) > META_MAX_BYTES:
        raise ProtocolError(f"metadata must be bytes of at most {META_MAX_BYTES}")
