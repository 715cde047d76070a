"""Mass joins in the stable-view mode: how long until one view holds everyone (issue 11).

    .venv/bin/python -m benchmarks.stable_joins                       # 10 + 50, 30 + 50
    .venv/bin/python -m benchmarks.stable_joins --nodes 100 --joiners 50 --seeds 1 2
    .venv/bin/python -m benchmarks.stable_joins --json

A converged cluster of N members (``Config.stable_views()``, LAN) takes J joiners
started at the same instant (t = 10 s), each joining through member 0
(`simulations.mass_crash.run_mass_join`). Printed per size and seed: the time from the
joins until every member, old and new, holds the view of all N + J; the view changes
each old member went through (1: every joiner admitted in one change); datagrams and
bytes sent per member per second over the 30 s from the joins.

Each joiner needs H of its K temporary observers to vouch for it; an observer in a
small cluster observes most of the joiners, so without admission pings (see
`swim.core.stable.views`) the join waited for each observer to reach every joiner in
its probe rotation, one per protocol period.
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks.stable_views import table
from simulations.mass_crash import run_mass_join
from swim.core import Config

_COLUMNS = (
    ("nodes", "nodes", "{}"),
    ("joiners", "joiners", "{}"),
    ("seed", "seed", "{}"),
    ("all joined (s)", "all_joined_s", "{}"),
    ("view changes (min)", "view_changes_min", "{}"),
    ("(max)", "view_changes_max", "{}"),
    ("dgrams/m/s", "datagrams_per_member_s", "{:.2f}"),
    ("bytes/m/s", "bytes_per_member_s", "{:.0f}"),
    ("wall (s)", "wall_s", "{:.1f}"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--joiners", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=float, default=120.0,
                        help="simulated seconds after the joins before giving up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if min(args.nodes) < 1 or args.joiners < 1:
        parser.error("--nodes and --joiners must be >= 1")
    if not 0 < args.limit <= 600:
        parser.error("--limit is bounded to 600 simulated seconds")
    results = []
    for nodes in args.nodes:
        for seed in args.seeds:
            results.append(run_mass_join(Config.stable_views(), nodes=nodes,
                                         joiners=args.joiners, seed=seed,
                                         limit_s=args.limit))
            if not args.json:
                print(f"  ran {nodes} + {args.joiners} seed {seed}: "
                      f"{results[-1].wall_s:.1f} s", file=sys.stderr)
    if args.json:
        print(json.dumps([r.row() for r in results], indent=2))
        return 0
    print(f"mass join: J = {args.joiners} joiners at t = 10 s into N converged members, "
          f"stable-view mode, LAN")
    print(table(results, _COLUMNS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
