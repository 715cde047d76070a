"""Encryption on vs off: 30 real agents on loopback, one cluster after the other.

For each mode (plaintext framing with a CRC, then AES-256-GCM with a key) the same
cluster is started, left to settle, and measured over a quiet window:

* CPU seconds per agent per minute, mean and median over the agents, from schedstat
  (`benchmarks.idle_cpu.cpu_seconds`; the goal: sealed <= 1.3 x plaintext, and at most
  half of Serf's 0.107 s measured on this machine);
* bytes sent per agent per second on the wire (the core's bytes plus the sealing
  layer's overhead on every datagram and stream frame);
* alive updates one 1,400-byte datagram carries, through the real piggyback path, with
  the budget the runtime gives the core in each mode.

Run: ``python -m benchmarks.security_bench [--agents 30] [--window 60] [--json]``.
Loopback only; every agent is stopped at the end of each mode.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import statistics
import sys
import tempfile
import time
from typing import Any

import psutil  # type: ignore[import-untyped]
import trio

from benchmarks.idle_cpu import cpu_seconds, start_settled
from swim.agent import rpc
from swim.agent.cluster import AgentProcess, LocalCluster
from swim.core import Config, Core
from swim.core.codec import encode
from swim.core.messages import Alive, MemberState, Ping
from swim.security.keyring import Keyring, encode_key
from swim.security.seal import PLAINTEXT_OVERHEAD, SEALED_OVERHEAD

SERF_CPU_S_PER_MIN = 0.107


def alive_per_datagram(overhead: int) -> int:
    """Alive updates riding on one ack when the sealing layer takes `overhead` bytes."""
    config = Config.lan()
    core = Core(
        Config(packet_budget=config.packet_budget - overhead), name="node-0000",
        addr=("10.0.0.1", 7946), rng=random.Random(1), now=0.0,
    )
    news = [Alive(MemberState(f"node-{i:04d}", (f"10.0.{i // 250}.{i % 250 + 1}", 7946), 0))
            for i in range(1, 301)]
    for start in range(0, 300, 50):
        core.receive_datagram(encode(news[start:start + 50]), ("10.0.0.2", 7946), now=0.0)
    core.poll()
    core.receive_datagram(encode([Ping(7, "node-0000")]), ("10.0.0.2", 7946), now=0.0)
    (ack,) = core.poll().datagrams
    return sum(isinstance(m, Alive) for m in ack.messages)


async def _counters(agents: list[AgentProcess]) -> dict[str, tuple[int, int]]:
    out = {}
    for agent in agents:
        info = await rpc.call(agent.rpc, {"cmd": "info"}, timeout_s=10.0)
        stats = info["stats"]
        out[agent.name] = (int(stats.get("core.bytes_out", 0)),
                           int(stats.get("core.datagrams_out", 0)))
    return out


async def measure(count: int, window_s: float, key: str | None, workdir: pathlib.Path
                  ) -> dict[str, Any]:
    extra = ["--encrypt", key] if key else []
    overhead = SEALED_OVERHEAD if key else PLAINTEXT_OVERHEAD
    async with LocalCluster.open(workdir, profile="lan") as cluster:
        agents, converged = await start_settled(cluster, count, extra)
        pids = {a.name: a.pid for a in agents if a.pid is not None}
        before = await _counters(agents)
        cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
        t0 = time.monotonic()
        await trio.sleep(window_s)
        elapsed = time.monotonic() - t0
        cpu = [(cpu_seconds(p) - cpu0[n]) / elapsed * 60.0 for n, p in pids.items()]
        after = await _counters(agents)
        wire = [
            ((after[n][0] - before[n][0]) + overhead * (after[n][1] - before[n][1])) / elapsed
            for n in before
        ]
    return {
        "mode": "sealed" if key else "plaintext",
        "agents": count,
        "converged_s": round(converged, 2),
        "window_s": round(elapsed, 1),
        "cpu_s_per_agent_per_min": round(statistics.fmean(cpu), 4),
        "cpu_s_per_agent_per_min_median": round(statistics.median(cpu), 4),
        "cpu_s_per_agent_per_min_max": round(max(cpu), 4),
        "wire_bytes_per_agent_per_s": round(statistics.fmean(wire), 1),
        "overhead_bytes": overhead,
        "alive_per_1400_byte_ack": alive_per_datagram(overhead),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=30)
    parser.add_argument("--window", type=float, default=60.0, help="quiet window (s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    key = encode_key(Keyring.generate(random.Random(7).randbytes).primary)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode_key in (None, key):
            rows.append(trio.run(measure, args.agents, args.window, mode_key,
                                 pathlib.Path(tmp) / ("sealed" if mode_key else "plain")))
    ratio = rows[1]["cpu_s_per_agent_per_min"] / rows[0]["cpu_s_per_agent_per_min"]
    report = {"rows": rows, "cpu_ratio_sealed_over_plaintext": round(ratio, 2),
              "serf_cpu_s_per_agent_per_min": SERF_CPU_S_PER_MIN, "cpus": psutil.cpu_count()}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.agents} agents on loopback, LAN profile, {args.window:g} s quiet window, "
          f"{psutil.cpu_count()} shared CPUs")
    for row in rows:
        print(f"  {row['mode']:>9}: CPU {row['cpu_s_per_agent_per_min']:.3f} s/agent/min "
              f"(median {row['cpu_s_per_agent_per_min_median']:.3f}, "
              f"max {row['cpu_s_per_agent_per_min_max']:.3f}), "
              f"{row['wire_bytes_per_agent_per_s']:.0f} B/agent/s on the wire, "
              f"{row['alive_per_1400_byte_ack']} alive updates per 1400-byte ack "
              f"(+{row['overhead_bytes']} B sealing)")
    print(f"  sealed / plaintext CPU: {ratio:.2f} (goal <= 1.3); Serf: "
          f"{SERF_CPU_S_PER_MIN} s/agent/min (goal: sealed <= half)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
