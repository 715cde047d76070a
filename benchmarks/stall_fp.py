"""False positives under lock-step stalls: the Lifeguard paper's interval experiment.

    .venv/bin/python benchmarks/stall_fp.py                      # N = 64, C = 8, a small grid
    .venv/bin/python benchmarks/stall_fp.py --nodes 128 --stalled 8 16 32 \\
        --stall 4.096 8.192 16.384 --interval 1 --seeds 1 2 3 --json

C members (non-seeds, drawn from the seed) are stalled together (`Stall`: SIGSTOP-like,
arrivals queued, overdue timers fired on resume) for D seconds, then run for I seconds,
over and over from a sixth of the run to its end; `Config.paper_swim()` (alpha 5,
beta 1, no Lifeguard) against `Config.paper_lifeguard()` (alpha 5, beta 6, K 3), same
seeds. Reported per configuration, summed over the grid: the paper's FP (declarations
about healthy members, once per raiser) and FP- (those raised by healthy members), every
declaration about a live member, the messages and bytes sent, and wall time.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from simulations import Stall, grid, sweep
from simulations.experiments import stall_scenario
from swim.core import Config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--stalled", type=int, nargs="+", default=[8], help="C values")
    parser.add_argument("--stall", type=float, nargs="+", default=[4.0, 12.0],
                        help="D values (seconds stalled)")
    parser.add_argument("--interval", type=float, nargs="+", default=[1.0],
                        help="I values (seconds running between stalls)")
    parser.add_argument("--modes", nargs="+", choices=("process", "input"),
                        default=["process", "input"],
                        help="process: SIGSTOP-like; input: only message processing stops")
    parser.add_argument("--duration", type=float, default=240.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    variants = {"swim": Config.paper_swim(), "lifeguard": Config.paper_lifeguard()}
    points = []
    cells = [(m, c, d, i) for m in args.modes for c in args.stalled for d in args.stall
             for i in args.interval]
    for m, c, d, i in cells:
        base = stall_scenario(args.nodes, c, d, i, duration_s=args.duration, mode=m)
        points += grid(base, variants, seeds=args.seeds)
    began = time.perf_counter()
    table = sweep(points)
    wall = time.perf_counter() - began
    rows: list[dict[str, Any]] = []
    for point, row in zip(points, table.rows, strict=True):
        (stall,) = point.scenario.faults
        assert isinstance(stall, Stall)
        rows.append({"variant": row["variant"], "mode": stall.mode, "seed": row["seed"],
                     "C": len(stall.members),
                     "D": stall.duration_s, "I": stall.interval_s, "fp": row["fp"],
                     "fp_minus": row["fp_minus"], "raised": row["failures_raised"],
                     "messages": row["total_messages"], "bytes": row["total_bytes"],
                     "wall_s": round(row["wall_s"], 2)})
    keys = ("fp", "fp_minus", "raised", "messages", "bytes", "wall_s")
    totals: dict[str, dict[str, Any]] = {}
    ratios: dict[str, dict[str, float | None]] = {}
    for m in args.modes:
        for variant in variants:
            mine = [r for r in rows if r["variant"] == variant and r["mode"] == m]
            totals[f"{m}/{variant}"] = {k: sum(r[k] for r in mine) for k in keys}
        swim, lifeguard = totals[f"{m}/swim"], totals[f"{m}/lifeguard"]
        ratios[m] = {k: (lifeguard[k] / swim[k] if swim[k] else None)
                     for k in ("fp", "fp_minus", "messages", "bytes")}
    out = {"nodes": args.nodes, "duration_s": args.duration, "seeds": args.seeds,
           "rows": rows, "totals": totals, "lifeguard_over_swim": ratios,
           "wall_s": round(wall, 1)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"N = {args.nodes}, {args.duration:g} s simulated per run, seeds {args.seeds}, "
          f"{len(points)} runs in {wall:.1f} s wall")
    print(f"{'mode':<9}{'variant':<10}{'C':>4}{'D':>8}{'I':>6}{'seed':>6}{'FP':>7}{'FP-':>6}"
          f"{'raised':>8}{'messages':>11}{'bytes':>12}")
    for r in rows:
        print(f"{r['mode']:<9}{r['variant']:<10}{r['C']:>4}{r['D']:>8g}{r['I']:>6g}{r['seed']:>6}"
              f"{r['fp']:>7}{r['fp_minus']:>6}{r['raised']:>8}{r['messages']:>11}"
              f"{r['bytes']:>12}")
    for name, t in totals.items():
        print(f"total {name:<18} FP {t['fp']}, FP- {t['fp_minus']}, raised {t['raised']}, "
              f"messages {t['messages']}, bytes {t['bytes']}")
    for m, ratio in ratios.items():
        print(f"{m}: lifeguard / swim: " + ", ".join(
            f"{k} {'n/a' if v is None else f'{v:.1%}'}" for k, v in ratio.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
