"""`Roster`: the read side of the membership table, its probe order and sampling.

A base class of `Membership` (membership.py), which owns every transition; this part
holds what the rest of the core reads: the members, the probe order (a shuffled
round-robin over every other member, re-shuffled after each pass, joiners inserted at a
random position), random sampling for ping-req helpers, gossip and push-pull targets,
tombstones for reconnection, and the converged start (`bootstrap`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from swim.core.config import Config
from swim.core.messages import MemberState
from swim.core.precedence import ALIVE, DEAD, LEFT, SUSPECT
from swim.core.suspicion import Suspicion

GONE: Final = (DEAD, LEFT)
_INF: Final = float("inf")


class Roster:
    """Members, probe order, tombstones: the state `Membership`'s rules change."""

    # Fields, declared by `Membership` (an attrs class).
    config: Config
    rng: random.Random
    _members: dict[str, MemberState]
    _local_name: str
    _probe_order: list[str]
    _probe_index: int
    _suspicions: dict[str, Suspicion]
    _gone_since: dict[str, float]
    leaving: bool
    _tombstones: dict[str, tuple[MemberState, float]]

    # ----------------------------------------------------------------------------- views

    @property
    def local(self) -> MemberState:
        """The local member's own state."""
        return self._members[self._local_name]

    def count(self) -> int:
        """n for the protocol's formulas: every member in the table, the local one too."""
        return len(self._members)

    def get(self, name: str) -> MemberState | None:
        """One member's state, or None if unknown (or reaped)."""
        return self._members.get(name)

    @property
    def table(self) -> Mapping[str, MemberState]:
        """Every member's state by name (read-only; the same mapping until the next
        `bootstrap`, so a loop over one input's messages may hold it)."""
        return self._members

    def states(self) -> list[MemberState]:
        """Every member in the table, the local one included, in insertion order."""
        return list(self._members.values())

    def state_tuple(self) -> tuple[MemberState, ...]:
        """The same as a tuple (a push-pull's payload)."""
        return tuple(self._members.values())

    def is_live(self, name: str) -> bool:
        """True for an alive or suspect member other than the local one."""
        state = self._members.get(name)
        return state is not None and state.status <= SUSPECT and name != self._local_name

    def has_live_peer(self) -> bool:
        """True if any other member is alive or suspect (O(n) in the worst case)."""
        members = self._members
        return any(members[n].status <= SUSPECT for n in self._probe_order)

    def has_alive_peer(self) -> bool:
        """True if any other member is alive (O(n) in the worst case)."""
        members = self._members
        return any(members[n].status == ALIVE for n in self._probe_order)

    def alive_count(self) -> int:
        """Members not dead or left (the local one included): a cluster size estimate."""
        return len(self._members) - len(self._gone_since)

    @property
    def tombstone_count(self) -> int:
        """Failed members remembered for reconnection."""
        return len(self._tombstones)

    def tombstone(self, name: str) -> tuple[MemberState, float] | None:
        """A reaped failed member's last state and when it was reaped, if remembered."""
        return self._tombstones.get(name)

    def suspicion(self, name: str) -> Suspicion | None:
        """The running suspicion about `name`, if any."""
        return self._suspicions.get(name)

    def probe_order(self) -> list[str]:
        """A copy of the current probe order (every other member's name)."""
        return list(self._probe_order)

    def bootstrap(
        self,
        states: Iterable[MemberState] | Mapping[str, MemberState],
        now: float,
        probe_order: Sequence[str] | None = None,
    ) -> None:
        """Know `states` already, as if joined long ago: no events, no gossip.

        `states` may be a prebuilt ``name -> state`` mapping shared by many members
        (a simulator's converged start); it is then copied at C speed, with our own
        entry kept, and `probe_order` (every other member's name, in the order to
        probe them) may be given to skip the shuffle. Members already known are left
        as they are.
        """
        members = self._members
        if isinstance(states, Mapping) and len(members) == 1:
            me = self.local
            table = dict(states)
            table[me.name] = me
            self._members = members = table
            if probe_order is None:
                order = [name for name in table if name != me.name]
                self.rng.shuffle(order)
            else:
                order = list(probe_order)
                if len(order) != len(table) - 1 or me.name in order:
                    raise ValueError("probe_order must name every other member once")
            self._probe_order = order
            self._probe_index = 0
            for name, state in table.items():
                if state.status in GONE:
                    self._gone_since[name] = now
            return
        order = self._probe_order
        values = states.values() if isinstance(states, Mapping) else states
        for state in values:
            name = state.name
            if name in members:
                continue
            members[name] = state
            order.append(name)
            if state.status in GONE:
                self._gone_since[name] = now
        self.rng.shuffle(order)

    def next_reconnect(self, now: float) -> MemberState | None:
        """The next tombstone to try a reconnection with (round-robin), or None.

        Tombstones older than ``reconnect_timeout_s`` are dropped on the way.
        """
        tombstones = self._tombstones
        horizon = self.config.reconnect_timeout_s
        for _ in range(len(tombstones)):
            name, (state, since) = next(iter(tombstones.items()))
            del tombstones[name]
            if since + horizon > now:
                tombstones[name] = (state, since)  # rotate to the back
                return state
        return None

    # --------------------------------------------------------------------------- probing

    def next_probe_target(self) -> MemberState | None:
        """Round-robin over the shuffled probe order, re-shuffled after each pass (or a
        uniform random live member, with ``probe_selection="uniform"``)."""
        order = self._probe_order
        members = self._members
        if self.config.probe_selection == "uniform":
            picked = self.sample(1, exclude="", live_only=True)
            return picked[0] if picked else None
        for _ in range(len(order) + 1):
            if self._probe_index >= len(order):
                self._probe_index = 0
                self.rng.shuffle(order)
                if not order:
                    return None
            state = members[order[self._probe_index]]
            self._probe_index += 1
            if state.status <= SUSPECT:
                return state
        return None

    def sample(
        self, count: int, *, exclude: str, live_only: bool, alive_only: bool = False,
        gone_after: float = _INF, left_too: bool = True,
    ) -> list[MemberState]:
        """Up to `count` distinct random members, by bounded rejection sampling.

        Never O(n): it draws from the probe order and gives up after a few misses, so a
        table full of dead members yields fewer picks rather than a long scan. Dead
        (and, with `left_too`, left) members count only with ``live_only=False`` and if
        they became so after `gone_after`.
        """
        order = self._probe_order
        if count <= 0 or not order:
            return []
        members = self._members
        gone_since = self._gone_since
        picked: list[MemberState] = []
        names: list[str] = []
        rng = self.rng
        for _ in range(3 * count + 8):
            name = order[int(rng.random() * len(order))]
            if name == exclude or name in names:
                continue
            state = members[name]
            status = state.status
            if status == ALIVE or (status == SUSPECT and not alive_only) or (
                not live_only
                and (status == DEAD or (left_too and status > DEAD))
                and gone_since[name] >= gone_after
            ):
                picked.append(state)
                names.append(name)
                if len(picked) == count:
                    break
        return picked
