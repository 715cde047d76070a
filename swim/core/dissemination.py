"""Dissemination: the news queues, piggybacking, the gossip timer's packets, the outbox.

Every datagram the core sends is built here: the caller's own messages (a ping, an ack,
a ping-req...) first, then queued news piggybacked up to ``Config.packet_budget``. There
are two transmit-limited queues (`BroadcastQueue`): membership news, sent
``retransmit_mult * ceil(log10(n + 1))`` times each, and user broadcasts, with their own
budget (``user_retransmit_mult``) and a guaranteed share of every packet
(``user_broadcast_share``), so membership news cannot starve them in large clusters.

User broadcasts are delivered once per ``(origin, id)`` (a bounded memory of seen ids),
and the latest ones are kept for push-pull replay, so a member that missed one by gossip
gets it at its next exchange.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterable
from typing import Final

from swim.core.broadcasts import BroadcastQueue, SeenIds
from swim.core.codec import DATAGRAM_OVERHEAD, KIND_NAMES, assemble, encode_message
from swim.core.config import Config
from swim.core.effects import News
from swim.core.events import UserBroadcastReceived
from swim.core.messages import Address, Alive, Message, UserBroadcast
from swim.core.outputs import Datagram
from swim.core.stats import Stats
from swim.core.timing import retransmit_limit


class Dissemination:
    """The queues and the outbox of one member's datagrams."""

    def __init__(self, config: Config, stats: Stats) -> None:
        self.config: Final = config
        self._stats = stats
        self._news = BroadcastQueue()
        self._user_news = BroadcastQueue()
        # Their item maps, for `has_news` (asked after every input).
        self._news_keyed = self._news.keyed
        self._user_keyed = self._user_news.keyed
        self._seen_user = SeenIds(config.user_broadcast_memory)
        self._recent_user: collections.deque[UserBroadcast] = collections.deque(
            maxlen=config.user_broadcast_replay
        )
        #: Datagrams queued since the core's last `poll`, which drains this list.
        self.outbox: list[Datagram] = []
        #: n, the cluster size the retransmit limits are computed for (set by the core).
        self.cluster_size = 1
        self._limit_n = -1
        self._limit = 0
        self._user_limit = 0

    # ------------------------------------------------------------------------- queues

    def queue(self, news: News, *, unless_queued: bool = False) -> None:
        """Queue membership news, replacing queued news about the same member.

        With `unless_queued`, nothing happens if news about that member is queued.
        """
        name = news.member.name if isinstance(news, Alive) else news.name
        if unless_queued and name in self._news:
            return
        self.queue_keyed(name, news)

    def queue_keyed(self, key: Hashable, msg: Message) -> None:
        """Queue `msg` with the membership news under `key`, replacing queued news under
        the same key. Member news is keyed by the member's name; other gossip (the
        stable-view mode's alerts and votes) by a tuple, so the two never collide."""
        queue = self._news
        queue.queue(key, msg, encode_message(msg))
        if len(queue) > self.config.broadcast_queue_depth:
            queue.drop_most_sent()

    def forget(self, name: Hashable) -> None:
        """Drop queued news about `name` (reaped from the table), or queued under a key
        of `queue_keyed`."""
        self._news.discard(name)

    def has_news_about(self, name: str) -> bool:
        """True while news about `name` is still queued."""
        return name in self._news

    @property
    def has_news(self) -> bool:
        """True if anything (membership news or user broadcasts) waits to be sent."""
        return bool(self._news_keyed or self._user_keyed)

    @property
    def queued_news(self) -> int:
        """Membership news items queued."""
        return len(self._news)

    def accept_user_broadcast(
        self, msg: UserBroadcast, now: float, *, deliver: bool = True, encoded: bytes | None = None
    ) -> UserBroadcastReceived | None:
        """Take in a user broadcast: the event to deliver, or None if seen before.

        With ``deliver=False`` (a joiner's first exchange) it is only remembered as seen.
        """
        key = (msg.origin, msg.id)
        if not self._seen_user.add(key):
            return None
        self._recent_user.append(msg)
        if not deliver:
            return None
        self._user_news.queue(key, msg, encode_message(msg) if encoded is None else encoded)
        return UserBroadcastReceived(origin=msg.origin, id=msg.id, payload=msg.payload, at=now)

    def queue_user(self, key: Hashable, msg: Message, encoded: bytes) -> None:
        """Queue a message for the user queue (a query), under `key`."""
        self._user_news.queue(key, msg, encoded)

    def recent_user_broadcasts(self) -> tuple[UserBroadcast, ...]:
        """The latest user broadcasts, for push-pull replay."""
        return tuple(self._recent_user)

    # ------------------------------------------------------------------------ sending

    def send(self, addr: Address, messages: list[Message], encoded: list[bytes]) -> None:
        """Queue a datagram of `messages` with news piggybacked up to the packet budget."""
        room = self.config.packet_budget - DATAGRAM_OVERHEAD - sum(map(len, encoded))
        self._piggyback(room, encoded, messages)
        self._emit(addr, messages, encoded)

    def send_one(self, addr: Address, msg: Message) -> None:
        """`send` for a single message."""
        self.send(addr, [msg], [encode_message(msg)])

    def gossip(self, targets: Iterable[Address]) -> None:
        """The gossip timer's round: a packet of queued news to each target, while any."""
        room = self.config.packet_budget - DATAGRAM_OVERHEAD
        for addr in targets:
            encoded: list[bytes] = []
            messages: list[Message] = []
            if not self._piggyback(room, encoded, messages):
                break
            self._emit(addr, messages, encoded)

    def mark(self) -> int:
        """A position in the outbox, for `sent_since`."""
        return len(self.outbox)

    def sent_since(self, mark: int, addr: Address, msg: Message) -> bool:
        """True if a datagram queued since `mark` for `addr` carries `msg`."""
        return any(d.addr == addr and msg in d.messages for d in self.outbox[mark:])

    # ----------------------------------------------------------------------- internals

    def _limits(self) -> int:
        n = self.cluster_size
        if n != self._limit_n:
            self._limit_n = n
            self._limit = retransmit_limit(self.config.retransmit_mult, n)
            self._user_limit = retransmit_limit(self.config.user_retransmit_mult, n)
        return self._limit

    def _piggyback(self, room: int, encoded: list[bytes], messages: list[Message]) -> int:
        """Fill `room` bytes with news; user broadcasts are guaranteed a share.

        The share (``user_broadcast_share`` of the room, or less if fewer user bytes are
        queued) is held back from membership news, which fills the rest; user broadcasts
        then take the share plus whatever membership news left. One take per queue, so
        no item can ride twice in one packet.
        """
        limit = self._limits()
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
        stats = self._stats
        stats.datagrams_out += 1
        stats.bytes_out += len(data)
        counter = stats.messages_out
        kind_names = KIND_NAMES  # message_kind, without a call per message
        for msg in messages:
            counter[kind_names[type(msg)]] += 1
        stats.bytes_out_by_kind[kind_names[type(messages[0])]] += len(data)
        self.outbox.append(Datagram(addr, data, tuple(messages)))
