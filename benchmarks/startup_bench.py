"""Start-up benchmark: what an idle `swim agent` costs, and how fast agents form a cluster.

Figures, each the median of a few repetitions:

* references, measured between the agent runs (the same load): CPython with trio
  imported, the floor of any trio agent, and CPython with trio and `swim.core` (the
  protocol core every agent runs) imported, the floor of this one (CPU of
  ``python -c "import trio"`` and ``python -c "import trio, swim.core"``, RSS of such a
  process idling);
* spawn -> running CPU: user + system CPU time of a fresh ``swim agent`` (no seeds), read
  from ``/proc/PID/stat`` as soon as its RPC first answers ``info``;
* idle RSS: ``VmRSS`` from ``/proc/PID/status`` of that agent after it has idled for a
  few seconds (no peers, no RPC traffic);
* cluster join: ``--agents`` agents (30) spawned back to back on 127.0.0.1 (free ports),
  every one but the first joining the first, none waited for; the time from the first
  spawn until every agent's ``members`` lists all of them alive (polled, each agent until
  it does). Also from the agents' own event records (``--log-json``, no polling error):
  when the last of them first saw every member alive, and how long that was after the
  last of them was running (its "running" log record): the part of the join that is the
  protocol's (join exchanges, their retries, gossip) rather than the start-ups'.

The agents run as ``python -m swim.cli`` from the current directory, so run this from the
root of the tree to measure (``python -m benchmarks.startup_bench``; for another checkout,
``cd`` there and set ``PYTHONPATH`` to it). The path of the `swim` package the agents
import is printed. Its bytecode, and that of `transport` and `simulations`, is compiled
once beforehand (as ``pip install`` does), so the figures are of starting, not of
compiling source. Every process started is stopped by pid, also on error.

The goals of issue 7 (idle RSS <= 28 MiB, spawn -> running <= 0.06 s CPU, 30 agents
all seeing all alive within 1.5 s) are printed with each figure, met or MISSED, beside
the floor the references set: no agent can start on less CPU or RSS than the
trio + core reference, and ``--agents`` of them starting together on this machine's CPUs
need at least that CPU times the count, divided by the CPUs, before the last is running.

Options: ``--reps N`` (5 single-agent runs), ``--join-reps N`` (3), ``--agents N`` (30),
``--profile`` (lan, the agent's default), ``--json`` (one JSON object instead of the table).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import trio

from swim.agent.cluster import AgentProcess, ClusterError, LocalCluster

#: How long an agent idles before its RSS is read.
IDLE_S = 3.0
#: Longest wait for a cluster to see every member alive.
JOIN_TIMEOUT_S = 60.0
#: Issue 7's goals: idle RSS (MiB), spawn -> running CPU (s), and the time for
#: `GOAL_AGENTS` agents spawned back to back to all see all alive (s).
GOAL_RSS_MIB = 28.0
GOAL_CPU_S = 0.06
GOAL_JOIN_S = 1.5
GOAL_AGENTS = 30
#: What each reference process imports before it reports ready.
REFERENCES = {"trio": "import trio", "trio_core": "import trio, swim.core"}

Record = dict[str, Any]


# ------------------------------------------------------------------------ /proc readers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (all its threads, live or exited)."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of proc(5), counted after "pid (comm)": utime and stime in ticks.
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident set size of process `pid` (VmRSS), in MiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def machine() -> Record:
    """What this ran on: CPU model and count, load when measured, Python."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cpus": len(os.sched_getaffinity(0)),
        "load_avg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------- set-up


def measured_tree() -> Record:
    """Where the agents' `swim`, `transport` and `simulations` packages come from (as
    ``python -m swim.cli`` run here imports them), with their bytecode compiled."""
    probe = subprocess.run(
        [sys.executable, "-c",
         "import json, swim, transport, simulations; print(json.dumps("
         "[m.__path__[0] for m in (swim, transport, simulations)]))"],
        capture_output=True, text=True, check=True,
    )
    packages = json.loads(probe.stdout)
    for package in packages:
        compileall.compile_dir(package, quiet=1)
    return {"swim": packages[0], "packages": packages}


