"""Edges and admission: when an observer alerts, and when a joiner may be vouched for.

`EdgeMonitor` is the observer's side of one edge (Rapid's edge failure detector): it
keeps the outcomes of the last ``window`` probes of each subject and calls the edge
faulty once ``failures`` of them failed. Alerts are irrevocable for a configuration, so
the caller alerts the first time an edge turns faulty and then ignores it until the
next view change.

`Admission` is the hysteresis for joins. A temporary observer vouches for an outsider
(sends a join alert) only once the outsider has answered every probe for
``join_after_s``; a member that was removed from an earlier view must stay reachable
for ``readmit_after_s`` instead, so a flapping member is not readmitted between two of
its flaps. A single failed probe restarts the clock.

`Admission` also keeps the other clock: how long an outsider has failed every probe.
Once that reaches ``forget_after_s`` the outsider is `gone` (crashed, or cut off for
much longer than a flap): its observers stop vouching for it and the caller declares it
dead in the membership table, so it is reaped and no longer probed. A single answered
probe restarts that clock. A member's table that missed the death (its owner was cut
off meanwhile) can bring the outsider back at the same incarnation by push-pull; an
observer that already forgot it at that incarnation forgets it again at the first
failed probe instead of waiting a whole horizon again.
"""

from __future__ import annotations

import collections
from typing import Final

from swim.core.stable.params import EdgeParams

#: Most removed members remembered for the readmission hysteresis.
REMOVED_MEMORY: Final = 4096


class EdgeMonitor:
    """Probe outcomes per subject, for one observer."""

    def __init__(self, params: EdgeParams) -> None:
        self.params: Final = params
        self._history: dict[str, collections.deque[bool]] = {}

    def record(self, subject: str, ok: bool) -> bool:
        """Add one probe outcome; True if the edge is faulty now."""
        history = self._history.get(subject)
        if history is None:
            history = self._history[subject] = collections.deque(maxlen=self.params.window)
        history.append(ok)
        return self.faulty(subject)

    def faulty(self, subject: str) -> bool:
        """True if `failures` of the last `window` probes of `subject` failed."""
        history = self._history.get(subject)
        return history is not None and history.count(False) >= self.params.failures

    def keep_only(self, subjects: set[str]) -> None:
        """Forget every subject not in `subjects` (after a view change)."""
        for name in [s for s in self._history if s not in subjects]:
            del self._history[name]


class Admission:
    """Join hysteresis: how long each outsider has been reachable, and who was removed."""

    def __init__(self, *, join_after_s: float, readmit_after_s: float,
                 forget_after_s: float = float("inf")) -> None:
        if join_after_s < 0 or readmit_after_s < 0:
            raise ValueError("join_after_s and readmit_after_s must be >= 0")
        if not forget_after_s > 0:
            raise ValueError("forget_after_s must be > 0")
        self.join_after_s: Final = join_after_s
        self.readmit_after_s: Final = readmit_after_s
        self.forget_after_s: Final = forget_after_s
        self._reachable_since: dict[str, float] = {}
        self._unreachable_since: dict[str, float] = {}
        #: Outsiders we had declared dead, and the incarnation we declared.
        self._forgotten: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._removed: collections.OrderedDict[str, float] = collections.OrderedDict()

    def probe_result(self, name: str, ok: bool, now: float) -> None:
        """One probe of outsider `name`: a failure restarts its reachability clock, an
        answer its unreachability clock."""
        if ok:
            self._reachable_since.setdefault(name, now)
            self._unreachable_since.pop(name, None)
        else:
            self._reachable_since.pop(name, None)
            self._unreachable_since.setdefault(name, now)

    def ready(self, name: str, now: float) -> bool:
        """True if `name` has been reachable long enough to be vouched for."""
        since = self._reachable_since.get(name)
        if since is None:
            return False
        wait = self.readmit_after_s if name in self._removed else self.join_after_s
        return now - since >= wait

    def gone(self, name: str, now: float, incarnation: int) -> bool:
        """True if `name` (held at `incarnation`) has failed every probe for at least
        ``forget_after_s``, or failed the last one and was `forgotten` before at this
        incarnation or a later one (a stale table brought it back)."""
        since = self._unreachable_since.get(name)
        if since is None:
            return False
        return (self._forgotten.get(name, -1) >= incarnation
                or now - since >= self.forget_after_s)

    def forgotten(self, name: str, incarnation: int) -> None:
        """We declared `name` dead at `incarnation`: stop tracking it, remember that."""
        self.forget(name)
        self._forgotten.pop(name, None)
        self._forgotten[name] = incarnation
        while len(self._forgotten) > REMOVED_MEMORY:
            self._forgotten.popitem(last=False)

    def was_removed(self, name: str) -> bool:
        """True if `name` was removed from a view we held (within memory)."""
        return name in self._removed

    def removed(self, name: str, now: float) -> None:
        """`name` left a view we held: its readmission waits ``readmit_after_s``."""
        self._removed.pop(name, None)
        self._removed[name] = now
        self.forget(name)
        while len(self._removed) > REMOVED_MEMORY:
            self._removed.popitem(last=False)

    def admitted(self, name: str) -> None:
        """`name` joined a view we hold: no longer an outsider."""
        self.forget(name)

    def forget(self, name: str) -> None:
        """Stop tracking outsider `name`'s reachability (no longer ours to watch)."""
        self._reachable_since.pop(name, None)
        self._unreachable_since.pop(name, None)
