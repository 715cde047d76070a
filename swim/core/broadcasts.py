"""Transmit-limited broadcast queue: infection-style dissemination (memberlist queue.go).

Each queued item is sent a limited number of times (``retransmit_limit``), riding on
outgoing datagrams. Items are chosen fewest-transmits first, and within one transmit
count the most recently queued or re-tiered first. A new item under the same key (news
about the same member) replaces the queued one, so stale news is never sent after
fresher news.

Items live in tiers by transmit count; a dict per tier keeps insertion order, so taking
items for one packet costs time proportional to the items examined, not to the queue.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from itertools import compress
from typing import Final

import attr

from swim.core.messages import Message

#: Most queued items examined to fill one packet (bounds the cost of a packet).
MAX_SCAN: Final = 256
#: No queued item is smaller than this many bytes, so a smaller gap ends the scan.
MIN_ITEM_BYTES: Final = 4


@attr.s(auto_attribs=True, eq=False)
class Broadcast:
    """One queued item: the message, its encoding, and how often it was sent."""

    key: Hashable
    message: Message
    encoded: bytes
    transmits: int = 0


@attr.s(auto_attribs=True, eq=False)
class BroadcastQueue:
    """Queued news, taken into packets fewest-transmits first."""

    _tiers: list[dict[Hashable, Broadcast]] = attr.ib(factory=lambda: [{}])
    #: Items deleted from each tier since it was last rebuilt (see `_deleted`).
    _dead: list[int] = attr.ib(factory=lambda: [0])
    _by_key: dict[Hashable, Broadcast] = attr.ib(factory=dict)
    #: Total encoded size of everything queued.
    pending_bytes: int = 0
    #: No queued item is smaller than this (a lower bound: the smallest size queued
    #: since the queue was last empty), so a smaller gap left in a packet ends the scan.
    _min_size: int = MIN_ITEM_BYTES

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def keyed(self) -> Mapping[Hashable, Broadcast]:
        """The queued items by key: the same object for the queue's lifetime, so an
        owner may keep it and test it for emptiness without a call."""
        return self._by_key

    def __contains__(self, key: Hashable) -> bool:
        return key in self._by_key

    def queue(self, key: Hashable, message: Message, encoded: bytes) -> None:
        """Queue `message` under `key`, replacing any queued item with the same key."""
        old = self._by_key.get(key)
        if old is not None:
            del self._tiers[old.transmits][key]
            self._deleted(old.transmits, 1)
            self.pending_bytes -= len(old.encoded)
        size = max(len(encoded), MIN_ITEM_BYTES)
        if not self._by_key or size < self._min_size:
            self._min_size = size
        item = Broadcast(key, message, encoded)
        self._by_key[key] = item
        self._tiers[0][key] = item
        self.pending_bytes += len(encoded)

    def discard(self, key: Hashable) -> None:
        """Forget the item under `key`, if any."""
        old = self._by_key.pop(key, None)
        if old is not None:
            del self._tiers[old.transmits][key]
            self._deleted(old.transmits, 1)
            self.pending_bytes -= len(old.encoded)

    def drop_most_sent(self) -> None:
        """Forget the item sent most often (the oldest among those), if any."""
        for index in range(len(self._tiers) - 1, -1, -1):
            tier = self._tiers[index]
            if tier:
                key = next(iter(tier))
                del tier[key]
                self._deleted(index, 1)
                self.pending_bytes -= len(self._by_key.pop(key).encoded)
                return

    def take(
        self, budget: int, limit: int, encoded: list[bytes], messages: list[Message]
    ) -> int:
        """Append items fitting in `budget` bytes to `encoded` and `messages`.

        Each item taken counts one transmit; an item reaching `limit` transmits leaves
        the queue. Returns the bytes used.
        """
        if not self._by_key or budget < MIN_ITEM_BYTES:
            return 0
        self._drop_over(limit)
        used = 0
        scanned = 0
        # Once less room is left than the smallest queued item, nothing more can fit:
        # the scan ends there instead of examining up to MAX_SCAN items that cannot.
        floor = self._min_size
        taken: list[tuple[int, list[Broadcast]]] = []
        # Only the tiers holding items, picked in C (most of the `limit` tiers are empty
        # in a quiet cluster); the scan does not change them, promotion comes after.
        tiers = self._tiers[:limit]
        for tier_index, tier in compress(enumerate(tiers), tiers):
            chosen: list[Broadcast] = []
            for item in reversed(tier.values()):
                scanned += 1
                size = len(item.encoded)
                if used + size <= budget:
                    chosen.append(item)
                    used += size
                if budget - used < floor or scanned >= MAX_SCAN:
                    break
            if chosen:
                taken.append((tier_index, chosen))
            if budget - used < floor or scanned >= MAX_SCAN:
                break
        # Promote only after the scan, so no item is met twice in one packet.
        for tier_index, chosen in reversed(taken):
            self._promote(chosen, tier_index, limit)
            for item in chosen:
                encoded.append(item.encoded)
                messages.append(item.message)
        return used

    def _promote(self, chosen: list[Broadcast], tier_index: int, limit: int) -> None:
        tier = self._tiers[tier_index]
        if tier_index + 1 == len(self._tiers):
            self._tiers.append({})
            self._dead.append(0)
        upper = self._tiers[tier_index + 1]
        # Re-insert in ascending order so the next scan of the upper tier, which walks
        # from the end, meets the newest first.
        for item in reversed(chosen):
            del tier[item.key]
            item.transmits += 1
            if item.transmits >= limit:
                del self._by_key[item.key]
                self.pending_bytes -= len(item.encoded)
            else:
                upper[item.key] = item
        self._deleted(tier_index, len(chosen))

    def _deleted(self, tier_index: int, count: int) -> None:
        """Note `count` items deleted from a tier; rebuild it once they outnumber it.

        A dict keeps the slots of deleted items until it next grows, and a scan walks
        a tier from its newest end, where promotion deletes: in a busy queue (a cluster
        joining) that end fills with dead slots the scan must step over, for every
        packet. The rebuilt dict holds the same items in the same order.
        """
        dead = self._dead[tier_index] + count
        tier = self._tiers[tier_index]
        if dead > 32 and dead > 2 * len(tier):
            self._tiers[tier_index] = dict(tier)
            dead = 0
        self._dead[tier_index] = dead

    def _drop_over(self, limit: int) -> None:
        # The limit shrinks when the cluster does; items already sent that often go.
        while len(self._tiers) > max(limit, 1):
            self._dead.pop()
            for key in self._tiers.pop():
                self.pending_bytes -= len(self._by_key.pop(key).encoded)


@attr.s(auto_attribs=True, eq=False)
class SeenIds:
    """Bounded memory of delivered user-broadcast ids, oldest forgotten first."""

    capacity: int
    _seen: dict[tuple[str, int], None] = attr.ib(factory=dict)

    def add(self, key: tuple[str, int]) -> bool:
        """Remember `key`; False if it was already remembered."""
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            del self._seen[next(iter(self._seen))]
        return True
