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
"""

from swim.core.stable.admission import Admission, EdgeMonitor, EdgeParams
from swim.core.stable.agreement import Agreement, fast_quorum, majority
from swim.core.stable.cut import Cut, CutDetector, CutParams
from swim.core.stable.rings import Configuration, Rings, config_id, rings_of

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
