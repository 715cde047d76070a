"""Idle CPU per agent, two revisions side by side, and the bare trio floor.

For each round, a cluster of real agents (LAN profile, loopback) is started from the
"before" revision, left to settle and measured over a quiet window, then stopped, and
the same for the "after" revision; rounds alternate the two so that a change in the
machine's load falls on both. Each revision is exported with ``git archive`` into a
temporary directory and its agents run from there (``PYTHONPATH``), so the figures do
not depend on uncommitted edits in the working tree.

CPU is read from ``/proc/PID/task/*/schedstat`` (nanoseconds on the CPU) rather than the
clock-tick counters, which over a 30 s window cannot tell 0.14 from 0.16 s/min. The
figure per round is the median over the agents; the report gives the median over rounds
and the ratio after / before.

The floor: one trio process that does an idle member's I/O and nothing else (per second
one timer wake-up, two datagrams out, two in, over loopback UDP), the least a trio
member of this protocol can cost on the machine.

Run: ``python -m benchmarks.idle_cpu --before REV [--after REV] [--agents 30]
[--window 40] [--rounds 2] [--encrypt] [--json]``. Loopback only; every agent is stopped
at the end of each cluster.

Measured (2 shared CPUs under other work; 30 agents, 40 s windows): the runtime flushing
network inputs in the task that took them in (commits 0d82460, 4fd2ae4), against the same
tree with the previous ``swim/runtime/node.py`` (a throw-away commit of 4fd2ae4's tree
with b0dc8dc's node.py): plaintext 0.179 -> 0.150 s per agent per minute (3 rounds:
0.179/0.155, 0.159/0.150, 0.181/0.145; ratio 0.84), sealed 0.186 -> 0.157 (2 rounds:
0.190/0.158, 0.182/0.156; ratio 0.84). The trio floor measured 0.046-0.059 in the same
runs, so the goal of half of Serf's 0.107 is what trio alone costs here. Where the rest
goes (10 agents, 30 s, experiments on throw-away trees): the core's own protocol work is
about 0.015 (the core tests' router, no I/O); push-pull over TCP about 0.025 (the same
cluster with push-pull off: 0.143 -> 0.118); the transport's yield on every send about
0.008 (a send that does not checkpoint when the socket takes the datagram: 0.139 ->
0.131); the remainder is trio's loop and the transport's channel hop per datagram.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import pathlib
import random
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

import psutil  # type: ignore[import-untyped]
import trio

from benchmarks.cluster_bench import _cpu_seconds
from swim.agent.cluster import AgentProcess, LocalCluster
from swim.security.keyring import Keyring, encode_key

SERF_CPU_S_PER_MIN = 0.107
#: The window's upper bound: these runs share the machine.
MAX_WINDOW_S = 60.0


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid`'s live threads in seconds, to the nanosecond where the kernel
    has schedstat; the clock-tick counters otherwise."""
    paths = glob.glob(f"/proc/{pid}/task/*/schedstat")
    if not paths:
        return _cpu_seconds(pid)
    total = 0
    for path in paths:
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def export(rev: str, dest: pathlib.Path) -> str:
    """Write revision `rev` of this repository into `dest`; its full commit id."""
    root = pathlib.Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", commit], check=True, capture_output=True
    ).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return commit


def _check_tree(tree: pathlib.Path) -> None:
    """The agents' interpreter, with our environment, imports swim from `tree`."""
    found = subprocess.run(
        [sys.executable, "-c", "import swim; print(swim.__file__)"],
        check=True, capture_output=True, text=True, env=dict(os.environ), cwd=os.getcwd(),
    ).stdout.strip()
    if not pathlib.Path(found).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"agents would import swim from {found}, not from {tree}")


async def _start_joined(cluster: LocalCluster, agent: AgentProcess, seed: AgentProcess) -> None:
    await cluster.start(agent, join=[seed.bind])


async def start_settled(
    cluster: LocalCluster, count: int, extra_args: list[str]
) -> tuple[list[AgentProcess], float]:
    """Start `count` agents (``n1``... joining through ``n1``), wait until every one sees
    all alive and 5 s more; the agents and the seconds convergence took."""
    agents = [cluster.define(f"n{i + 1}", extra_args=extra_args) for i in range(count)]
    await cluster.start(agents[0])
    async with trio.open_nursery() as nursery:
        for agent in agents[1:]:
            nursery.start_soon(_start_joined, cluster, agent, agents[0])
    converged = await cluster.wait_converged(timeout_s=120.0, poll_s=0.2)
    await trio.sleep(5.0)
    return agents, converged