def reference(imports: str = REFERENCES["trio"]) -> Record:
    """CPU of a fresh CPython running `imports` (an import statement), and its RSS once
    it has idled for a second."""
    process = subprocess.Popen(
        [sys.executable, "-c",
         f"import sys; {imports}; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        process.stdout.readline()
        cpu = cpu_seconds(process.pid)
        time.sleep(1.0)
        rss = rss_mib(process.pid)
        process.stdin.close()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return {"cpu_s": cpu, "rss_mib": rss}


# ----------------------------------------------------------------------------- benches


async def one_agent(workdir: pathlib.Path, rep: int) -> Record:
    """Start one agent with no seeds: CPU until it answers RPC, RSS once idle."""
    async with LocalCluster.open(workdir / f"single-{rep}", profile="lan") as cluster:
        agent = cluster.define("solo")
        await cluster.start(agent)
        assert agent.pid is not None
        cpu = cpu_seconds(agent.pid)
        wall = time.time() - agent.started_at
        await trio.sleep(IDLE_S)
        return {"cpu_s": cpu, "wall_s": wall, "rss_mib": rss_mib(agent.pid)}


async def cluster_join(workdir: pathlib.Path, rep: int, count: int, profile: str) -> Record:
    """Spawn `count` agents back to back, all joining the first; time until all see all."""
    async with LocalCluster.open(workdir / f"join-{rep}", profile=profile) as cluster:
        agents = [cluster.define(f"n{i + 1}") for i in range(count)]
        began = time.time()
        await cluster.start(agents[0], wait=False)
        for agent in agents[1:]:
            await cluster.start(agent, join=[agents[0].bind], wait=False)
        spawned = time.time()
        converged = await cluster.wait_converged(timeout_s=JOIN_TIMEOUT_S, poll_s=0.05)
        _check_running(agents)
        cpu = [cpu_seconds(a.pid) for a in agents if a.pid is not None]
        names = {a.name for a in agents}
        logs = [a.log_path.read_text(errors="replace") for a in agents]
        seen_all = [all_alive_at(log, a.name, names) for log, a in zip(logs, agents, strict=True)]
        complete = [t for t in seen_all if t is not None]
        running = [t for t in map(running_at, logs) if t is not None]
        last_running = max(running) if len(running) == count else None
        return {
            "join_s": converged - began,
            "join_events_s": max(complete) - began if len(complete) == count else None,
            "last_running_s": None if last_running is None else last_running - began,
            "after_last_running_s": (
                max(complete) - last_running
                if last_running is not None and len(complete) == count else None
            ),
            "spawn_s": spawned - began,
            "cpu_s_per_agent": statistics.median(cpu),
        }


#: What each event record says of its member's status (other records change nothing).
_STATUS_AFTER = {
    "joined": "alive", "alive": "alive", "suspect": "suspect", "failed": "dead", "left": "left"
}


def _records(log: str) -> list[Record]:
    """The JSON records in an agent's log (``--log-json``), in order."""
    records = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def running_at(log: str) -> float | None:
    """When the agent logged that it was running (serving RPC), from its log."""
    for record in _records(log):
        if str(record.get("log", "")).startswith("running:"):
            return float(record["ts"])
    return None


def all_alive_at(log: str, name: str, members: set[str]) -> float | None:
    """When the agent `name` first saw every one of `members` alive, from the event
    records in its log (``--log-json``); None if it never did."""
    status = {name: "alive"}
    for record in _records(log):
        after = _STATUS_AFTER.get(str(record.get("event")))
        if after is None or record.get("member") not in members:
            continue
        status[record["member"]] = after
        if all(status.get(m) == "alive" for m in members):
            return float(record["ts"])
    return None


def _check_running(agents: list[AgentProcess]) -> None:
    dead = [a.name for a in agents if not a.running]
    if dead:
        raise ClusterError(f"agents exited during the join: {', '.join(dead)}")


async def bench(reps: int, join_reps: int, count: int, profile: str) -> Record:
    """Single agents alternating with the reference processes (so both see the same
    load), then the cluster joins."""
    references: dict[str, list[Record]] = {name: [] for name in REFERENCES}
    singles = []
    with tempfile.TemporaryDirectory(prefix="swim-startup-") as tmp:
        workdir = pathlib.Path(tmp)
        for rep in range(reps):
            for name, imports in REFERENCES.items():
                references[name].append(await trio.to_thread.run_sync(reference, imports))
            singles.append(await one_agent(workdir, rep))
        joins = [await cluster_join(workdir, rep, count, profile) for rep in range(join_reps)]
    medians = {
        name: {key: _median(rows, key) for key in ("cpu_s", "rss_mib")}
        for name, rows in references.items()
    }
    return {
        "reference": medians["trio"], "reference_core": medians["trio_core"],
        "single": singles, "join": joins,
    }


def _median(rows: list[Record], key: str) -> float:
    return float(statistics.median(row[key] for row in rows))


def _median_text(rows: list[Record], key: str) -> str:
    values = [row[key] for row in rows if row[key] is not None]
    if len(values) < len(rows):
        return f"n/a ({len(rows) - len(values)} runs without a full record)"
    return f"{statistics.median(values):.2f} s"


def join_floor_s(results: Record) -> float:
    """The least time in which the cluster's agents can all be running, on this
    machine: each needs the trio + core reference's CPU, and they share the CPUs."""
    cpus = results["machine"]["cpus"]
    return float(results["agents"] * results["reference_core"]["cpu_s"] / cpus)


def verdict(value: float, goal: float, floor: float, unit: str) -> str:
    """``goal <= G unit: met|MISSED (floor F unit)``."""
    fmt = ".1f" if unit == "MiB" else ".2f" if goal >= 1 else ".3f"
    return (f"goal <= {goal:{fmt}} {unit}: {'met' if value <= goal else 'MISSED'} "
            f"(floor here {floor:{fmt}} {unit})")


def table(results: Record) -> str:
    """The figures as aligned text."""
    m, ref, core = results["machine"], results["reference"], results["reference_core"]
    single, join = results["single"], results["join"]
    cpu, rss = _median(single, "cpu_s"), _median(single, "rss_mib")
    rows = [
        ("machine", f"{m['cpus']} cpus ({m['cpu']}), load {m['load_avg_1m']:.2f} at start, "
                    f"Python {m['python']}"),
        ("agents run from", results["tree"]["swim"]),
        ("reference: CPython + trio",
         f"CPU {ref['cpu_s']:.3f} s, RSS {ref['rss_mib']:.1f} MiB"),
        ("reference: CPython + trio + swim.core",
         f"CPU {core['cpu_s']:.3f} s, RSS {core['rss_mib']:.1f} MiB"),
        (f"spawn -> running CPU (n={len(single)})",
         f"{cpu:.3f} s  (wall {_median(single, 'wall_s'):.3f} s, polled every 50 ms)"),
        ("", verdict(cpu, GOAL_CPU_S, core["cpu_s"], "s")),
        (f"idle agent RSS after {IDLE_S:g} s", f"{rss:.1f} MiB"),
        ("", verdict(rss, GOAL_RSS_MIB, core["rss_mib"], "MiB")),
    ]
    if join:
        join_s = _median(join, "join_s")
        rows += [
            (f"{results['agents']} agents back to back, all see all alive (n={len(join)})",
             f"{join_s:.2f} s  (runs: "
             + ", ".join(f"{row['join_s']:.2f}" for row in join)
             + f"; {results['profile']} profile)"),
        ]
        if results["agents"] == GOAL_AGENTS:
            rows.append(("", verdict(join_s, GOAL_JOIN_S, join_floor_s(results), "s")))
        rows += [
            ("  from the agents' event records", _median_text(join, "join_events_s")),
            ("  the last agent running at", _median_text(join, "last_running_s")),
            ("  all see all alive after that", _median_text(join, "after_last_running_s")),
            ("  of which spawning them", f"{_median(join, 'spawn_s'):.2f} s"),
            ("  CPU per agent by then", f"{_median(join, 'cpu_s_per_agent'):.3f} s"),
        ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.startup_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--reps", type=int, default=5, help="single-agent runs (5)")
    parser.add_argument("--join-reps", type=int, default=3, help="cluster joins (3)")
    parser.add_argument("--agents", type=int, default=30, help="cluster size (30)")
    parser.add_argument("--profile", choices=("lan", "local", "wan"), default="lan")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.join_reps < 0 or not 2 <= args.agents <= 200:
        parser.error("need --reps >= 1, --join-reps >= 0 and --agents within 2..200")
    results: Record = {"machine": machine(), "tree": measured_tree()}
    try:
        results |= trio.run(bench, args.reps, args.join_reps, args.agents, args.profile)
    except ClusterError as exc:
        print(f"startup_bench: {exc}", file=sys.stderr)
        return 1
    results |= {"agents": args.agents, "profile": args.profile}
    if args.json:
        print(json.dumps(results, sort_keys=True))
    else:
        print(f"start-up benchmark: idle agent and {args.agents} agents joining on loopback")
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
