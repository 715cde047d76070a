"""Stable views: an opt-in, Rapid-style membership mode on the same sans-IO core.

Pure building blocks, one job each (no I/O, no clock: ``now`` is passed in):

* `rings`: configurations (member set + epoch, and their id) and the K-ring
  monitoring overlay (observers, subjects, temporary observers of joiners);
* `cut`: multi-process cut detection with K, H, L, implicit alerts and reinforcement;
* `agreement`: votes on a cut, Rapid's ¾ fast path and a majority slow path, and what
  they do and do not guarantee;
* `admission`: the edge failure detector and the join/readmission hysteresis;
* `sync`: a whole configuration as `ViewSync` parts, and put back together;
* `params`: the mode's settings (`StableParams`, inside `Config`);

and `views` (`StableViews`), which wires them to the core's prober and dissemination.
The names below are imported from their modules on first use (a SWIM-mode member never
loads the mode).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swim.core.stable.admission import Admission, EdgeMonitor
    from swim.core.stable.agreement import Agreement, fast_quorum, majority
    from swim.core.stable.cut import Cut, CutDetector
    from swim.core.stable.params import CutParams, EdgeParams
    from swim.core.stable.rings import Configuration, Rings, config_id, rings_of


def __getattr__(name: str) -> Any:
    """The names below, imported from the mode's modules on first use, so that building
    a `Config` (which holds `params.StableParams`) does not import the whole mode."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from swim.core.stable import admission, agreement, cut, params, rings

    for module in (admission, agreement, cut, params, rings):
        if name in vars(module):
            value = vars(module)[name]
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Admission",
    "Agreement",
    "Configuration",
    "Cut",
    "CutDetector",
    "CutParams",
    "EdgeMonitor",
    "EdgeParams",
    "Rings",
    "config_id",
    "fast_quorum",
    "majority",
    "rings_of",
]
