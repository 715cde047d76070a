"""The stable-view mode's settings, one value inside `swim.core.config.Config`, and the
parts of them the cut detector (`CutParams`) and the edge detector (`EdgeParams`) take.

Plain values with no dependency on the rest of the mode, so a configuration can be built
(and every `Config` is) without importing the mode itself.
"""

from __future__ import annotations

from typing import Final

import attrs

#: Most (name, up) entries one cut may hold (the codec refuses larger votes).
MAX_CUT_ENTRIES: Final = 256

_POSITIVE = attrs.validators.gt(0.0)
_NON_NEGATIVE = attrs.validators.ge(0.0)


@attrs.frozen(kw_only=True)
class EdgeParams:
    """An edge is faulty when `failures` of the last `window` probes failed."""

    window: int = 5
    failures: int = 2

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.failures <= self.window:
            raise ValueError(
                f"edge failures must be in [1, window={self.window}], got {self.failures}"
            )


@attrs.frozen(kw_only=True)
class CutParams:
    """K rings, the H (stable) and L (unstable) report thresholds (Rapid's 10, 9, 3)."""

    k: int = 10
    h: int = 9
    l: int = 3  # noqa: E741 (the paper's name)

    def __attrs_post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"K (rings) must be >= 1, got {self.k}")
        if not 1 <= self.h <= self.k:
            raise ValueError(f"H must be in [1, K={self.k}], got H={self.h}")
        if not 1 <= self.l <= self.h:
            raise ValueError(f"L must be in [1, H={self.h}], got L={self.l}")


@attrs.frozen(kw_only=True)
class StableParams:
    """K, H, L (Rapid's 10, 9, 3), the edge detector, and the mode's timers.

    Durations are in seconds. Validated on construction: ``1 <= L <= H <= K``, and
    ``1 <= edge_failures <= edge_window``.
    """

    #: K rings (observers per member), H reports make a subject stable, L unstable.
    k: int = 10
    h: int = 9
    l: int = 3  # noqa: E741 (the paper's name)
    #: An edge is faulty once `edge_failures` of its last `edge_window` probes failed.
    edge_window: int = 5
    edge_failures: int = 2
    #: A subject unstable this long is reinforced by its silent observers.
    reinforce_after_s: float = attrs.field(default=10.0, validator=_POSITIVE)
    #: After this long since the first vote, a majority decides (the slow path).
    vote_fallback_s: float = attrs.field(default=10.0, validator=_POSITIVE)
    #: A new joiner is vouched for once it answered probes this long (0: at the first
    #: answered probe).
    join_after_s: float = attrs.field(default=0.0, validator=_NON_NEGATIVE)
    #: A member removed from a view is vouched for again only after this long.
    readmit_after_s: float = attrs.field(default=60.0, validator=_NON_NEGATIVE)
    #: An outsider (a member removed from the view, or a joiner not yet admitted) that
    #: failed every probe of its temporary observers for this long is forgotten: they
    #: declare it dead in the membership table, so every member reaps it after
    #: ``gossip_to_the_dead_s`` and nobody probes it any more (no view change: it is
    #: already outside the view). Three readmit periods by default, so a flapper that is
    #: down for less than that is still readmitted once it stays up; one that comes back
    #: later refutes its death or rejoins by push-pull and is readmitted the same way.
    forget_after_s: float = attrs.field(default=180.0, validator=_POSITIVE)
    #: Every this often a member compares configurations with one random member.
    digest_interval_s: float = attrs.field(default=5.0, validator=_POSITIVE)
    #: ... and this often while it is outside its own view (joining, or removed), so a
    #: joiner that was sent the view before its admission soon asks again.
    outsider_digest_interval_s: float = attrs.field(default=1.0, validator=_POSITIVE)
    #: Most members one view change adds or removes.
    max_cut: int = attrs.field(
        default=64, validator=[attrs.validators.ge(1), attrs.validators.le(MAX_CUT_ENTRIES)]
    )

    def __attrs_post_init__(self) -> None:
        self.cut_params()
        self.edge_params()

    def cut_params(self) -> CutParams:
        """K, H and L as the cut detector takes them."""
        return CutParams(k=self.k, h=self.h, l=self.l)

    def edge_params(self) -> EdgeParams:
        """The edge detector's window and threshold."""
        return EdgeParams(window=self.edge_window, failures=self.edge_failures)
