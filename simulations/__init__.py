"""Deterministic discrete-event simulation of SWIM + Lifeguard clusters.

The simulator drives the real protocol core (`swim.core.Core`, the code production runs)
in virtual time: one seeded event heap, a network model with named options, scheduled
faults, and incremental metrics. The same seed gives the same trace.

Public API:

* `Scenario` (a frozen, picklable description of a run) and `run` (run it, get a
  `RunResult`); `Simulation` for step-by-step control.
* Faults: `Crash`, `Restart`, `Leave`, `Join`, `Pause`, `Stall`, `Slow`, `Churn`,
  `Partition`, `Clog`, `LossWindow`; `anomalous_members` (whom the metrics treat as
  anomalous). `simulations.real_stall` plays a `Stall` on real processes.
* The network: `NetworkModel`, `LinkClass`, `OneWayLoss`.
* Results: `RunResult` and its parts (`Detection`, `FalsePositives`, `Convergence`,
  `ViewSample`, `MemberTraffic`, `TrafficSummary`, `NetworkCounters`, `LinkBytes`).
* `Engine`, the heap itself, for drivers that need more than scenarios.
* Sweeps: `grid` (variants x seeds) and `sweep` (run them on any
  `concurrent.futures.Executor`: a local process pool by default, or a Dask cluster's
  executor), giving a `SweepResult` table.
* Trio mode: `run_trio` runs real `swim.Node` objects over the in-memory transport under
  trio's MockClock, to check the runtime against the engine at small N.
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
    Stall,
    anomalous_members,
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
from simulations.sweep import (
    InlineExecutor,
    SweepError,
    SweepFailure,
    SweepPoint,
    SweepResult,
    grid,
    sweep,
)
from simulations.trio_mode import TrioResult, run_nodes, run_trio

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
    "InlineExecutor",
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
    "Stall",
    "SweepError",
    "SweepFailure",
    "SweepPoint",
    "SweepResult",
    "TrafficSummary",
    "TrioResult",
    "ViewSample",
    "addr_of",
    "anomalous_members",
    "grid",
    "name_of",
    "run",
    "run_nodes",
    "run_trio",
    "sweep",
]
