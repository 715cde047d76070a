"""The broadcast queue against a plain model of its rules, under long random churn.

The queue keeps its tiers in dicts and rebuilds a tier once deleted items outnumber it
(a scan walks a tier from its newest end, where dead slots would pile up), stops a scan
once no queued item can fit, and skips empty tiers in C. None of that may change which
items a packet carries or in what order: the model below keeps each tier as a plain list
and follows the documented rules step by step.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from swim.core.broadcasts import MAX_SCAN, MIN_ITEM_BYTES, BroadcastQueue
from swim.core.messages import Message, UserMessage


class ModelQueue:
    """Tiers by transmit count, each a list oldest first; the rules of `BroadcastQueue`."""

    def __init__(self) -> None:
        self.tiers: list[list[int]] = [[]]
        self.size: dict[int, int] = {}
        self.transmits: dict[int, int] = {}

    def queue(self, key: int, size: int) -> None:
        if key in self.size:
            self.tiers[self.transmits[key]].remove(key)
        self.size[key], self.transmits[key] = size, 0
        self.tiers[0].append(key)

    def discard(self, key: int) -> None:
        if key in self.size:
            self.tiers[self.transmits.pop(key)].remove(key)
            del self.size[key]

    def take(self, budget: int, limit: int) -> list[int]:
        if not self.size or budget < MIN_ITEM_BYTES:
            return []
        while len(self.tiers) > max(limit, 1):  # the limit shrank: drop those sent enough
            for key in self.tiers.pop():
                del self.size[key], self.transmits[key]
        used = scanned = 0
        taken: list[tuple[int, list[int]]] = []
        for index, tier in enumerate(self.tiers[:limit]):
            chosen = []
            for key in reversed(tier):  # newest first
                scanned += 1
                if used + self.size[key] <= budget:
                    chosen.append(key)
                    used += self.size[key]
                if budget - used < MIN_ITEM_BYTES or scanned >= MAX_SCAN:
                    break
            if chosen:
                taken.append((index, chosen))
            if budget - used < MIN_ITEM_BYTES or scanned >= MAX_SCAN:
                break
        packet: list[int] = []
        for index, chosen in reversed(taken):
            if index + 1 == len(self.tiers):
                self.tiers.append([])
            for key in reversed(chosen):  # re-queued oldest first
                self.tiers[index].remove(key)
                self.transmits[key] += 1
                if self.transmits[key] >= limit:
                    del self.size[key], self.transmits[key]
                else:
                    self.tiers[index + 1].append(key)
            packet.extend(chosen)
        return packet


def payload_key(message: Message) -> int:
    assert isinstance(message, UserMessage)
    return int(message.source)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("queue"), st.integers(0, 400), st.integers(8, 60)),
        st.tuples(st.just("burst"), st.integers(0, 400), st.integers(20, 120)),
        st.tuples(st.just("discard"), st.integers(0, 400), st.just(0)),
        st.tuples(st.just("take"), st.integers(0, 1400), st.integers(1, 6)),
    ),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_packets_match_the_model_under_churn(steps: list[tuple[str, int, int]]) -> None:
    queue, model = BroadcastQueue(), ModelQueue()

    def put(key: int, size: int) -> None:
        encoded = bytes(size)
        queue.queue(key, UserMessage(str(key), b""), encoded)
        model.queue(key, size)

    for op, a, b in steps:
        if op == "queue":
            put(a, b)
        elif op == "burst":  # many at once, as a cluster joining gossips
            for key in range(a, a + b):
                put(key, 8 + key % 40)
        elif op == "discard":
            queue.discard(a)
            model.discard(a)
        else:
            encoded: list[bytes] = []
            messages: list[Message] = []
            used = queue.take(a, b, encoded, messages)
            assert [payload_key(m) for m in messages] == model.take(a, b)
            assert used == sum(map(len, encoded))
            assert len(queue) == len(model.size)
    # Drain what is left with roomy packets: every item leaves after its last transmit.
    for _ in range(2000):
        if not model.size:
            break
        encoded, messages = [], []
        queue.take(1400, 3, encoded, messages)
        assert [payload_key(m) for m in messages] == model.take(1400, 3)
    assert len(queue) == 0 and not model.size
