"""Cluster benchmark: N real `swim agent` processes on loopback.

Measures, for one cluster (LAN profile by default):

* start-up: from launching the joiners until every agent answers RPC;
* join convergence: from then until every agent sees all N members alive;
* CPU seconds per agent per minute and RSS per agent at steady state (no RPC polling
  during the window, so the figure is the protocol's own load);
* datagrams sent per agent per second at steady state;
* failure detection after SIGKILL of an agent: first suspicion, first observer to
  declare it failed, and all observers (from the agents' own event timestamps), over
  ``--trials`` crashes one after another (median, min, max);
* graceful-leave propagation: from the `leave` request until the first and all other
  agents record the member as left, over ``--trials`` leaves.

Run: ``python -m benchmarks.cluster_bench --agents 30`` (``--json PATH`` also writes the
figures as JSON). Loopback only; every agent is stopped at the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import signal
import statistics
import sys
import tempfile
import time
from typing import Any

import psutil  # type: ignore[import-untyped]
import trio

from swim.agent import rpc
from swim.agent.cluster import AgentProcess, ClusterError, LocalCluster, Observers
from swim.agent.output import Record
from swim.core.config import Config
from swim.core.timing import suspicion_timeout_min_s


async def _subscribe_all(observers: Observers, agents: list[AgentProcess], nursery: Any) -> None:
    for agent in agents:
        await nursery.start(observers.watch, agent)


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _datagrams_out(cluster: LocalCluster, agents: list[AgentProcess]) -> dict[str, int]:
    out = {}
    for agent in agents:
        info = await rpc.call(agent.rpc, {"cmd": "info"}, timeout_s=10.0)
        out[agent.name] = int(info["stats"].get("core.datagrams_out", 0))
    return out


def _summary(values: list[float]) -> Record:
    """median / min / max of `values` (None when empty)."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(values), "min": min(values), "max": max(values),
        "n": len(values),
    }


async def bench(
    count: int, profile: str, steady_s: float, trials: int, workdir: pathlib.Path
) -> Record:
    config = Config.profile(profile)
    results: Record = {
        "agents": count,
        "profile": profile,
        "cpus": psutil.cpu_count(),
        "trials": trials,
        # Lifeguard's floor on the suspicion timeout at this size: detection is about
        # one probe round (to the first suspicion) plus this.
        "suspicion_min_s": suspicion_timeout_min_s(
            config.suspicion_mult, count, config.probe_interval_s
        ),
    }
    async with LocalCluster.open(workdir, profile=profile) as cluster:
        agents = [cluster.define(f"n{i + 1}") for i in range(count)]
        await cluster.start(agents[0])
        launched = time.time()
        async with trio.open_nursery() as nursery:
            for agent in agents[1:]:
                nursery.start_soon(functools.partial(cluster.start, agent, join=[agents[0].bind]))
        ready = time.time()
        converged = await cluster.wait_converged(timeout_s=120.0, poll_s=0.1)
        results["startup_s"] = ready - launched
        results["join_convergence_s"] = converged - ready

        # Steady state: let the cluster settle, then measure with no RPC traffic.
        await trio.sleep(min(5.0, steady_s))
        pids = {a.name: a.pid for a in agents if a.pid is not None}
        sent_before = await _datagrams_out(cluster, agents)
        before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        t0 = time.monotonic()
        await trio.sleep(steady_s)
        elapsed = time.monotonic() - t0
        cpu = [(_cpu_seconds(pid) - before[name]) / elapsed * 60.0 for name, pid in pids.items()]
        rss = [psutil.Process(pid).memory_info().rss / 2**20 for pid in pids.values()]
        sent_after = await _datagrams_out(cluster, agents)
        rates = [(sent_after[n] - sent_before[n]) / elapsed for n in sent_before]
        results["steady_window_s"] = elapsed
        results["cpu_s_per_agent_per_min"] = {"mean": statistics.fmean(cpu), "max": max(cpu)}
        results["rss_mib_per_agent"] = {"mean": statistics.fmean(rss), "max": max(rss)}
        results["datagrams_out_per_agent_per_s"] = {
            "mean": statistics.fmean(rates), "max": max(rates)
        }

        # Crash `trials` members one after another (each once the previous one was
        # declared failed everywhere), then make `trials` others leave gracefully.
        victims = agents[-trials:]
        leavers = agents[-2 * trials : -trials]
        watched = agents[: -trials]
        observers = Observers()
        detection: dict[str, list[float]] = {"first_suspect_s": [], "first_failed_s": [],
                                             "all_failed_s": []}
        leave: dict[str, list[float]] = {"leave_call_s": [], "first_left_s": [],
                                         "all_left_s": []}
        incomplete = 0
        async with trio.open_nursery() as nursery:
            await _subscribe_all(observers, watched, nursery)
            for victim in victims:
                names = {a.name for a in watched}
                killed_at = cluster.kill(victim, signal.SIGKILL)
                failed = await observers.wait_for(
                    "failed", victim.name, killed_at, names, 180.0, strict=False
                )
                suspected = observers.first("suspect", victim.name, killed_at)
                if suspected:
                    detection["first_suspect_s"].append(min(suspected.values()) - killed_at)
                if failed:
                    detection["first_failed_s"].append(min(failed.values()) - killed_at)
                if names <= failed.keys():
                    detection["all_failed_s"].append(max(failed.values()) - killed_at)
                else:
                    incomplete += 1
            for leaver in leavers:
                watched = [a for a in watched if a is not leaver]
                others = {a.name for a in watched}
                left_at = time.time()
                await rpc.call(leaver.rpc, {"cmd": "leave"}, timeout_s=30.0)
                leave["leave_call_s"].append(time.time() - left_at)
                left = await observers.wait_for(
                    "left", leaver.name, left_at, others, 60.0, strict=False
                )
                if left:
                    leave["first_left_s"].append(min(left.values()) - left_at)
                if others <= left.keys():
                    leave["all_left_s"].append(max(left.values()) - left_at)
                else:
                    incomplete += 1
            nursery.cancel_scope.cancel()
        results["detection"] = {k: _summary(v) for k, v in detection.items()}
        results["leave"] = {k: _summary(v) for k, v in leave.items()}
        results["incomplete_trials"] = incomplete
    return results


