"""The exchange/push-pull job of `Core`: answering streams, merging full states,
joins, periodic push-pull and reconnection.

`ExchangeRules` is a base class of `Core` (the façade in core.py), split off so each
job reads on its own; it uses the façade's parts (`Membership`, `Dissemination`,
`Exchange`, `Prober`) and its effect handling, declared below.

A full-state exchange in both directions: we open a stream with our `PushPull`; the
peer merges ours first and answers with its own (so a refutation it owes rides back in
the answer); we merge the answer. A join is the same exchange with a seed, refused
(`Refusal`) if the joiner claims a name a live member holds elsewhere. Only our own
join trusts the whole answer; any other exchange adds at most
``Config.push_pull_new_max`` unknown members, and only the peer's own entry in an
exchange we opened to it counts as its own word (see the own-word rule in
membership.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from swim.core.codec import message_kind
from swim.core.events import JoinCompleted, UserMessageReceived
from swim.core.exchange import Exchange, PendingStream
from swim.core.messages import (
    Ack,
    Address,
    Message,
    Ping,
    PushPull,
    Refusal,
    UserMessage,
)
from swim.core.outputs import StreamKind
from swim.core.receiving import DatagramRules


class ExchangeRules(DatagramRules):
    """Stream handling for `Core` (see the module docstring); datagram input and carrying
    out effects come from `DatagramRules`."""

    # More of the façade's parts, set by `Core.__init__`.
    _rng: random.Random
    _exchange: Exchange

    def _answer_stream(
        self, messages: Sequence[Message], addr: Address, now: float
    ) -> list[Message] | None:
        if len(messages) != 1:
            self.stats.unexpected += 1
            return None
        msg = messages[0]
        self.stats.messages_in[message_kind(msg)] += 1
        match msg:
            case PushPull(join):
                if join:
                    holder = self._membership.refuse_join(msg.members, now)
                    self._carry_out(self._membership.take_effects())
                    if holder is not None:
                        # The joiner claims a name a live member holds elsewhere: a
                        # second process under one name. Tell it, take nothing in.
                        self.stats.joins_refused += 1
                        return [Refusal(holder.name, holder.addr)]
                # Merge theirs first (memberlist answers first): if their table makes us
                # refute, the refutation rides back in our answer. The requester's
                # address is an ephemeral port, so nothing in it is its own word.
                self._merge_state(
                    msg, now, deliver=True, source=None, new_max=self.config.push_pull_new_max
                )
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

    def _stream_done(
        self, pending: PendingStream, messages: Sequence[Message] | None, now: float
    ) -> None:
        kind = pending.kind
        if kind is StreamKind.JOIN or kind is StreamKind.PUSH_PULL:
            state = refusal = None
            if messages is not None and len(messages) == 1:
                msg = messages[0]
                if isinstance(msg, PushPull):
                    state = msg
                elif isinstance(msg, Refusal) and kind is StreamKind.JOIN:
                    refusal = msg
            if state is not None:
                self.stats.messages_in["push_pull"] += 1
                self._owe_alive = False
                mark = self._dis.mark()
                # We opened this exchange to the peer's member address, so its own
                # entry is its own word; only our join trusts the seed's whole table.
                self._merge_state(
                    state, now, deliver=kind is StreamKind.PUSH_PULL, source=pending.addr,
                    new_max=None if kind is StreamKind.JOIN else self.config.push_pull_new_max,
                )
                self._answer_outdated(pending.addr, mark)
            else:
                self.stats.push_pulls_failed += 1
            if kind is StreamKind.JOIN:
                ok = state is not None
                refused = ""
                if refusal is not None:
                    self.stats.messages_in["refusal"] += 1
                    host, port = refusal.addr
                    refused = (
                        f"the name {refusal.name!r} is held by a live member at "
                        f"{'[' + host + ']' if ':' in host else host}:{port}"
                    )
                self._events.append(
                    JoinCompleted(
                        seed=pending.addr,
                        ok=ok,
                        members=len(state.members) if state is not None else 0,
                        at=now,
                        refused=refused,
                    )
                )
                if refused:
                    self._exchange.stop_joining()
                else:
                    self._exchange.join_done(
                        pending.id, ok, now,
                        has_peer=not ok and self._membership.has_alive_peer(),
                    )
        elif kind is StreamKind.PING and messages is not None:
            for msg in messages:
                if isinstance(msg, Ack):
                    self._prober.on_fallback_ack(msg.seq)

    def _join_round(self, seeds: list[Address], now: float) -> list[int]:
        ids = [self._push_pull(seed, join=True, now=now) for seed in seeds]
        if ids:
            self._exchange.join_round_opened(ids)
        return ids

    def _local_state(self, *, join: bool = False) -> PushPull:
        return PushPull(
            join, self._membership.state_tuple(), self._dis.recent_user_broadcasts()
        )

    def _push_pull(self, addr: Address, *, join: bool, now: float) -> int:
        self.stats.push_pulls += 1
        kind = StreamKind.JOIN if join else StreamKind.PUSH_PULL
        return self._exchange.open(kind, addr, [self._local_state(join=join)], now)

    def _merge_state(
        self, state: PushPull, now: float, *, deliver: bool, source: Address | None,
        new_max: int | None,
    ) -> None:
        """Merge a peer's push-pull state: its members, then its recent broadcasts.

        With ``deliver=False`` (the answer to our own join) the broadcasts are only
        remembered as seen: a joiner does not replay the cluster's history.
        """
        self._carry_out(
            self._membership.merge_remote(state.members, now, source=source, new_max=new_max)
        )
        self._flush_notices()
        for msg in state.broadcasts:
            if msg.origin != self.name:
                self._accept_user_broadcast(msg, now, deliver=deliver)

    def _maybe_reconnect(self, now: float) -> None:
        """Try a push-pull with one reaped failed member, with Serf's probability.

        Each member tries with probability failed / alive per interval, so the cluster
        as a whole makes about one attempt per failed member per interval, whatever
        its size (every member trying every time would be n attempts).
        """
        membership = self._membership
        failed = membership.tombstone_count
        if not failed:
            return
        alive = max(1, membership.alive_count())
        if self._rng.random() * alive >= failed:
            return
        tombstone = membership.next_reconnect(now)
        if tombstone is not None:
            self._push_pull(tombstone.addr, join=False, now=now)

    def _periodic_push_pull(self, now: float) -> None:
        # An alive member, as memberlist, or one that failed within gossip_to_the_dead_s:
        # after a partition heals, the news about it has long been sent, so without this
        # the two sides would never meet again. One exchange across makes both sides
        # learn they were declared dead, refute, and gossip it (Serf's reconnect).
        peers = self._membership.sample(
            1,
            exclude="",
            live_only=False,
            alive_only=True,
            gone_after=now - self.config.gossip_to_the_dead_s,
            left_too=False,
        )
        if peers:
            self._push_pull(peers[0].addr, join=False, now=now)
