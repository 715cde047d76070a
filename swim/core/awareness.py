"""Local health awareness (Lifeguard LHA-probe): a bounded score of our own health.

Score 0 is healthy. Failed probes without nacks, and having to refute a suspicion about
ourselves, raise it; successful probes lower it. The probe interval is scaled by
``score + 1``, so a member that is itself slow (CPU-starved, dropping packets) probes
less often and so accuses others less often.
"""

from __future__ import annotations

import attr

from swim.core.timing import awareness_scaled_s


@attr.s(auto_attribs=True, eq=False)
class Awareness:
    """The local health score, clamped to ``[0, max_multiplier - 1]``."""

    max_multiplier: int
    score: int = 0

    def apply_delta(self, delta: int) -> int:
        """Add `delta` (clamped); returns the new score."""
        self.score = min(max(self.score + delta, 0), self.max_multiplier - 1)
        return self.score

    def scale(self, base_s: float) -> float:
        """`base_s` scaled by the current health: ``base * (score + 1)``."""
        return awareness_scaled_s(base_s, self.score)
