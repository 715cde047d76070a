"""`Core`: one SWIM + Lifeguard member as a sans-IO state machine.

Inputs are method calls that take ``now`` (seconds, any monotonic origin); outputs are
drained values: `datagrams_to_send`, `streams_to_open`, `drain_events`. `get_timer`
returns the absolute time at which `handle_timer` must next be called. The core never
reads a clock, never does I/O and draws every random choice from the `random.Random`
it is given, so a driver (the trio runtime or the simulator) fully determines its run.

A protocol period, as the prober sees it (T scaled by local health):

    start            +probe_timeout                  +T*(score+1)
      | ping target ---> no ack? ping-req k helpers  | no ack at all? suspect target,
      |  (+ suspicion   (+ TCP fallback ping)         |  awareness += missing nacks
      |   if buddy)      helpers nack at 80 %         | ack? awareness -= 1
"""

from __future__ import annotations

import collections
import heapq
import random
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from swim.core.awareness import Awareness
from swim.core.broadcasts import BroadcastQueue, SeenIds
from swim.core.codec import (
    DATAGRAM_OVERHEAD,
    MAX_SEQ,
    MAX_USER_PAYLOAD_BYTES,
    MalformedMessage,
    assemble,
    decode_untrusted,
    encode,
    encode_message,
    message_kind,
)
from swim.core.config import META_MAX_BYTES, NAME_MAX_BYTES, Config
from swim.core.events import (
    Event,
    JoinCompleted,
    UserBroadcastReceived,
    UserMessageReceived,
)
from swim.core.membership import Membership
from swim.core.messages import (
    Ack,
    Address,
    Alive,
    Dead,
    MemberState,
    MemberStatus,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    UserBroadcast,
    UserMessage,
)
from swim.core.outputs import Datagram, StreamKind, StreamRequest
from swim.core.stats import Stats
from swim.core.timing import (
    awareness_delta_for_failed_probe,
    nack_delay_s,
    push_pull_scale,
    retransmit_limit,
)

_INF: Final = float("inf")
_ALIVE: Final = MemberStatus.ALIVE
_SUSPECT: Final = MemberStatus.SUSPECT
_DEAD: Final = MemberStatus.DEAD


class ProtocolError(Exception):
    """The caller used the core wrongly (a bad argument or call order)."""


@attrs.define(eq=False, slots=True)
class _Probe:
    """The probe of the current protocol period."""

    seq: int
    target: str
    addr: Address
    timeout_at: float
    end_at: float
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@attrs.define(eq=False, slots=True)
class _Relay:
    """A ping we send as a ping-req helper, on behalf of `requester`."""

    requester: Address
    requester_seq: int
    wants_nack: bool


@attrs.define(eq=False, slots=True)
class _PendingStream:
    kind: StreamKind
    addr: Address
    seq: int = 0


