"""Key rotation benchmark: install -> use -> remove of a new key on live encrypted agents.

Starts 10 real `swim agent` processes on loopback (LAN profile), each with its own
keyring file holding the old key, and watches every agent's event stream (RPC monitor)
from before the first step to the end. Then runs, through the `swim keys` command, as an
operator would (each step from a different agent):

1. ``swim keys --install NEW``; 2. ``swim keys --use NEW``; 3. ``swim keys --remove OLD``,

with a settle period after each (``--settle-s``, default 5 s, several probe rounds), and
holds the cluster for ``--hold-s`` (default 20 s, past the LAN suspicion timeout) after
the last one. Reports:

* false failures and suspicions: every ``failed`` or ``suspect`` record any agent
  reported from the first step to the end (must be 0: nobody crashed);
* packets the agents refused (``swim info``'s security counters) over the rotation, by
  reason (a member that could not open a peer's packets would show ``unauthenticated``);
* each step's wall time (the `swim keys` process, start-up included), the time the
  agent took to run it (until every member had answered), and its summary line
  (``N/N nodes reported success``);
* whether every member ends with only the new key: ``swim keys --list`` and every
  agent's keyring file.

Run: ``python -m benchmarks.key_rotation_bench`` (``--agents``, ``--profile``,
``--json PATH``). Loopback only; every agent is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

import trio

from swim.agent import rpc
from swim.agent.cluster import AgentProcess, ClusterError, LocalCluster, Observers, agent_command
from swim.agent.output import Record, format_addr
from swim.security import Keyring, decode_key, generate_key_text, save_keyring


async def _swim(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            [*agent_command(), *args], capture_stdout=True, capture_stderr=True, check=False
        )


async def _rejected(agents: list[AgentProcess]) -> dict[str, int]:
    """Packets refused by the sealing layer, summed over `agents`, by reason."""
    total: dict[str, int] = {}
    for agent in agents:
        info = await rpc.call(agent.rpc, {"cmd": "info"}, timeout_s=10.0)
        for reason, count in info["security"]["rejected"].items():
            total[reason] = total.get(reason, 0) + int(count)
    return total


async def _start(cluster: LocalCluster, agents: list[AgentProcess]) -> None:
    await cluster.start(agents[0])
    seed = agents[0].bind

    async def join(agent: AgentProcess) -> None:
        await cluster.start(agent, join=[seed])

    async with trio.open_nursery() as nursery:
        for agent in agents[1:]:
            nursery.start_soon(join, agent)


async def bench(count: int, profile: str, settle_s: float, hold_s: float,
                workdir: pathlib.Path) -> Record:
    old, new = generate_key_text(), generate_key_text()
    files: dict[str, pathlib.Path] = {}
    results: Record = {"agents": count, "profile": profile, "settle_s": settle_s,
                       "hold_s": hold_s, "steps": []}
    async with LocalCluster.open(workdir / "agents", profile=profile) as cluster:
        agents = []
        for i in range(count):
            name = f"k{i + 1}"
            files[name] = workdir / f"{name}.keyring.json"
            save_keyring(files[name], Keyring(decode_key(old)))
            agents.append(cluster.define(name, extra_args=["--keyring-file", str(files[name])]))
        started = time.time()
        await _start(cluster, agents)
        await cluster.wait_converged(timeout_s=60.0)
        results["convergence_s"] = time.time() - started
        observers = Observers()
        async with trio.open_nursery() as nursery:
            for agent in agents:
                await nursery.start(observers.watch, agent)
            rejected_before = await _rejected(agents)
            rotation_started = time.time()
            steps = [("install", new, agents[0]), ("use", new, agents[count // 2]),
                     ("remove", old, agents[-1])]
            for op, key, via in steps:
                began = time.monotonic()
                result = await _swim("keys", f"--{op}", key, "--json",
                                     "--rpc", format_addr(via.rpc))
                elapsed = time.monotonic() - began
                try:
                    report = json.loads(result.stdout)
                except ValueError:
                    raise ClusterError(
                        f"swim keys --{op} failed (exit {result.returncode}): "
                        f"{result.stderr.decode().strip()}"
                    ) from None
                results["steps"].append({
                    "op": op, "via": via.name, "exit": result.returncode,
                    "wall_s": elapsed, "in_agent_s": report.get("elapsed_s"),
                    "summary": report.get("summary"),
                    "failed": report.get("failed"), "no_answer": report.get("no_answer"),
                })
                await trio.sleep(settle_s)
            await trio.sleep(max(0.0, hold_s - settle_s))
            await cluster.wait_converged(timeout_s=30.0)
            rejected_after = await _rejected(agents)
            listed = await _swim("keys", "--list", "--json", "--rpc", format_addr(agents[1].rpc))
            nursery.cancel_scope.cancel()
        alarms = [
            (observer, record) for observer, record in observers.records
            if record.get("event") in ("failed", "suspect")
            and float(record["ts"]) >= rotation_started
        ]
        results["rotation_s"] = time.time() - rotation_started
        results["false_failures"] = sum(1 for _, r in alarms if r["event"] == "failed")
        results["false_suspicions"] = sum(1 for _, r in alarms if r["event"] == "suspect")
        results["alarms"] = [
            {"observer": o, "event": r["event"], "member": r["member"]} for o, r in alarms
        ]
        results["rejected_during_rotation"] = {
            reason: rejected_after.get(reason, 0) - rejected_before.get(reason, 0)
            for reason in sorted(rejected_after)
            if rejected_after.get(reason, 0) != rejected_before.get(reason, 0)
        }
        report = json.loads(listed.stdout)
        results["final_list"] = {"summary": report.get("summary"), "keys": report.get("keys"),
                                 "primary_keys": report.get("primary_keys")}
        results["only_new_key_listed"] = report.get("keys") == {new: count}
        results["only_new_key_in_files"] = all(
            json.loads(path.read_text()) == [new] for path in files.values()
        )
    return results


def table(results: Record) -> str:
    rows: list[tuple[str, str]] = [
        ("agents / profile", f"{results['agents']} / {results['profile']}"),
        ("join convergence", f"{results['convergence_s']:.2f} s"),
    ]
    for step in results["steps"]:
        rows.append((
            f"swim keys --{step['op']} (via {step['via']})",
            f"{step['wall_s']:.2f} s ({step['in_agent_s']:.2f} s in the agent), "
            f"{step['summary']}, exit {step['exit']}",
        ))
    rows += [
        ("rotation + settle + hold", f"{results['rotation_s']:.1f} s"),
        ("false failures", str(results["false_failures"])),
        ("false suspicions", str(results["false_suspicions"])),
        ("packets refused during rotation",
         ", ".join(f"{k} {v}" for k, v in results["rejected_during_rotation"].items()) or "0"),
        ("final swim keys --list", str(results["final_list"]["summary"])),
        ("every member holds only the new key",
         f"list: {results['only_new_key_listed']}, files: {results['only_new_key_in_files']}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.key_rotation_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--agents", type=int, default=10, help="cluster size (default 10)")
    parser.add_argument("--profile", choices=("lan", "local", "wan"), default="lan")
    parser.add_argument("--settle-s", type=float, default=5.0,
                        help="wait after each step (default 5 s)")
    parser.add_argument("--hold-s", type=float, default=20.0,
                        help="watch the cluster after the last step (default 20 s)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 3 <= args.agents <= 100:
        parser.error("--agents must be within 3..100")
    with tempfile.TemporaryDirectory(prefix="swim-keys-bench-") as tmp:
        try:
            results: dict[str, Any] = trio.run(
                bench, args.agents, args.profile, args.settle_s, args.hold_s, pathlib.Path(tmp)
            )
        except ClusterError as exc:
            print(f"key_rotation_bench: {exc}", file=sys.stderr)
            return 1
    print(f"key rotation benchmark: {args.agents} encrypted agents on loopback, "
          f"{args.profile} profile")
    print(table(results))
    print(json.dumps(results, sort_keys=True))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    ok = (results["false_failures"] == 0 and results["only_new_key_listed"]
          and results["only_new_key_in_files"]
          and all(step["exit"] == 0 for step in results["steps"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