def _fmt(value: Any, unit: str = "s") -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} {unit}".strip()


def _spread(summary: Record) -> str:
    if summary["median"] is None:
        return "n/a"
    return (
        f"{summary['median']:.2f} s  (min {summary['min']:.2f}, max {summary['max']:.2f}, "
        f"n={summary['n']})"
    )


def table(results: Record) -> str:
    """The figures as aligned text."""
    d, lv = results["detection"], results["leave"]
    cpu, rss = results["cpu_s_per_agent_per_min"], results["rss_mib_per_agent"]
    rate = results["datagrams_out_per_agent_per_s"]
    rows = [
        ("agents / profile / cpus",
         f"{results['agents']} / {results['profile']} / {results['cpus']}"),
        ("start-up (joiners answer RPC)", _fmt(results["startup_s"])),
        ("join convergence (all see all)", _fmt(results["join_convergence_s"])),
        ("CPU per agent per minute", f"mean {cpu['mean']:.2f} s, max {cpu['max']:.2f} s"),
        ("RSS per agent", f"mean {rss['mean']:.1f} MiB, max {rss['max']:.1f} MiB"),
        ("datagrams sent per agent per s", f"mean {rate['mean']:.1f}, max {rate['max']:.1f}"),
        ("suspicion timeout floor", _fmt(results["suspicion_min_s"])),
        ("detection: first suspicion", _spread(d["first_suspect_s"])),
        ("detection: first observer", _spread(d["first_failed_s"])),
        ("detection: all observers", _spread(d["all_failed_s"])),
        ("leave: request answered", _spread(lv["leave_call_s"])),
        ("leave: first observer", _spread(lv["first_left_s"])),
        ("leave: all observers", _spread(lv["all_left_s"])),
        ("trials not seen by every observer", str(results["incomplete_trials"])),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--agents", type=int, default=30, help="cluster size (default 30)")
    parser.add_argument("--profile", choices=("lan", "local", "wan"), default="lan")
    parser.add_argument(
        "--steady-s", type=float, default=30.0, help="CPU measurement window (default 30 s)"
    )
    parser.add_argument(
        "--trials", type=int, default=3,
        help="crashes (and graceful leaves) to time, one after another (default 3)",
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 3 <= args.agents <= 200:
        parser.error("--agents must be within 3..200")
    if args.trials < 1 or 2 * args.trials > args.agents - 2:
        parser.error("--trials must be at least 1 and leave 2 agents after 2*trials")
    with tempfile.TemporaryDirectory(prefix="swim-bench-") as tmp:
        try:
            results = trio.run(
                bench, args.agents, args.profile, args.steady_s, args.trials, pathlib.Path(tmp)
            )
        except ClusterError as exc:
            print(f"cluster_bench: {exc}", file=sys.stderr)
            return 1
    print(f"cluster benchmark: {args.agents} agents on loopback, {args.profile} profile")
    print(table(results))
    print(json.dumps(results, sort_keys=True))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