class Core:
    """One member of a SWIM cluster, without I/O.

    Args:
        config: protocol settings (e.g. ``Config.lan()``).
        name: this member's unique name (at most 255 bytes of UTF-8).
        addr: the (IP literal, port) other members reach this member at.
        rng: the source of every random choice (seed it for reproducible runs).
        now: the current time.
        meta: metadata gossiped with this member (at most 512 bytes).
        incarnation: starting incarnation (0 for a new process).
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
    ) -> None:
        if not name or len(name.encode("utf-8")) > NAME_MAX_BYTES:
            raise ProtocolError(f"name must be 1..{NAME_MAX_BYTES} bytes of UTF-8")
        _check_meta(meta)
        encode_message(Alive(MemberState(name, addr, incarnation)))  # validates addr
        self.config: Final = config
        self.name: Final = name
        self.addr: Final = addr
        self.rng: Final = rng
        self.stats: Final = Stats()
        self.awareness: Final = Awareness(config.awareness_max_multiplier)
        self._events: collections.deque[Event] = collections.deque()
        self._news = BroadcastQueue()
        self._user_news = BroadcastQueue()
        self._seen_user = SeenIds(config.user_broadcast_memory)
        #: The latest user broadcasts, replayed in push-pull exchanges.
        self._recent_user: collections.deque[UserBroadcast] = collections.deque(
            maxlen=config.user_broadcast_replay
        )
        self.membership: Final = Membership.create(
            config,
            MemberState(name, addr, incarnation, _ALIVE, meta),
            rng=rng,
            stats=self.stats,
            awareness=self.awareness,
            broadcasts=self._news,
            events=self._events,
        )
        self._datagrams: list[Datagram] = []
        self._streams: list[StreamRequest] = []
        self._pending_streams: dict[int, _PendingStream] = {}
        self._stream_id = 0
        self._seq = rng.randrange(MAX_SEQ + 1)
        self._user_broadcast_id = rng.getrandbits(62)
        self._probe: _Probe | None = None
        self._probe_index = 0
        self._relays: dict[int, _Relay] = {}
        # (when, tiebreak, seq, is_expiry): relay nack and expiry times.
        self._relay_timers: list[tuple[float, int, int, bool]] = []
        self._tiebreak = 0
        self._limit_n = -1
        self._limit = 0
        self._user_limit = 0
        # Staggered starts, so members started together do not probe in lock step.
        self._next_probe_at = now + rng.uniform(0.0, config.probe_interval_s)
        self._gossip_at = now + rng.uniform(0.0, config.gossip_interval_s)
        self._push_pull_at = now + rng.uniform(0.5, 1.0) * push_pull_scale(
            config.push_pull_interval_s, 1
        )
        self._reconnect_at = now + rng.uniform(0.5, 1.0) * config.reconnect_interval_s

    # ============================================================== application inputs

    def join(self, seeds: Iterable[Address], now: float) -> list[int]:
        """Start a full-state exchange with each seed; returns the stream ids.

        Each exchange ends in a `JoinCompleted` event (``ok=False`` if the seed did not
        answer); the driver decides whether and when to retry.
        """
        ids = []
        for seed in seeds:
            if seed == self.addr:
                continue
            ids.append(self._push_pull(seed, join=True))
        return ids

    def bootstrap(self, members: Iterable[MemberState], now: float) -> None:
        """Start out knowing `members`, as if joined long ago: no events, no gossip.

        For simulations and tests that begin with a converged cluster (joining ten
        thousand members one by one is a different experiment).
        """
        self.membership.bootstrap(members, now)

    def leave(self, now: float) -> None:
        """Leave gracefully: gossip our departure and stop probing.

        The driver should keep running the core until `leave_complete` (or a timeout),
        so the departure reaches the cluster, then stop.
        """
        if not self.membership.leaving:
            self.membership.leave()
            self._probe = None

    @property
    def leaving(self) -> bool:
        """True once `leave` was called."""
        return self.membership.leaving

    @property
    def leave_complete(self) -> bool:
        """True once our departure was sent its full count, or no one is left to tell."""
        if not self.membership.leaving:
            return False
        if self.name not in self._news:
            return True
        return not any(self.membership.is_live(n) for n in self.membership.probe_order)

    def update_metadata(self, meta: bytes, now: float) -> None:
        """Replace our metadata; gossiped with a new incarnation."""
        _check_meta(meta)
        if self.membership.leaving:
            raise ProtocolError("cannot update metadata after leaving")
        self.membership.update_local(meta)

    def broadcast(self, payload: bytes, now: float) -> int:
        """Gossip `payload` to every member; returns its id.

        The payload must fit in one datagram next to its header. It is delivered to
        every member once, the local one included (as a `UserBroadcastReceived`).
        """
        if not isinstance(payload, bytes):
            raise ProtocolError("payload must be bytes")
        self._user_broadcast_id = (self._user_broadcast_id + 1) & ((1 << 63) - 1)
        msg = UserBroadcast(self.name, self._user_broadcast_id, payload)
        encoded = encode_message(msg)
        if len(encoded) + DATAGRAM_OVERHEAD > self.config.packet_budget:
            raise ProtocolError(
                f"broadcast of {len(payload)} bytes does not fit the packet budget "
                f"({self.config.packet_budget}); send it as a reliable message instead"
            )
        self._accept_user_broadcast(msg, encoded, now)
        return msg.id

    def send_user_message(
        self, addr: Address, payload: bytes, now: float, *, reliable: bool = False
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
            self._send(addr, [msg], [encoded])
            return None
        return self._open_stream(StreamKind.USER_MESSAGE, addr, [msg])

    def note_send_error(self) -> None:
        """The driver failed to send something (counted, never fatal)."""
        self.stats.send_errors += 1

    # ================================================================ network inputs

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Handle a datagram from `addr`. Malformed input is dropped and counted."""
        stats = self.stats
        stats.datagrams_in += 1
        stats.bytes_in += len(data)
        try:
            messages = decode_untrusted(data)
        except MalformedMessage:
            stats.malformed += 1
            return
        if messages:
            stats.bytes_in_by_kind[message_kind(messages[0])] += len(data)
        self._handle_messages(messages, addr, now)

    def receive_messages(self, messages: Sequence[Message], addr: Address, now: float) -> None:
        """Handle already decoded messages, as if one datagram carried them.

        For simulators passing message objects instead of bytes (object mode); they
        should also account the datagram's size with `count_datagram_in`.
        """
        self._handle_messages(messages, addr, now)

    def count_datagram_in(self, size: int, first_kind: str | None) -> None:
        """Account a datagram delivered through `receive_messages`."""
        self.stats.datagrams_in += 1
        self.stats.bytes_in += size
        if first_kind is not None:
            self.stats.bytes_in_by_kind[first_kind] += size

    def handle_stream_request(self, data: bytes, addr: Address, now: float) -> bytes | None:
        """Answer a stream a peer opened to us; returns the response frame.

        None means the request was malformed or not for us: close the stream.
        """
        self.stats.datagrams_in += 1
        self.stats.bytes_in += len(data)
        try:
            messages = decode_untrusted(data, stream=True)
        except MalformedMessage:
            self.stats.malformed += 1
            return None
        response = self.answer_stream_messages(messages, addr, now)
        if response is None:
            return None
        data_out = encode(response)
        self.stats.datagrams_out += 1
        self.stats.bytes_out += len(data_out)
        return data_out

    def answer_stream_messages(
        self, messages: Sequence[Message], addr: Address, now: float
    ) -> list[Message] | None:
        """Object-mode `handle_stream_request`: the response messages, or None."""
        if len(messages) != 1:
            self.stats.unexpected += 1
            return None
        msg = messages[0]
        self.stats.messages_in[message_kind(msg)] += 1
        match msg:
            case PushPull():
                # Merge theirs first (memberlist answers first): if their table makes us
                # refute, the refutation rides back in our answer.
                self._merge_state(msg, now, deliver=True)
                return [self._local_state()]
            case Ping(seq, target, _source) if target == self.name:
                return [Ack(seq)]
            case UserMessage(source, payload):
                self._events.append(
                    UserMessageReceived(source=source, addr=addr, payload=payload, at=now)
                )
                return []
        self.stats.unexpected += 1
        return None

    def receive_stream_response(self, stream_id: int, data: bytes | None, now: float) -> None:
        """The outcome of a `StreamRequest`: the response bytes, or None on failure."""
        messages: Sequence[Message] | None = None
        if data is not None:
            self.stats.datagrams_in += 1
            self.stats.bytes_in += len(data)
            try:
                messages = decode_untrusted(data, stream=True)
            except MalformedMessage:
                self.stats.malformed += 1
        self.receive_stream_messages(stream_id, messages, now)

    def receive_stream_messages(
        self, stream_id: int, messages: Sequence[Message] | None, now: float
    ) -> None:
        """Object-mode `receive_stream_response` (None: the stream failed)."""
        pending = self._pending_streams.pop(stream_id, None)
        if pending is None:
            raise ProtocolError(f"no stream {stream_id} is pending")
        kind = pending.kind
        if kind in (StreamKind.JOIN, StreamKind.PUSH_PULL):
            state = None
            if messages is not None and len(messages) == 1:
                msg = messages[0]
                if isinstance(msg, PushPull):
                    state = msg
            if state is not None:
                self.stats.messages_in["push_pull"] += 1
                self.membership.owe_alive = False
                sent = len(self._datagrams)
                self._merge_state(state, now, deliver=kind is StreamKind.PUSH_PULL)
                self._answer_outdated(pending.addr, sent)
            else:
                self.stats.push_pulls_failed += 1
            if kind is StreamKind.JOIN:
                self._events.append(
                    JoinCompleted(
                        seed=pending.addr,
                        ok=state is not None,
                        members=len(state.members) if state is not None else 0,
                        at=now,
                    )
                )
        elif kind is StreamKind.PING and messages is not None:
            probe = self._probe
            for msg in messages:
                if isinstance(msg, Ack) and probe is not None and msg.seq == probe.seq:
                    self._probe_acked()

    # ==================================================================== timers

    def get_timer(self) -> float:
        """The absolute time `handle_timer` must next be called (inf: never)."""
        cfg = self.config
        when = _INF
        membership = self.membership
        if not membership.leaving:
            when = self._next_probe_at
            if cfg.push_pull:
                when = min(when, self._push_pull_at)
            if membership.tombstones and cfg.reconnect_interval_s > 0:
                when = min(when, self._reconnect_at)
        probe = self._probe
        if probe is not None:
            when = min(when, probe.end_at if probe.indirect_sent else probe.timeout_at)
        if (
            cfg.gossip_timer
            and cfg.gossip_nodes > 0
            and (len(self._news) or len(self._user_news))
        ):
            when = min(when, self._gossip_at)
        if self._relay_timers:
            when = min(when, self._relay_timers[0][0])
        deadline = membership.next_deadline()
        if deadline is not None:
            when = min(when, deadline)
        return when

    def handle_timer(self, now: float) -> None:
        """Run everything due at or before `now`."""
        cfg = self.config
        self._run_relay_timers(now)
        probe = self._probe
        if probe is not None:
            if not probe.indirect_sent and now >= probe.timeout_at:
                self._probe_indirect(probe, now)
            if now >= probe.end_at:
                self._probe_failed(probe, now)
        self.membership.handle_timers(now)
        leaving = self.membership.leaving
        if not leaving and now >= self._next_probe_at:
            self._start_probe(now)
        if now >= self._gossip_at:
            if cfg.gossip_timer:
                self._gossip(now)
            self._gossip_at = _advance(self._gossip_at, cfg.gossip_interval_s, now)
        if not leaving and cfg.push_pull and now >= self._push_pull_at:
            self._periodic_push_pull(now)
            interval = push_pull_scale(cfg.push_pull_interval_s, self.membership.count())
            self._push_pull_at = _advance(self._push_pull_at, interval, now)
        if not leaving and cfg.reconnect_interval_s > 0 and now >= self._reconnect_at:
            self._maybe_reconnect(now)
            self._reconnect_at = _advance(self._reconnect_at, cfg.reconnect_interval_s, now)

    # =================================================================== outputs

    def datagrams_to_send(self) -> list[Datagram]:
        """Datagrams queued since the last call (the caller sends them)."""
        out, self._datagrams = self._datagrams, []
        return out

    def streams_to_open(self) -> list[StreamRequest]:
        """Streams queued since the last call (the caller opens them)."""
        out, self._streams = self._streams, []
        return out

    def drain_events(self) -> list[Event]:
        """Application events since the last call, oldest first."""
        out = list(self._events)
        self._events.clear()
        return out

    # ================================================================= read-outs

    def members(self) -> list[MemberState]:
        """Every member this member knows, itself included (dead ones until reaped)."""
        return list(self.membership.members.values())

    def member(self, name: str) -> MemberState | None:
        """One member's state, or None if unknown."""
        return self.membership.members.get(name)

    @property
    def local_health(self) -> int:
        """The Lifeguard awareness score: 0 is healthy, higher means slower probing."""
        return self.awareness.score

    # ================================================================== internals

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & MAX_SEQ
        return self._seq

    def _retransmit_limit(self) -> int:
        n = self.membership.count()
        if n != self._limit_n:
            self._limit_n = n
            self._limit = retransmit_limit(self.config.retransmit_mult, n)
            self._user_limit = retransmit_limit(self.config.user_retransmit_mult, n)
        return self._limit

    def _send(self, addr: Address, messages: list[Message], encoded: list[bytes]) -> None:
        """Queue a datagram of `messages` with news piggybacked up to the packet budget."""
        room = self.config.packet_budget - DATAGRAM_OVERHEAD - sum(map(len, encoded))
        self._piggyback(room, encoded, messages)
        self._emit(addr, messages, encoded)

    def _piggyback(self, room: int, encoded: list[bytes], messages: list[Message]) -> int:
        """Fill `room` bytes with news; user broadcasts are guaranteed a share.

        The share (``user_broadcast_share`` of the room, or less if fewer user bytes are
        queued) is held back from membership news, which fills the rest; user broadcasts
        then take the share plus whatever membership news left. One take per queue, so
        no item can ride twice in one packet.
        """
        limit = self._retransmit_limit()
        user = self._user_news
        reserved = min(int(room * self.config.user_broadcast_share), user.pending_bytes)
        used = 0
        if len(self._news):
            used = self._news.take(room - reserved, limit, encoded, messages)
        if len(user):
            used += user.take(room - used, self._user_limit, encoded, messages)
        return used

    def _emit(self, addr: Address, messages: list[Message], encoded: list[bytes]) -> None:
        data = assemble(encoded)
        stats = self.stats
        stats.datagrams_out += 1
        stats.bytes_out += len(data)
        counter = stats.messages_out
        for msg in messages:
            counter[message_kind(msg)] += 1
        stats.bytes_out_by_kind[message_kind(messages[0])] += len(data)
        self._datagrams.append(Datagram(addr, data, tuple(messages)))

    def _send_one(self, addr: Address, msg: Message) -> None:
        self._send(addr, [msg], [encode_message(msg)])

    def _open_stream(
        self, kind: StreamKind, addr: Address, messages: list[Message], seq: int = 0
    ) -> int:
        self._stream_id += 1
        data = encode(messages)
        self.stats.datagrams_out += 1
        self.stats.bytes_out += len(data)
        for msg in messages:
            self.stats.messages_out[message_kind(msg)] += 1
        self._pending_streams[self._stream_id] = _PendingStream(kind, addr, seq)
        self._streams.append(StreamRequest(self._stream_id, kind, addr, data, tuple(messages)))
        return self._stream_id

    def _local_state(self, *, join: bool = False) -> PushPull:
        members = tuple(self.membership.members.values())
        return PushPull(join, members, tuple(self._recent_user))

    def _push_pull(self, addr: Address, *, join: bool) -> int:
        self.stats.push_pulls += 1
        kind = StreamKind.JOIN if join else StreamKind.PUSH_PULL
        return self._open_stream(kind, addr, [self._local_state(join=join)])

    def _merge_state(self, state: PushPull, now: float, *, deliver: bool) -> None:
        """Merge a peer's push-pull state: its members, then its recent broadcasts.

        With ``deliver=False`` (the answer to our own join) the broadcasts are only
        remembered as seen: a joiner does not replay the cluster's history.
        """
        self.membership.merge_remote(state.members, now)
        self._send_notices()
        for msg in state.broadcasts:
            if msg.origin != self.name:
                self._accept_user_broadcast(msg, encode_message(msg), now, deliver=deliver)

    def _maybe_reconnect(self, now: float) -> None:
        """Try a push-pull with one reaped failed member, with Serf's probability.

        Each member tries with probability failed / alive per interval, so the cluster
        as a whole makes about one attempt per failed member per interval, whatever
        its size (every member trying every time would be n attempts).
        """
        membership = self.membership
        failed = len(membership.tombstones)
        if not failed:
            return
        alive = max(1, membership.count() - len(membership.gone_since))
        if self.rng.random() * alive >= failed:
            return
        tombstone = membership.next_reconnect(now)
        if tombstone is not None:
            self._push_pull(tombstone.addr, join=False)

    def _periodic_push_pull(self, now: float) -> None:
        # An alive member, as memberlist, or one that failed within gossip_to_the_dead_s:
        # after a partition heals, the news about it has long been sent, so without this
        # the two sides would never meet again. One exchange across makes both sides
        # learn they were declared dead, refute, and gossip it (Serf's reconnect).
        peers = self._random_members(
            1,
            exclude="",
            live_only=False,
            alive_only=True,
            gone_after=now - self.config.gossip_to_the_dead_s,
            left_too=False,
        )
        if peers:
            self._push_pull(self.membership.members[peers[0]].addr, join=False)

    # ------------------------------------------------------------------ dispatch

    def _answer_outdated(self, addr: Address, sent_before: int) -> None:
        """If input from `addr` showed it an outdated view of us, send it our Alive.

        That is: it made us refute (refuting to the accuser's face), or it accused an
        incarnation we had already refuted. Gossip alone may miss the very member that
        holds the rumour (with a small retransmit budget it often does), leaving us dead
        in its view until the next push-pull. Skipped when a datagram to `addr` since
        `sent_before` (an ack, say) already carried our current Alive.
        """
        if not self.membership.owe_alive:
            return
        self.membership.owe_alive = False
        alive = Alive(self.membership.local)
        for datagram in self._datagrams[sent_before:]:
            if datagram.addr == addr and alive in datagram.messages:
                return
        self._send_one(addr, alive)

    def _handle_messages(self, messages: Sequence[Message], addr: Address, now: float) -> None:
        membership = self.membership
        counter = self.stats.messages_in
        membership.owe_alive = False
        sent = len(self._datagrams)
        for msg in messages:
            counter[message_kind(msg)] += 1
            match msg:
                case Alive(member):
                    membership.apply_alive(member, now)
                case Ping(seq, target, source):
                    if target == self.name:
                        self._send_one(addr, Ack(seq))
                        if source:
                            membership.prober_seen(source, addr, now)
                    else:
                        self.stats.unexpected += 1
                case Ack(seq):
                    self._on_ack(seq, now)
                case Suspect():
                    membership.apply_suspect(msg, now)
                case Dead():
                    membership.apply_dead(msg, now)
                case PingReq():
                    self._on_ping_req(msg, addr, now)
                case Nack(seq):
                    probe = self._probe
                    if probe is not None and probe.seq == seq:
                        probe.nacks += 1
                        self.stats.nacks_received += 1
                    else:
                        self.stats.unexpected += 1
                case UserBroadcast(origin):
                    if origin != self.name:
                        self._accept_user_broadcast(msg, encode_message(msg), now)
                case UserMessage(source, payload):
                    self._events.append(
                        UserMessageReceived(source=source, addr=addr, payload=payload, at=now)
                    )
                case _:
                    self.stats.unexpected += 1
        if membership.notices:
            self._send_notices()
        self._answer_outdated(addr, sent)

    def _send_notices(self) -> None:
        """Send the rumour notices the membership table asked for."""
        notices = self.membership.notices
        for addr, msg in notices:
            self._send_one(addr, msg)
        notices.clear()

    def _accept_user_broadcast(
        self, msg: UserBroadcast, encoded: bytes, now: float, *, deliver: bool = True
    ) -> None:
        key = (msg.origin, msg.id)
        if not self._seen_user.add(key):
            return
        self._recent_user.append(msg)
        if not deliver:
            return
        self._user_news.queue(key, msg, encoded)
        self._events.append(
            UserBroadcastReceived(origin=msg.origin, id=msg.id, payload=msg.payload, at=now)
        )

    # ------------------------------------------------------------------- probing

    def _next_target(self) -> MemberState | None:
        """Round-robin over the shuffled probe order, re-shuffled after each pass."""
        order = self.membership.probe_order
        members = self.membership.members
        for _ in range(len(order) + 1):
            if self._probe_index >= len(order):
                self._probe_index = 0
                self.rng.shuffle(order)
                if not order:
                    return None
            state = members[order[self._probe_index]]
            self._probe_index += 1
            if state.status <= _SUSPECT:
                return state
        return None

    def _start_probe(self, now: float) -> None:
        cfg = self.config
        interval = self.awareness.scale(cfg.probe_interval_s) if cfg.awareness else (
            cfg.probe_interval_s
        )
        self._next_probe_at = _advance(self._next_probe_at, interval, now)
        target = self._next_target()
        if target is None:
            return
        seq = self._next_seq()
        self.stats.probes += 1
        # The probe ends when the next one starts, so no outcome is ever lost.
        self._probe = _Probe(
            seq, target.name, target.addr, now + cfg.probe_timeout_s, self._next_probe_at
        )
        ping = Ping(seq, target.name, self.name)
        if cfg.buddy_system and target.status == _SUSPECT:
            # Lifeguard buddy system: tell the suspect it is suspected, first thing.
            buddy = Suspect(target.name, target.incarnation, self.name)
            self._send(target.addr, [buddy, ping], [encode_message(buddy), encode_message(ping)])
        else:
            self._send_one(target.addr, ping)

    def _probe_indirect(self, probe: _Probe, now: float) -> None:
        cfg = self.config
        probe.indirect_sent = True
        helpers = self._random_members(
            cfg.indirect_probes, exclude=probe.target, live_only=True, alive_only=True
        )
        members = self.membership.members
        for name in helpers:
            req = PingReq(probe.seq, probe.target, probe.addr, cfg.nacks)
            self._send_one(members[name].addr, req)
        self.stats.ping_reqs_sent += len(helpers)
        probe.expected_nacks = len(helpers) if cfg.nacks else 0
        if cfg.tcp_fallback_ping:
            self._open_stream(
                StreamKind.PING, probe.addr, [Ping(probe.seq, probe.target, self.name)],
                probe.seq,
            )

    def _on_ack(self, seq: int, now: float) -> None:
        probe = self._probe
        if probe is not None and probe.seq == seq:
            self._probe_acked()
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send_one(relay.requester, Ack(relay.requester_seq))
            return
        self.stats.unexpected += 1

    def _probe_acked(self) -> None:
        self._probe = None
        if self.config.awareness:
            self.stats.awareness = self.awareness.apply_delta(-1)

    def _probe_failed(self, probe: _Probe, now: float) -> None:
        self._probe = None
        self.stats.probe_failures += 1
        if self.config.awareness:
            delta = awareness_delta_for_failed_probe(probe.expected_nacks, probe.nacks)
            self.stats.awareness = self.awareness.apply_delta(delta)
        self.membership.suspect_locally(probe.target, now)

    # --------------------------------------------------------- ping-req helper side

    def _on_ping_req(self, req: PingReq, addr: Address, now: float) -> None:
        seq = self._next_seq()
        self._relays[seq] = _Relay(addr, req.seq, req.nack)
        cfg = self.config
        if req.nack:
            nack_at = now + nack_delay_s(cfg.probe_timeout_s, cfg.probe_interval_s)
            self._push_relay_timer(nack_at, seq, expiry=False)
        self._push_relay_timer(now + cfg.probe_timeout_s, seq, expiry=True)
        self._send_one(req.target_addr, Ping(seq, req.target, self.name))

    def _push_relay_timer(self, when: float, seq: int, *, expiry: bool) -> None:
        self._tiebreak += 1
        heapq.heappush(self._relay_timers, (when, self._tiebreak, seq, expiry))

    def _run_relay_timers(self, now: float) -> None:
        timers = self._relay_timers
        while timers and timers[0][0] <= now:
            _, _, seq, expiry = heapq.heappop(timers)
            relay = self._relays.get(seq)
            if relay is None:
                continue
            if expiry:
                del self._relays[seq]
            elif relay.wants_nack:
                self._send_one(relay.requester, Nack(relay.requester_seq))

    # -------------------------------------------------------------------- gossip

    def _random_members(
        self, count: int, *, exclude: str, live_only: bool, alive_only: bool = False,
        gone_after: float = _INF, left_too: bool = True,
    ) -> list[str]:
        """Up to `count` distinct random members, by bounded rejection sampling.

        Never O(n): it draws from the probe order and gives up after a few misses, so a
        table full of dead members yields fewer picks rather than a long scan.
        """
        order = self.membership.probe_order
        if count <= 0 or not order:
            return []
        members = self.membership.members
        gone_since = self.membership.gone_since
        picked: list[str] = []
        rng = self.rng
        for _ in range(3 * count + 8):
            name = order[int(rng.random() * len(order))]
            if name == exclude or name in picked:
                continue
            status = members[name].status
            if status == _ALIVE or (status == _SUSPECT and not alive_only) or (
                not live_only
                and (status == _DEAD or (left_too and status > _DEAD))
                and gone_since[name] >= gone_after
            ):
                picked.append(name)
                if len(picked) == count:
                    break
        return picked

    def _gossip(self, now: float) -> None:
        """The gossip timer: send queued news to a few random members.

        Recently failed members are included, so a member wrongly declared dead learns
        it and refutes (memberlist's gossip to the dead); members that left are not, as
        nothing they hear matters any more and every transmit spent on them is one the
        live members miss.
        """
        if not (len(self._news) or len(self._user_news)):
            return
        cfg = self.config
        targets = self._random_members(
            cfg.gossip_nodes,
            exclude="",
            live_only=False,
            gone_after=now - cfg.gossip_to_the_dead_s,
            left_too=False,
        )
        members = self.membership.members
        room = cfg.packet_budget - DATAGRAM_OVERHEAD
        for name in targets:
            encoded: list[bytes] = []
            messages: list[Message] = []
            if not self._piggyback(room, encoded, messages):
                break
            self._emit(members[name].addr, messages, encoded)


def _advance(at: float, interval: float, now: float) -> float:
    """The first time ``at + k * interval`` (k >= 1) after `now`."""
    at += interval
    if at <= now:
        at += interval * (int((now - at) / interval) + 1)
    return at


def _check_meta(meta: bytes) -> None:
    if not isinstance(meta, bytes) or len(meta) > META_MAX_BYTES:
        raise ProtocolError(f"metadata must be bytes of at most {META_MAX_BYTES}")

