"""One suspicion about one member, with Lifeguard's independent confirmations.

A suspicion starts with the maximum timeout and shrinks towards the minimum as other
members independently report the same suspicion (memberlist's suspicion.go). The first
accuser is not a confirmation; duplicates are ignored. The deadline is recomputed on
every new confirmation and may fall in the past, in which case it fires at once.
"""

from __future__ import annotations

import attr

from swim.core.timing import remaining_suspicion_time_s


@attr.s(auto_attribs=True, eq=False)
class Suspicion:
    """Timer state for one suspected member at one incarnation."""

    incarnation: int
    #: K: confirmations needed to reach the minimum timeout.
    k: int
    min_s: float
    max_s: float
    started_at: float
    #: Accusers seen so far (the first accuser included, so it cannot confirm itself).
    accusers: set[str]
    deadline: float = 0.0

    @classmethod
    def start(
        cls, *, incarnation: int, accuser: str, k: int, min_s: float, max_s: float, now: float
    ) -> Suspicion:
        """A new suspicion raised by `accuser` at `now`."""
        s = cls(incarnation, k, min_s, max_s, now, {accuser})
        s.deadline = now + remaining_suspicion_time_s(0, k, 0.0, min_s, max_s)
        return s

    @property
    def confirmations(self) -> int:
        """Independent confirmations received (excluding the first accuser)."""
        return len(self.accusers) - 1

    def confirm(self, accuser: str) -> bool:
        """Record `accuser`'s report; True if it was new and shortened the timeout.

        Once K confirmations are in, further ones change nothing (and are not
        re-gossiped).
        """
        if self.confirmations >= self.k or accuser in self.accusers:
            return False
        self.accusers.add(accuser)
        remaining = remaining_suspicion_time_s(
            self.confirmations, self.k, 0.0, self.min_s, self.max_s
        )
        self.deadline = self.started_at + remaining
        return True
