"""Multi-process cut detection (Rapid, Suresh et al., ATC 2018, §4.2).

Theory of operation. Every member of a configuration is watched by K observers, one per
ring (`rings.Rings`). An observer whose edge to a subject turns bad (or, for an
outsider, good: a join) sends an *alert*: irrevocable for the configuration, and
naming the rings it speaks for. Every member feeds every alert it hears to its own
detector, which counts *reports* per subject, at most one per ring:

* a subject with at least H reports is *stable*: enough observers agree;
* a subject with at least L but fewer than H reports is *unstable*: something is
  happening to it but the evidence is not in yet;
* fewer than L reports is noise (one bad link, one confused observer).

A *proposal* (the cut to vote on) is emitted only when at least one subject is stable
and none is unstable, so a correlated failure is proposed as one cut, not one member
at a time; this is the almost-everywhere agreement that makes most members propose the
identical cut. Two liveness aids keep subjects from staying unstable forever:

* implicit alerts: an observer of an unstable subject that is itself in the pending cut
  (at least L reports) cannot be expected to report, so its report is counted for it;
* reinforcement: when a subject has been unstable for ``reinforce_after_s``, each of
  its observers that has not reported it sends the alert itself (`reinforcements`).

A member that leaves gracefully alerts about itself; that alert counts for all K rings.
Alerts that carry another configuration's id, that come from a member that is not the
subject's observer on the rings they name, that repeat a (subject, ring) already
counted, or whose kind does not fit the subject (a join alert about a member, a removal
alert about an outsider) are ignored and counted in `CutCounters`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

from swim.core.stable.params import CutParams
from swim.core.stable.rings import Rings

#: A cut: ``(name, True)`` joins, ``(name, False)`` leaves, sorted by name.
Cut = tuple[tuple[str, bool], ...]

_INF: Final = float("inf")


@attrs.define(eq=False)
class CutCounters:
    """What the detector ignored, and the liveness aids it used."""

    #: Alerts for a configuration other than ours.
    wrong_config: int = 0
    #: Alerts from a member that is not the subject's observer on a ring it named.
    not_observer: int = 0
    #: (subject, ring) reports already counted.
    duplicate: int = 0
    #: Join alerts about members, removal alerts about outsiders.
    wrong_kind: int = 0
    #: Ring numbers outside [0, K).
    bad_ring: int = 0
    #: Reports counted implicitly (an observer in the pending cut).
    implicit: int = 0
    #: Alerts this member re-sent for subjects stuck in the unstable region.
    reinforced: int = 0


class CutDetector:
    """One member's detector for one configuration (a new one per view change)."""

    def __init__(
        self, params: CutParams, rings: Rings, *, reinforce_after_s: float = 10.0,
        max_cut: int = 64,
    ) -> None:
        if rings.k != params.k:
            raise ValueError(f"the overlay has {rings.k} rings, the parameters K={params.k}")
        self.params: Final = params
        self.rings: Final = rings
        self.config_id: Final = rings.configuration.id
        self.reinforce_after_s: Final = reinforce_after_s
        self.max_cut: Final = max_cut
        self.counters: Final = CutCounters()
        #: subject -> ring -> the observer whose report counts there.
        self._reports: dict[str, dict[int, str]] = {}
        #: subject -> True (join) / False (removal), fixed by configuration membership.
        self._kind: dict[str, bool] = {}
        #: Unstable subjects and since when; the ones we already reinforced.
        self._unstable_since: dict[str, float] = {}
        self._reinforced: set[str] = set()
        self._proposed = False

    # ------------------------------------------------------------------- inputs

    def add(
        self, *, observer: str, subject: str, up: bool, rings: Iterable[int], config_id: int,
        now: float,
    ) -> int:
        """Count one alert; returns how many new (subject, ring) reports it gave."""
        counters = self.counters
        if config_id != self.config_id:
            counters.wrong_config += 1
            return 0
        member = subject in self.rings.configuration
        if up == member:
            counters.wrong_kind += 1
            return 0
        k = self.params.k
        if observer == subject and not up:
            wanted: Iterable[int] = range(k)  # a graceful leave speaks for every ring
            observers: tuple[str, ...] = (subject,) * k
        else:
            wanted = rings
            observers = self.rings.observers_of(subject)
        reports = self._reports.setdefault(subject, {})
        self._kind[subject] = up
        added = 0
        for ring in wanted:
            if type(ring) is not int or not 0 <= ring < k:
                counters.bad_ring += 1
            elif observers[ring] != observer:
                counters.not_observer += 1
            elif ring in reports:
                counters.duplicate += 1
            else:
                reports[ring] = observer
                added += 1
        if not reports:
            del self._reports[subject]
            del self._kind[subject]
        elif added:
            self._classify(subject, now)
        return added

    # ----------------------------------------------------------------- read-outs

    def reports(self, subject: str) -> int:
        """Rings on which `subject` is reported."""
        return len(self._reports.get(subject, ()))

    def stable(self) -> list[str]:
        """Subjects with at least H reports, sorted."""
        h = self.params.h
        return sorted(s for s, r in self._reports.items() if len(r) >= h)

    def unstable(self) -> list[str]:
        """Subjects with at least L but fewer than H reports, sorted."""
        return sorted(self._unstable_since)

    @property
    def proposed(self) -> bool:
        """True once `proposal` returned a cut (one per configuration)."""
        return self._proposed

    def proposal(self, now: float) -> Cut | None:
        """The cut to vote on, once: when a subject is stable and none unstable (after
        counting implicit alerts); None otherwise, and after it was returned once."""
        if self._proposed:
            return None
        cut = self.current(now)
        if cut is not None:
            self._proposed = True
        return cut

    def current(self, now: float) -> Cut | None:
        """The cut the reports make now (as `proposal`, but every time: for a vote in a
        later round, after a split)."""
        self._implicit_alerts(now)
        if self._unstable_since:
            return None
        stable = self.stable()
        if not stable:
            return None
        return tuple((s, self._kind[s]) for s in stable[: self.max_cut])

    def reinforcements(self, me: str, now: float) -> list[tuple[str, bool, tuple[int, ...]]]:
        """Alerts `me` owes for subjects unstable for ``reinforce_after_s`` or longer:
        ``(subject, up, rings)`` for the rings on which `me` observes the subject and
        has not reported it. Each subject is reinforced once; the caller sends the
        alerts and feeds them back through `add`."""
        out = []
        for subject, since in sorted(self._unstable_since.items()):
            if subject in self._reinforced or now < since + self.reinforce_after_s:
                continue
            self._reinforced.add(subject)
            reported = self._reports[subject]
            rings = tuple(
                r for r in self.rings.rings_observed_by(me, subject) if r not in reported
            )
            if rings:
                self.counters.reinforced += 1
                out.append((subject, self._kind[subject], rings))
        return out

    def deadline(self) -> float:
        """When the next reinforcement falls due (inf: none)."""
        due = [since for s, since in self._unstable_since.items() if s not in self._reinforced]
        return min(due) + self.reinforce_after_s if due else _INF

    # ----------------------------------------------------------------- internals

    def _classify(self, subject: str, now: float) -> None:
        count = len(self._reports[subject])
        if self.params.l <= count < self.params.h:
            self._unstable_since.setdefault(subject, now)
        else:
            self._unstable_since.pop(subject, None)

    def _implicit_alerts(self, now: float) -> None:
        """Count, for each unstable subject, the rings whose observer is itself in the
        pending cut (at least L reports). Repeated until nothing changes: a subject
        that becomes pending may make others' observers count. Each round adds at
        least one report, so this ends within K reports per subject."""
        low = self.params.l
        changed = True
        while changed and self._unstable_since:
            changed = False
            for subject in sorted(self._unstable_since):
                reports = self._reports[subject]
                for ring, observer in enumerate(self.rings.observers_of(subject)):
                    if ring in reports or observer == subject:
                        continue
                    if len(self._reports.get(observer, ())) >= low:
                        reports[ring] = observer
                        self.counters.implicit += 1
                        changed = True
                self._classify(subject, now)
