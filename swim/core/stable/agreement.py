"""Agreement on the next configuration: votes for one cut, counted per configuration.

Every member of the configuration votes once (per round), for the cut its own detector
proposed (`cut.CutDetector.proposal`), and gossips the vote; every member counts every
vote it hears. Because cut detection reaches almost-everywhere agreement, most members vote
for the identical cut, and then:

* fast path (Rapid's, after Fast Paxos): a cut is decided as soon as at least ¾ of the
  configuration (``ceil(3n/4)`` members) voted for it;
* slow path: once ``fallback_after_s`` has passed since the first vote was seen, a cut
  is decided when a strict majority (``n // 2 + 1``) voted for it.

What is guaranteed. A member votes at most once per round and never changes its vote
(a second, different vote from the same voter is ignored and counted). Two sets of
voters of size above n/2 always share a voter, so no two different cuts can both reach
a majority in one round, let alone ¾; and no member leaves a round that decides (see
split votes below). So every member that decides in a configuration decides the same
cut, and moves to the same next configuration (same member set, same epoch, same id).
This holds under any message loss, delay or partition, for members that follow the
protocol (nothing here defends against a lying member).

What is not guaranteed.

* Liveness in a partition: a side with at most half of the configuration can never
  decide; it keeps its old configuration (which still lists the other side) until it
  hears the majority's newer configuration after the heal. A side with more than half
  (or ¾, on the fast path) decides and removes the other side.
* Split votes are recovered by rounds, not by Rapid's classic Paxos. When the votes a
  member heard prove that no cut can reach a majority in the current round any more
  (the most-voted cut plus every voter not yet heard is still short: `stuck`), the
  member moves to the next round and votes again; a member that hears a vote for a
  later round moves there too. This is safe: a round in which some cut is decided has
  a majority for that cut, so no member can ever hold the proof that it is stuck, and
  so no member leaves it; decisions are made within one round only, hence at most one
  cut per configuration. It is live only when the votes are heard: a member that
  cannot hear enough voters (a minority side) never moves on, and a new round may
  split again if members still propose different cuts (they vote what their
  detectors propose by then, which after the alerts have spread is usually the
  same).
* Tiny configurations: removing one of two members needs the vote of both (a majority
  of 2), so a two-member configuration cannot remove a crashed member.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from swim.core.stable.cut import Cut
from swim.core.stable.rings import Configuration

_INF: Final = float("inf")


def fast_quorum(n: int) -> int:
    """Votes that decide a cut on the fast path: ``ceil(3n/4)`` (at least 1)."""
    return max(1, math.ceil(3 * n / 4))


def majority(n: int) -> int:
    """Votes that decide a cut on the slow path: a strict majority of `n`."""
    return n // 2 + 1


@attrs.define(eq=False)
class VoteCounters:
    """Votes ignored, and how decisions were reached."""

    #: Votes for another configuration.
    wrong_config: int = 0
    #: Votes from a member outside the configuration.
    not_member: int = 0
    #: A voter's second vote for the same cut.
    duplicate: int = 0
    #: A voter's second vote for a different cut (votes are irrevocable).
    conflicting: int = 0
    #: Votes for an earlier round than ours (ignored).
    late_round: int = 0
    #: Rounds started after a split (ours or learned from a later vote).
    rounds: int = 0
    #: Decisions on the fast path and on the slow path.
    fast: int = 0
    slow: int = 0


class Agreement:
    """The votes of one configuration, and its decision once there is one."""

    def __init__(self, configuration: Configuration, *, fallback_after_s: float = 10.0) -> None:
        self.configuration: Final = configuration
        self.fallback_after_s: Final = fallback_after_s
        self.counters: Final = VoteCounters()
        #: The voting round (1, then one more after each split).
        self.round = 1
        self._votes: dict[str, Cut] = {}
        self._tally: dict[Cut, int] = {}
        self._first_vote_at = _INF
        self._slow_path_checked = False
        #: The decided cut, once decided.
        self.decided: Cut | None = None

    def stuck(self) -> bool:
        """True if the votes heard prove that this round can decide nothing: the
        most-voted cut, given every vote not heard yet, is still short of a majority."""
        if self.decided is not None or not self._tally:
            return False
        n = len(self.configuration)
        unheard = n - len(self._votes)
        return max(self._tally.values()) + unheard < majority(n)

    def next_round(self, round_: int | None = None) -> None:
        """Move to round `round_` (default: the next one), forgetting this round's
        votes. Only when this round is `stuck`, or a vote for a later round was heard
        (its voter held the proof)."""
        target = self.round + 1 if round_ is None else round_
        if target <= self.round:
            raise ValueError(f"round {target} is not after round {self.round}")
        self.round = target
        self._votes = {}
        self._tally = {}
        self._first_vote_at = _INF
        self._slow_path_checked = False
        self.counters.rounds += 1

    def votes(self) -> list[tuple[str, Cut]]:
        """Every vote heard, as (voter, cut), sorted by voter."""
        return sorted(self._votes.items())

    def cuts(self) -> list[Cut]:
        """Every cut voted for, sorted."""
        return sorted(self._tally)

    def vote_of(self, voter: str) -> Cut | None:
        """The cut `voter` voted for, if we heard its vote."""
        return self._votes.get(voter)

    def votes_for(self, cut: Cut) -> int:
        """Distinct voters heard for `cut`."""
        return self._tally.get(cut, 0)

    def add(self, *, voter: str, cut: Cut, config_id: int, now: float, round_: int = 1) -> bool:
        """Count one vote of round `round_`; True if it was new. Check `decide`
        afterwards. A vote for a later round moves us to that round first."""
        counters = self.counters
        if config_id != self.configuration.id:
            counters.wrong_config += 1
            return False
        if round_ < self.round:
            counters.late_round += 1
            return False
        if round_ > self.round and self.decided is None:
            self.next_round(round_)
        elif round_ > self.round:
            counters.late_round += 1
            return False
        if voter not in self.configuration:
            counters.not_member += 1
            return False
        previous = self._votes.get(voter)
        if previous is not None:
            if previous == cut:
                counters.duplicate += 1
            else:
                counters.conflicting += 1
            return False
        self._votes[voter] = cut
        self._tally[cut] = self._tally.get(cut, 0) + 1
        if self._first_vote_at == _INF:
            self._first_vote_at = now
        return True

    def decide(self, now: float) -> Cut | None:
        """The decided cut, if the votes heard so far decide one (see the module doc);
        once decided, the same cut every time."""
        if self.decided is not None:
            return self.decided
        if not self._tally:
            return None
        n = len(self.configuration)
        slow_path = now >= self._first_vote_at + self.fallback_after_s
        if slow_path:
            self._slow_path_checked = True
        # The most-voted cut; ties broken by the cut itself, so the choice does not
        # depend on arrival order (it only matters below a majority, where nothing is
        # decided anyway).
        cut, votes = max(self._tally.items(), key=lambda kv: (kv[1], kv[0]))
        if votes >= fast_quorum(n):
            self.counters.fast += 1
        elif votes >= majority(n) and slow_path:
            self.counters.slow += 1
        else:
            return None
        self.decided = cut
        return cut

    def deadline(self) -> float:
        """When the slow path may decide (inf: no vote yet, already decided, or the
        slow path was already tried; later votes are checked as they come)."""
        if self.decided is not None or self._first_vote_at == _INF or self._slow_path_checked:
            return _INF
        return self._first_vote_at + self.fallback_after_s
