"""Cluster benchmark: N real `swim agent` processes on loopback.

Measures, for one cluster (LAN profile by default):

* start-up: from launching the joiners until every agent answers RPC;
* join convergence: from then until every agent sees all N members alive;
* CPU seconds per agent per minute and RSS per agent at steady state (no RPC polling
  during the window, so the figure is the protocol's own load);
* failure detection after SIGKILL of one agent: first suspicion, first observer to
  declare it failed, and all N-1 observers (from the agents' own event timestamps);
* graceful-leave propagation: from the `leave` request until the first and all N-2
  others record the member as left.

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
from swim.agent.cluster import AgentProcess, ClusterError, LocalCluster
from swim.agent.output import Record


class Observers:
    """Monitor streams on several agents, collecting (observer, record) pairs."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Record]] = []

    async def watch(self, agent: AgentProcess) -> None:
        try:
            async with rpc.connect(agent.rpc) as conn:
                async for record in conn.events():
                    self.records.append((agent.name, record))
        except rpc.RpcError:
            pass  # the agent went away

    def first(self, kind: str, member: str, after: float) -> dict[str, float]:
        """{observer: ts of its first `kind` record about `member` at or after `after`}."""
        out: dict[str, float] = {}
        for observer, record in self.records:
            if record.get("event") == kind and record.get("member") == member:
                ts = float(record["ts"])
                if ts >= after and observer not in out:
                    out[observer] = ts
        return out

    async def wait_all(
        self, kind: str, member: str, after: float, observers: set[str], timeout_s: float
    ) -> dict[str, float]:
        with trio.move_on_after(timeout_s):
            while not observers <= self.first(kind, member, after).keys():
                await trio.sleep(0.05)
        return self.first(kind, member, after)


async def _subscribe_all(observers: Observers, agents: list[AgentProcess], nursery: Any) -> None:
    for agent in agents:
        nursery.start_soon(observers.watch, agent)
    # A monitor is subscribed once the agent answered it; give the connections a moment.
    await trio.sleep(1.0)


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def bench(count: int, profile: str, steady_s: float, workdir: pathlib.Path) -> Record:
    results: Record = {"agents": count, "profile": profile, "cpus": psutil.cpu_count()}
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
        before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        t0 = time.monotonic()
        await trio.sleep(steady_s)
        elapsed = time.monotonic() - t0
        cpu = [(_cpu_seconds(pid) - before[name]) / elapsed * 60.0 for name, pid in pids.items()]
        rss = [psutil.Process(pid).memory_info().rss / 2**20 for pid in pids.values()]
        results["steady_window_s"] = elapsed
        results["cpu_s_per_agent_per_min"] = {
            "mean": statistics.fmean(cpu), "max": max(cpu)
        }
        results["rss_mib_per_agent"] = {"mean": statistics.fmean(rss), "max": max(rss)}

        victim, leaver = agents[-1], agents[-2]
        observers = Observers()
        async with trio.open_nursery() as nursery:
            await _subscribe_all(observers, agents[:-1], nursery)
            names = {a.name for a in agents[:-1]}

            killed_at = cluster.kill(victim, signal.SIGKILL)
            failed = await observers.wait_all("failed", victim.name, killed_at, names, 180.0)
            suspected = observers.first("suspect", victim.name, killed_at)
            results["detection"] = {
                "first_suspect_s": min(suspected.values(), default=killed_at) - killed_at
                if suspected else None,
                "first_failed_s": min(failed.values()) - killed_at if failed else None,
                "all_failed_s": max(failed.values()) - killed_at
                if names <= failed.keys() else None,
                "observers_reporting": len(failed),
                "observers": len(names),
            }

            others = names - {leaver.name}
            left_at = time.time()
            await rpc.call(leaver.rpc, {"cmd": "leave"}, timeout_s=30.0)
            answered = time.time()
            left = await observers.wait_all("left", leaver.name, left_at, others, 60.0)
            results["leave"] = {
                "leave_call_s": answered - left_at,
                "first_left_s": min(left.values()) - left_at if left else None,
                "all_left_s": max(left.values()) - left_at if others <= left.keys() else None,
                "observers_reporting": len(left),
                "observers": len(others),
            }
            nursery.cancel_scope.cancel()
    return results


def _fmt(value: Any, unit: str = "s") -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} {unit}".strip()


def table(results: Record) -> str:
    """The figures as aligned text."""
    d, lv = results["detection"], results["leave"]
    rows = [
        ("agents / profile / cpus", f"{results['agents']} / {results['profile']} / "
                                    f"{results['cpus']}"),
        ("start-up (joiners answer RPC)", _fmt(results["startup_s"])),
        ("join convergence (all see all)", _fmt(results["join_convergence_s"])),
        ("CPU per agent per minute (mean/max)",
         f"{results['cpu_s_per_agent_per_min']['mean']:.2f} / "
         f"{results['cpu_s_per_agent_per_min']['max']:.2f} s"),
        ("RSS per agent (mean/max)",
         f"{results['rss_mib_per_agent']['mean']:.1f} / "
         f"{results['rss_mib_per_agent']['max']:.1f} MiB"),
        ("detection: first suspicion", _fmt(d["first_suspect_s"])),
        ("detection: first observer failed", _fmt(d["first_failed_s"])),
        ("detection: all observers failed",
         _fmt(d["all_failed_s"]) + f" ({d['observers_reporting']}/{d['observers']})"),
        ("leave: request answered", _fmt(lv["leave_call_s"])),
        ("leave: first observer", _fmt(lv["first_left_s"])),
        ("leave: all observers",
         _fmt(lv["all_left_s"]) + f" ({lv['observers_reporting']}/{lv['observers']})"),
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
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 3 <= args.agents <= 200:
        parser.error("--agents must be within 3..200")
    with tempfile.TemporaryDirectory(prefix="swim-bench-") as tmp:
        try:
            results = trio.run(bench, args.agents, args.profile, args.steady_s, pathlib.Path(tmp))
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
