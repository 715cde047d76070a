"""Flip-flop: SWIM + Lifeguard against the stable-view mode, same seeds (issue 11).

    .venv/bin/python -m benchmarks.stable_views                   # N = 200, f = 2, 200 s
    .venv/bin/python -m benchmarks.stable_views --nodes 60 --duration 160 --seeds 1 2 3
    .venv/bin/python -m benchmarks.stable_views --json

f members (spread evenly over the member indices, the same in every run) drop all
ingress for 20 s, get it back for 20 s, over and over from t = 20 s to the end of the run
(`simulations.flipflop`). A converged LAN cluster, simulated on the engine; each seed
runs with ``Config.lan()``, with ``Config.stable_views()`` and with the stable-view mode
at the LAN protocol period (``stable-1s``, see `variants`). Printed per
mode and seed: the time from the onset to the first moment every healthy member's view
is exactly the N - f healthy members; healthy members ever missing from a healthy view;
over the settled window (from 60 s after the onset to the end) the distinct view sizes
healthy members held, the share of 1-s samples at which all healthy views were
identical and at which all were exactly N - f; the failure events (SWIM: MemberFailed
at every member; stable: members removed by ViewChanged at every member); view changes
per healthy member; and datagrams, messages and bytes sent per member per second.

Then (``--crashes C``, default 10; 0 skips it) C members crash at the same instant
(`simulations.mass_crash`), per mode and seed: the time until every live member's view
is exactly the live members, the view changes each live member went through (SWIM has
none: its views change one failure at a time), and the failure events.

With ``--lossy P`` (off by default) the f members instead lose a share P of every
datagram to and from them from t = 20 s on (Rapid's 80 % loss on 1 % of members:
``--lossy 0.8``), measured as the flip-flop is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import attrs

from simulations.flipflop import FlipFlopResult, LossyMembers, run_flip_flop
from simulations.mass_crash import MassCrashResult, run_mass_crash
from simulations.stable_experiments import flappers_for, variants

_COLUMNS = (
    ("mode", "mode", "{}"),
    ("seed", "seed", "{}"),
    ("N->N-f (s)", "transition_s", "{}"),
    ("healthy removed", "healthy_removed", "{}"),
    ("sizes (settled)", "view_sizes_settled", "{}"),
    ("identical", "identical_settled", "{:.0%}"),
    ("all at N-f", "at_target_settled", "{:.0%}"),
    ("failure events", "failure_events", "{}"),
    ("view changes", "view_changes_max", "{}"),
    ("dgrams/m/s", "datagrams_per_member_s", "{:.2f}"),
    ("msgs/m/s", "messages_per_member_s", "{:.2f}"),
    ("bytes/m/s", "bytes_per_member_s", "{:.0f}"),
    ("wall (s)", "wall_s", "{:.1f}"),
)


_CRASH_COLUMNS = (
    ("mode", "mode", "{}"),
    ("seed", "seed", "{}"),
    ("all removed (s)", "all_removed_s", "{}"),
    ("live removed", "live_removed", "{}"),
    ("view changes (min)", "view_changes_min", "{}"),
    ("(max)", "view_changes_max", "{}"),
    ("failure events", "failure_events", "{}"),
    ("wall (s)", "wall_s", "{:.1f}"),
)


def table(results: Sequence[object],
          columns: tuple[tuple[str, str, str], ...] = _COLUMNS) -> str:
    """`results` (attrs values) as a text table of `columns` (head, field, format)."""
    rows = [[fmt.format(getattr(r, field)) for _, field, fmt in columns] for r in results]
    heads = [head for head, _, _ in columns]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--flappers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=200.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--crashes", type=int, default=10)
    parser.add_argument("--lossy", type=float, default=0.0,
                        help="also run the f members at this loss (0 < P <= 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 < args.flappers < args.nodes - 1:
        parser.error("--flappers must leave at least two healthy members")
    if args.duration > 3600:
        parser.error("--duration is bounded to 3600 simulated seconds")
    flappers = flappers_for(args.nodes, args.flappers)
    modes = variants()
    results = []
    for seed in args.seeds:
        for label, config in modes.items():
            results.append(attrs.evolve(run_flip_flop(
                config, nodes=args.nodes, flappers=flappers, seed=seed,
                duration_s=args.duration,
            ), mode=label))
            if not args.json:
                print(f"  ran {label} seed {seed}: {results[-1].wall_s:.1f} s",
                      file=sys.stderr)
    lossy: list[FlipFlopResult] = []
    if args.lossy:
        fault = LossyMembers(members=tuple(flappers), at=20.0, loss=args.lossy)
        for seed in args.seeds:
            for label, config in modes.items():
                lossy.append(attrs.evolve(run_flip_flop(
                    config, nodes=args.nodes, flappers=flappers, seed=seed,
                    duration_s=args.duration, fault=fault,
                ), mode=label))
    crashes: list[MassCrashResult] = []
    if args.crashes:
        for seed in args.seeds:
            for label, config in modes.items():
                crashes.append(attrs.evolve(run_mass_crash(
                    config, nodes=args.nodes, crashes=args.crashes, seed=seed,
                ), mode=label))
    if args.json:
        print(json.dumps({"flip_flop": [r.row() for r in results],
                          "lossy": [r.row() for r in lossy],
                          "mass_crash": [r.row() for r in crashes]}, indent=2))
        return 0
    print(f"flip-flop: N = {args.nodes}, flappers {flappers} (20 s without ingress, 20 s "
          f"with, from t = 20 s), {args.duration:.0f} s simulated, LAN; settled window "
          f"from t = 80 s")
    print(table(results))
    if lossy:
        print(f"\n{args.lossy:.0%} loss to and from {flappers} from t = 20 s:")
        print(table(lossy))
    if crashes:
        print(f"\n{args.crashes} simultaneous crashes at t = 10 s, N = {args.nodes}, LAN:")
        print(table(crashes, _CRASH_COLUMNS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