async def measure(tree: pathlib.Path, count: int, window_s: float, key: str | None,
                  workdir: pathlib.Path) -> list[float]:
    """CPU seconds per minute of each of `count` idle agents run from `tree`."""
    os.environ["PYTHONPATH"] = str(tree)
    _check_tree(tree)
    extra = ["--encrypt", key] if key else []
    async with LocalCluster.open(workdir, profile="lan") as cluster:
        agents, _ = await start_settled(cluster, count, extra)
        pids = [a.pid for a in agents if a.pid is not None]
        before = [cpu_seconds(pid) for pid in pids]
        t0 = time.monotonic()
        await trio.sleep(window_s)
        elapsed = time.monotonic() - t0
        return [(cpu_seconds(pid) - b) / elapsed * 60.0 for pid, b in zip(pids, before,
                                                                           strict=True)]


async def trio_floor(duration_s: float) -> float:
    """CPU s/min of a trio process doing one idle member's I/O and nothing else."""
    a = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        await a.bind(("127.0.0.1", 0))
        await b.bind(("127.0.0.1", 0))

        async def answer() -> None:  # the pings we receive, answered with an ack
            while True:
                _, addr = await b.recvfrom(2048)
                await b.sendto(b"a" * 80, addr)

        async def take_acks() -> None:
            while True:
                await a.recvfrom(2048)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer)
            nursery.start_soon(take_acks)
            t0 = time.process_time()
            for _ in range(round(duration_s)):
                await trio.sleep(1.0)
                await a.sendto(b"p" * 80, b.getsockname())
            used = time.process_time() - t0
            nursery.cancel_scope.cancel()
    return used / round(duration_s) * 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision measured first")
    parser.add_argument("--after", default="HEAD", help="git revision compared with it")
    parser.add_argument("--agents", type=int, default=30)
    parser.add_argument("--window", type=float, default=40.0, help="quiet window (s)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--encrypt", action="store_true", help="seal with AES-256-GCM")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 < args.window <= MAX_WINDOW_S or args.agents < 2 or args.rounds < 1:
        parser.error(f"need 0 < --window <= {MAX_WINDOW_S:g}, --agents >= 2, --rounds >= 1")
    key = encode_key(Keyring.generate(random.Random(7).randbytes).primary) if args.encrypt \
        else None
    rows: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp)
        trees = {label: base / label for label in rows}
        commits = {label: export(getattr(args, label), tree) for label, tree in trees.items()}
        os.chdir(base)  # the agents' `python -m` must not find the working tree first
        saved = os.environ.get("PYTHONPATH")
        try:
            for round_no in range(args.rounds):
                for label, tree in trees.items():
                    cpu = trio.run(measure, tree, args.agents, args.window, key,
                                   base / f"run-{round_no}-{label}")
                    rows[label].append(statistics.median(cpu))
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    floor = trio.run(trio_floor, 20.0)
    med = {label: statistics.median(values) for label, values in rows.items()}
    report: dict[str, Any] = {
        "agents": args.agents, "window_s": args.window, "rounds": args.rounds,
        "mode": "sealed" if key else "plaintext", "commits": commits,
        "median_per_round": {k: [round(v, 4) for v in vs] for k, vs in rows.items()},
        "cpu_s_per_agent_per_min": {k: round(v, 4) for k, v in med.items()},
        "ratio_after_over_before": round(med["after"] / med["before"], 3),
        "trio_floor_s_per_min": round(floor, 4),
        "serf_cpu_s_per_agent_per_min": SERF_CPU_S_PER_MIN, "cpus": psutil.cpu_count(),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.agents} idle agents on loopback ({report['mode']}, LAN profile), "
          f"{args.window:g} s windows, {args.rounds} rounds alternating, "
          f"{psutil.cpu_count()} shared CPUs; CPU s per agent per minute, median of agents")
    for label, values in rows.items():
        per_round = ", ".join(f"{v:.4f}" for v in values)
        print(f"  {label:>6} {commits[label][:10]}: {med[label]:.4f}  (rounds: {per_round})")
    print(f"  after / before: {report['ratio_after_over_before']:.3f}")
    print(f"  trio floor (one member's idle I/O, nothing else): {floor:.4f}; "
          f"Serf: {SERF_CPU_S_PER_MIN} (goal: half of it, {SERF_CPU_S_PER_MIN / 2:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
