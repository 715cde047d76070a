"""Cut-detection conflicts (Rapid, ATC 2018, Fig. 11): how often members propose
different cuts for the same correlated failure, by H, L and the number failed F.

    .venv/bin/python -m benchmarks.stable_cut_conflicts          # N = 1000, K = 10
    .venv/bin/python -m benchmarks.stable_cut_conflicts --trials 20 --receivers 100 --json

Pure cut detection (`swim.core.stable.CutDetector`), no network: in a configuration of
N members, F random members fail at once. Their live observers each send one alert per
ring (a failed observer sends nothing; the implicit-alert rule stands in for it).
Every receiving member hears every alert once, in its own random order (independent
exponential delays), and proposes the first cut its detector allows. A receiver
*conflicts* when that cut is not exactly the F failed members. Printed per (H, L, F):
the share of receivers that conflicted, and the share of trials in which at least one
did (then the fast path cannot decide on its own). K = 10; H in 6..9, L in 1..4,
F in 2, 4, 8, 16 by default.
"""

from __future__ import annotations

import argparse
import json
import time

from simulations.stable_experiments import conflict_grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--h", type=int, nargs="+", default=[6, 7, 8, 9])
    parser.add_argument("--l", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--failed", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--receivers", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.trials * args.receivers > 100_000:
        parser.error("--trials x --receivers is bounded to 100000")
    started = time.perf_counter()
    rows = conflict_grid(nodes=args.nodes, k=args.k, hs=args.h, ls=args.l, fs=args.failed,
                         trials=args.trials, receivers=args.receivers, seed=args.seed)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"cut-detection conflicts: N = {args.nodes}, K = {args.k}, {args.trials} trials x "
          f"{args.receivers} receivers per cell, seed {args.seed} "
          f"({time.perf_counter() - started:.1f} s)")
    fs = args.failed
    print("  H  L  " + "  ".join(f"F={f:<2} recv/trial" for f in fs))
    for h in args.h:
        for low in args.l:
            if low > h:
                continue
            cells = [r for r in rows if r["h"] == h and r["l"] == low]
            text = "  ".join(
                f"{r['receivers_conflicting']:>6.1%}/{r['trials_with_conflict']:<5.0%}"
                for r in cells
            )
            print(f"  {h}  {low}  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
