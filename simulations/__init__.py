"""Deterministic discrete-event simulation of SWIM + Lifeguard clusters.

The simulator drives the real protocol core (`swim.core.Core`, the code production runs)
in virtual time: one seeded event heap, a network model with named options, scheduled
faults, and incremental metrics. The same seed gives the same trace.

Public API:

* `Scenario` (a frozen, picklable description of a run) and `run` (run it, get a
  `RunResult`); `Simulation` for step-by-step control.
* Faults: `Crash`, `Restart`, `Leave`, `Join`, `Pause`, `Slow`, `Churn`, `Partition`,
  `Clog`, `LossWindow`.
* The network: `NetworkModel`, `LinkClass`, `OneWayLoss`.
* Results: `RunResult` and its parts (`Detection`, `FalsePositives`, `Convergence`,
  `ViewSample`, `MemberTraffic`, `TrafficSummary`, `NetworkCounters`, `LinkBytes`).
* `Engine`, the heap itself, for drivers that need more than scenarios.
"""

from simulations.engine import Engine, addr_of, name_of
from simulations.faults import (
    Churn,
    Clog,
    Crash,
    Fault,
    Join,
    Leave,
    LossWindow,
    Partition,
    Pause,
    Restart,
    Slow,
)
from simulations.metrics import (
    Convergence,
    Detection,
    FalsePositive,
    FalsePositives,
    LinkBytes,
    MemberTraffic,
    NetworkCounters,
    RunResult,
    TrafficSummary,
    ViewSample,
)
from simulations.network import LinkClass, NetworkModel, OneWayLoss
from simulations.scenario import Scenario, Simulation, run

__all__ = [
    "Churn",
    "Clog",
    "Convergence",
    "Crash",
    "Detection",
    "Engine",
    "FalsePositive",
    "FalsePositives",
    "Fault",
    "Join",
    "Leave",
    "LinkBytes",
    "LinkClass",
    "LossWindow",
    "MemberTraffic",
    "NetworkCounters",
    "NetworkModel",
    "OneWayLoss",
    "Partition",
    "Pause",
    "Restart",
    "RunResult",
    "Scenario",
    "Simulation",
    "Slow",
    "TrafficSummary",
    "ViewSample",
    "addr_of",
    "name_of",
    "run",
]
