"""How well Vivaldi coordinates predict RTTs in the simulator (issue 9's figure).

    .venv/bin/python -m benchmarks.vivaldi_error [--nodes 64] [--zones 4] [--seed 3]

A converged cluster of members spread over zones: LAN links inside a zone (0.2 ms +
exponential jitter of mean 0.3 ms one way), WAN links between zones (40 ms + uniform
jitter of mean 2 ms one way). After the run every member's coordinate predicts the RTT
to every other member, most of which it never probed itself; the figure is the relative
error |estimate - true mean RTT| / true, for LAN and WAN pairs, with the seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from simulations import LinkClass, NetworkModel, Scenario, Simulation
from swim.core.vivaldi import estimate_rtt_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--zones", type=int, default=4)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    wan = LinkClass(name="wan", delay_min_s=0.040, jitter_s=0.002, jitter="uniform")
    network = NetworkModel(link=LinkClass.lan(), zones=args.zones, cross_zone=wan)
    sc = Scenario(nodes=args.nodes, duration_s=args.duration, seed=args.seed,
                  start="converged", network=network)
    began = time.perf_counter()
    sim = Simulation(sc)
    sim.run_until(sc.duration_s)
    wall = time.perf_counter() - began
    errors: dict[str, list[float]] = {"lan": [], "wan": []}
    for i in range(args.nodes):
        a = sim.engine.core(i)
        for j in range(i + 1, args.nodes):
            b = sim.engine.core(j)
            assert a is not None and b is not None
            link = network.link_between(i, j)
            true = 2 * link.mean_delay_s()
            estimate = estimate_rtt_s(a.coordinate, b.coordinate)
            errors["wan" if link.name == "wan" else "lan"].append(abs(estimate - true) / true)
    report = {
        "nodes": args.nodes, "zones": args.zones, "duration_s": args.duration,
        "seed": args.seed, "wall_s": round(wall, 1),
        **{
            f"{kind}_{stat}": round(value, 3)
            for kind, values in errors.items() if values
            for stat, value in (
                ("median_rel_error", statistics.median(values)),
                ("p90_rel_error", statistics.quantiles(values, n=10)[-1]),
                ("pairs", float(len(values))),
            )
        },
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"Vivaldi in the simulator: {args.nodes} members in {args.zones} zones, "
          f"{args.duration:g} s, seed {args.seed} ({wall:.1f} s wall)")
    for kind, values in errors.items():
        if values:
            p90 = statistics.quantiles(values, n=10)[-1]
            print(f"  {kind} pairs ({len(values)}): median relative RTT error "
                  f"{statistics.median(values):.1%}, p90 {p90:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
