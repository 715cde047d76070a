"""Streams: full-state exchanges (join, push-pull, reconnect), fallback pings, reliable
user messages, and their bookkeeping.

A stream is one request frame and one response frame over a reliable transport (TCP in
production). The core asks for one with a `StreamRequest`; the driver delivers the
outcome with `Core.receive_stream_response`. Every stream the core opens is also given
a deadline of ``Config.tcp_timeout_s``: if no outcome has arrived by then, the core
counts it as failed itself, so a driver that loses a response cannot leave a join or a
probe waiting forever, and every driver times streams out at the same moment. An outcome
arriving after that is ignored (and counted).

Joining follows the shared `DriverPolicy`: a round opens a join exchange with every
seed; if none answers and no other live member became known meanwhile, the next round
starts after a jittered, doubling, capped backoff, until one does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

import attr

from swim.core.codec import encode, message_kind
from swim.core.config import Config
from swim.core.deadlines import DeadlineHeap
from swim.core.errors import ProtocolError
from swim.core.messages import Address, Message
from swim.core.outputs import StreamKind, StreamRequest
from swim.core.policy import DriverPolicy
from swim.core.stats import Stats

_INF: Final = float("inf")


@attr.s(auto_attribs=True, eq=False)
class PendingStream:
    """A stream we opened and await the outcome of."""

    id: int
    kind: StreamKind
    addr: Address
    #: The probe sequence number, for a fallback ping.
    seq: int
    deadline: float


class Exchange:
    """The streams of one member: ids, outbox, timeouts, and the join rounds."""

    def __init__(
        self, config: Config, policy: DriverPolicy, stats: Stats, rng: random.Random
    ) -> None:
        self.config: Final = config
        self.policy: Final = policy
        self._stats = stats
        self._rng = rng
        self._pending: dict[int, PendingStream] = {}
        self._timeouts: DeadlineHeap[int] = DeadlineHeap()
        self._stream_id = 0
        #: Streams asked for since the core's last `poll`, which drains this list.
        self.outbox: list[StreamRequest] = []
        # Join rounds: the seeds, the round's outstanding streams, the backoff.
        self._seeds: list[Address] = []
        self._join_ids: set[int] = set()
        self._join_backoff_s = policy.join_backoff_s
        self.join_retry_at = _INF
        #: Join rounds started.
        self.join_rounds = 0

    # ----------------------------------------------------------------------- streams

    def open(
        self, kind: StreamKind, addr: Address, messages: list[Message], now: float, seq: int = 0
    ) -> int:
        """Ask the driver for a stream carrying `messages`; returns its id."""
        self._stream_id += 1
        sid = self._stream_id
        data = encode(messages)
        stats = self._stats
        stats.datagrams_out += 1
        stats.bytes_out += len(data)
        for msg in messages:
            stats.messages_out[message_kind(msg)] += 1
        deadline = now + self.config.tcp_timeout_s
        self._pending[sid] = PendingStream(sid, kind, addr, seq, deadline)
        self._timeouts.push(deadline, sid)
        self.outbox.append(StreamRequest(sid, kind, addr, data, tuple(messages)))
        return sid

    def complete(self, stream_id: int) -> PendingStream | None:
        """The stream an outcome belongs to; None if it already ended (late outcome).

        Raises `ProtocolError` for an id the core never issued.
        """
        pending = self._pending.pop(stream_id, None)
        if pending is None:
            if not 0 < stream_id <= self._stream_id:
                raise ProtocolError(f"no stream {stream_id} was ever opened")
            self._stats.late_stream_outcomes += 1
        return pending

    def _timeout_live(self, when: float, sid: int) -> bool:
        return sid in self._pending

    def expire(self, now: float) -> list[PendingStream]:
        """Streams whose deadline passed with no outcome, now counted as failed."""
        expired = []
        for _, sid in self._timeouts.pop_due(now, self._timeout_live):
            expired.append(self._pending.pop(sid))
            self._stats.streams_timed_out += 1
        return expired

    def deadline(self) -> float:
        """The earliest stream timeout or join retry (inf: none)."""
        if not self._pending:
            return self.join_retry_at
        when = self._timeouts.earliest(self._timeout_live)
        best = _INF if when is None else when
        return min(best, self.join_retry_at)

    # ------------------------------------------------------------------------- joins

    def start_join(self, seeds: Sequence[Address], own: Address) -> list[Address]:
        """Begin joining through `seeds` (ourselves excluded): the seeds of round one."""
        self._seeds = [s for s in seeds if s != own]
        self._join_ids = set()
        self._join_backoff_s = self.policy.join_backoff_s
        self.join_retry_at = _INF
        return list(self._seeds)

    def join_round_opened(self, ids: list[int]) -> None:
        """The streams of a join round (one per seed)."""
        self.join_rounds += 1
        self._join_ids = set(ids)

    def join_done(self, stream_id: int, ok: bool, now: float, *, has_peer: bool) -> None:
        """A join exchange ended. If the whole round failed and we know no live member,
        schedule the next round after the backoff."""
        if stream_id not in self._join_ids:
            return  # a stream of an earlier round
        self._join_ids.discard(stream_id)
        if ok:
            self._end_join()
        elif not self._join_ids:
            if has_peer:
                self._end_join()
                return
            policy = self.policy
            self.join_retry_at = now + policy.join_retry_delay_s(
                self._join_backoff_s, self._rng.random()
            )
            self._join_backoff_s = policy.next_backoff_s(self._join_backoff_s)

    def join_retry_due(self, now: float, *, has_peer: bool, leaving: bool) -> list[Address]:
        """The seeds to join again now, if a retry is due and still needed."""
        if now < self.join_retry_at:
            return []
        self.join_retry_at = _INF
        if has_peer or leaving:
            self._end_join()
            return []
        return list(self._seeds)

    def stop_joining(self) -> None:
        """No more join rounds (we are leaving)."""
        self._end_join()

    def _end_join(self) -> None:
        self._join_ids = set()
        self.join_retry_at = _INF
