"""Time to detect a crash at N = 1,000, over at least 200 crashes, in the simulator.

    .venv/bin/python benchmarks/sim_detection.py            # 40 runs x 5 crashes
    .venv/bin/python benchmarks/sim_detection.py --json

Each run: LAN profile, object mode, a converged start of `--nodes` members, and five
crashes of distinct members 15 s apart from t = 10 s, in a run long enough for the
last one to be known everywhere. The runs go through `simulations.sweep` on a local
process pool. Reported: the mean (and spread) of the time from a crash to its first
suspicion, to its first "failed", and until every live member holds it failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

CRASHES_PER_RUN = 5
CRASH_SPACING_S = 15.0
FIRST_CRASH_S = 10.0


def scenario_points(nodes: int, runs: int) -> list[Any]:
    """One sweep point per run, each with its own seed and crashed members."""
    from simulations import Crash, Scenario
    from simulations.sweep import SweepPoint
    from swim import Config

    last = FIRST_CRASH_S + CRASH_SPACING_S * (CRASHES_PER_RUN - 1)
    points = []
    for seed in range(runs):
        crashes = tuple(
            Crash(member=(seed * 97 + k * 193) % nodes, at=FIRST_CRASH_S + k * CRASH_SPACING_S)
            for k in range(CRASHES_PER_RUN)
        )
        scenario = Scenario(
            nodes=nodes, duration_s=last + 40.0, seed=seed, config=Config.lan(),
            start="converged", faults=crashes,
        )
        points.append(SweepPoint(variant="lan", scenario=scenario))
    return points


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "mean_s": statistics.mean(values),
        "median_s": statistics.median(values),
        "p95_s": ordered[int(0.95 * (len(ordered) - 1))],
        "max_s": ordered[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=40, help="runs of 5 crashes each")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from simulations import sweep

    began = time.perf_counter()
    table = sweep(scenario_points(args.nodes, args.runs), keep_results=True)
    wall_s = time.perf_counter() - began
    assert table.results is not None
    detections = [d for result in table.results if result for d in result.detections]
    missed = [d for d in detections if d.all_know_s is None]
    known = [d for d in detections if d.all_know_s is not None]
    report = {
        "nodes": args.nodes,
        "runs": args.runs,
        "seeds": list(range(args.runs)),
        "crashes": len(detections),
        "not_known_to_all": len(missed),
        "first_suspected": spread(
            [d.first_suspected_s for d in known if d.first_suspected_s is not None]
        ),
        "first_failed": spread([d.first_failed_s for d in known if d.first_failed_s is not None]),
        "all_know": spread([d.all_know_s for d in known if d.all_know_s is not None]),
        "false_positives": sum(r.false_positives.total for r in table.results if r),
        "wall_s": wall_s,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"N = {args.nodes}, {len(detections)} crashes over {args.runs} seeded runs "
          f"(LAN profile), {wall_s:.0f} s wall")
    print(f"{'':>16} {'mean':>7} {'median':>7} {'p95':>7} {'max':>7}")
    for key in ("first_suspected", "first_failed", "all_know"):
        s = report[key]
        print(f"{key:>16} {s['mean_s']:6.2f}s {s['median_s']:6.2f}s {s['p95_s']:6.2f}s "
              f"{s['max_s']:6.2f}s")
    print(f"not known to all: {len(missed)}; false positives: {report['false_positives']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
