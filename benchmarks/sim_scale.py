"""How fast the simulator runs large clusters: simulated member-seconds per wall second.

    .venv/bin/python -m benchmarks.sim_scale            # N = 100 and 1,000
    .venv/bin/python -m benchmarks.sim_scale --big      # and N = 10,000
    .venv/bin/python -m benchmarks.sim_scale --json     # one JSON object

Each size runs in a fresh child process (so its peak RSS is its own): LAN profile,
object mode, a converged start, one crash at 30 s, 100 simulated seconds. With
``--coordinates both`` each size also runs with Vivaldi coordinates off (the protocol
without Serf's network coordinates, as the simulator was before they came), to show
what they cost. Targets (issue 10): 1,000 members x 100 s starting by joining
(``--start join``) in <= 15 s wall; 10,000 x 100 s converged in <= 60 s and <= 12 GiB.

``--build pure|compiled|both`` runs the pure-Python core, the core compiled with mypyc
(``make compiled``; `make bench` builds it first), or each size with both, one after the
other; the default is both when a current compiled build exists, else pure.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from benchmarks._builds import BUILDS, child_env, compiled_is_current, running_build

#: Wall-clock targets by (members, start).
TARGET_WALL_S = {(1_000, "join"): 15.0, (10_000, "converged"): 60.0}
TARGET_RSS_MIB = {10_000: 12 * 1024}


def measure(
    nodes: int, duration_s: float, seed: int, mode: str, start: str, *, coordinates: bool = True
) -> dict[str, Any]:
    """Run one size in this process and return its figures."""
    import attrs

    from simulations import Crash, Scenario, Simulation
    from swim.core import Config

    scenario = Scenario(
        nodes=nodes, duration_s=duration_s, seed=seed, mode=mode,  # type: ignore[arg-type]
        start=start,  # type: ignore[arg-type]
        config=attrs.evolve(Config.lan(), coordinates=coordinates),
        faults=(Crash(member=nodes // 2, at=min(30.0, duration_s / 3)),),
    )
    began = time.perf_counter()
    cpu_began = time.process_time()
    sim = Simulation(scenario)
    setup_s = time.perf_counter() - began
    sim.run_until(duration_s)
    result = sim.result()
    total_s = time.perf_counter() - began
    cpu_s = time.process_time() - cpu_began
    (crash,) = [d for d in result.detections if d.kind == "crash"]
    return {
        "nodes": nodes,
        "duration_s": duration_s,
        "seed": seed,
        "mode": mode,
        "start": start,
        "coordinates": coordinates,
        "build": running_build(),
        "setup_s": round(setup_s, 3),
        "run_s": round(result.wall_s, 3),
        "wall_s": round(total_s, 3),
        # CPU seconds of the process: the figure to trust on a busy machine.
        "cpu_s": round(cpu_s, 3),
        "member_s_per_wall_s": round(nodes * duration_s / total_s, 1),
        "sim_events": result.sim_events,
        "sim_events_per_s": round(result.sim_events_per_s, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "first_suspected_s": crash.first_suspected_s,
        "first_failed_s": crash.first_failed_s,
        "all_know_s": crash.all_know_s,
        "false_positives": result.false_positives.total,
        "datagrams_out_per_period": round(result.traffic.datagrams_out_per_period_mean, 3),
        "bytes_out_per_period": round(result.traffic.bytes_out_per_period_mean, 1),
        "target_wall_s": TARGET_WALL_S.get((nodes, start)),
        "target_rss_mib": TARGET_RSS_MIB.get(nodes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also run N = 10,000")
    parser.add_argument("--nodes", type=int, action="append", help="sizes (overrides)")
    parser.add_argument("--duration", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=("object", "wire"), default="object")
    parser.add_argument("--start", choices=("converged", "join"), default="converged")
    parser.add_argument(
        "--coordinates", choices=("on", "off", "both"), default="on",
        help="Vivaldi coordinates on (the default profile), off, or each size both ways",
    )
    parser.add_argument(
        "--build", choices=(*BUILDS, "both"), default=None,
        help="the pure-Python core, the compiled one (make compiled), or both "
        "(default: both if a current compiled build exists, else pure)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (n,) = args.nodes
        print(json.dumps(measure(n, args.duration, args.seed, args.mode, args.start,
                                 coordinates=args.coordinates != "off")))
        return 0
    sizes = args.nodes or ([100, 1_000, 10_000] if args.big else [100, 1_000])
    ways = ("on", "off") if args.coordinates == "both" else (args.coordinates,)
    build = args.build or ("both" if compiled_is_current() else "pure")
    builds = [b for b in BUILDS if build in (b, "both")]
    rows = []
    for n in sizes:
        for way in ways:
            for each in builds:
                proc = subprocess.run(
                    [sys.executable, "-P", "-m", "benchmarks.sim_scale", "--child",
                     "--nodes", str(n), "--duration",
                     str(args.duration), "--seed", str(args.seed), "--mode", args.mode,
                     "--start", args.start, "--coordinates", way],
                    capture_output=True, text=True, check=True, env=child_env(each),
                )
                rows.append(json.loads(proc.stdout))
                if rows[-1]["build"] != each:
                    raise SystemExit(f"asked for the {each} build, ran {rows[-1]['build']}")
                if not args.json:
                    print(f"N={n} (coordinates {way}, {each}) done in {rows[-1]['wall_s']} s",
                          file=sys.stderr)
    if args.json:
        print(json.dumps({"benchmark": "sim_scale", "results": rows}, indent=2))
        return 0
    header = (f"{'N':>7} {'coords':>6} {'build':>8} {'setup s':>8} {'run s':>8} {'wall s':>8} "
              f"{'cpu s':>8} "
              f"{'member-s/s':>11} "
              f"{'events/s':>9} {'RSS MiB':>8} {'suspect s':>9} {'all know s':>10} target")
    print(header)
    for r in rows:
        target = r["target_wall_s"]
        verdict = "" if target is None else (
            f"<= {target:g} s: {'met' if r['wall_s'] <= target else 'MISSED'}")
        all_know = "-" if r["all_know_s"] is None else f"{r['all_know_s']:.1f}"
        suspect = "-" if r["first_suspected_s"] is None else f"{r['first_suspected_s']:.1f}"
        coords = "on" if r["coordinates"] else "off"
        print(f"{r['nodes']:>7} {coords:>6} {r['build']:>8} {r['setup_s']:>8.1f} "
              f"{r['run_s']:>8.1f} "
              f"{r['wall_s']:>8.1f} "
              f"{r['cpu_s']:>8.1f} "
              f"{r['member_s_per_wall_s']:>11,.0f} {r['sim_events_per_s']:>9,.0f} "
              f"{r['peak_rss_mib']:>8,.0f} {suspect:>9} {all_know:>10} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
