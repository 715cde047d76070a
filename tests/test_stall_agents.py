"""The `Stall` fault on real processes (`simulations.real_stall`: SIGSTOP/SIGCONT), and
real agents agreeing with the simulator on a small case.

Six `swim agent` processes on loopback (local profile). One is stopped with SIGSTOP for
D = 3 x the minimum suspicion timeout while the others run: every other agent declares it
failed during the stall, and after SIGCONT it refutes and is back in every view. A stall
shorter than the suspicion timeout produces no failure at all. The simulator, given the
same `Stall`, says the same (`tests.test_sim_stall.small_case`), and the first failure
comes about as long after the stall starts in both.

Every wait is bounded; every stopped process is continued by `stall_processes` itself
(and `LocalCluster.open` SIGTERMs, then SIGKILLs, every agent at the end).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest
import trio

from simulations import Stall, run
from simulations.real_stall import stall_processes
from swim.agent.cluster import ClusterError, LocalCluster, Observers
from swim.core import Config
from swim.core.timing import suspicion_timeout_min_s
from tests.test_sim_stall import small_case

PROC = pathlib.Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self" / "stat").exists(), reason="needs /proc")


def process_state(pid: int) -> str:
    """The process's state letter from /proc (``T``: stopped)."""
    stat = (PROC / str(pid) / "stat").read_text()
    return stat.rpartition(")")[2].split()[0]


@needs_proc
async def test_the_tool_stops_and_continues_a_process_on_schedule() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stall = Stall(members=(0,), at=0.1, duration_s=0.3, cycles=2, interval_s=0.3)
        states: list[str] = []

        async def watch() -> None:
            for _ in range(10):
                states.append(process_state(child.pid))
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            windows = await stall_processes([child.pid], stall)
        assert len(windows) == 2
        assert all(w.pids == (child.pid,) for w in windows)
        assert all(0.25 < w.resumed_at - w.stopped_at < 0.6 for w in windows)
        assert "T" in states and process_state(child.pid) != "T"
    finally:
        child.kill()
        child.wait(timeout=5)


@needs_proc
async def test_the_tool_continues_every_process_when_cancelled() -> None:
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                for _ in range(2)]
    pids = [c.pid for c in children]
    try:
        with trio.move_on_after(0.5):
            await stall_processes(pids, Stall(members=(0, 1), at=0.0, duration_s=30.0))
        assert [process_state(p) for p in pids] != ["T", "T"]
        assert all(process_state(p) != "T" for p in pids)
        # Refused: a schedule past the limit, our own pid, a member without a pid.
        with pytest.raises(ValueError, match="limit"):
            await stall_processes(pids, Stall(members=(0,), at=0.0, duration_s=5.0),
                                  limit_s=1.0)
        with pytest.raises(ValueError, match="refusing"):
            await stall_processes([os.getpid()], Stall(members=(0,), at=0.0, duration_s=0.1))
        with pytest.raises(ValueError, match="pids given"):
            await stall_processes(pids, Stall(members=(2,), at=0.0, duration_s=0.1))
        with pytest.raises(ValueError, match="only its input"):
            await stall_processes(pids, Stall(members=(0,), at=0.0, duration_s=0.1,
                                              mode="input"))
    finally:
        for c in children:
            c.kill()
            c.wait(timeout=5)


@needs_proc
def test_the_command_line_stalls_and_refuses_long_schedules() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        def tool(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "simulations.real_stall", "--pid", str(child.pid),
                 *args], capture_output=True, text=True, timeout=30, check=False)

        done = tool("--duration", "0.2", "--cycles", "2", "--interval", "0.1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("stopped 1 process(es) for 0.") == 2
        assert process_state(child.pid) != "T"
        refused = tool("--duration", "700")
        assert refused.returncode == 2 and "limit" in refused.stderr
    finally:
        child.kill()
        child.wait(timeout=5)


def simulated_first_failure_s(stall_s: float, seeds: range) -> list[float]:
    """Delay from the stall's start to the first failure about the stalled member, in
    the simulator's small case (`small_case`), one per seed."""
    delays = []
    for seed in seeds:
        result = run(small_case(stall_s, seed))
        times = [s.at for s in result.false_positives.samples if s.subject == "node-5"]
        assert times, f"seed {seed}: never declared failed in the simulator"
        assert result.false_positives.fp == 0, f"seed {seed}"
        assert result.disagreement_final == 0, f"seed {seed}"
        delays.append(min(times) - 10.0)
    return delays


@pytest.mark.slow
@needs_proc
async def test_real_agents_agree_with_the_simulator_on_a_stalled_member(
    tmp_path: pathlib.Path,
) -> None:
    config = Config.local()
    timeout_s = suspicion_timeout_min_s(config.suspicion_mult, 6, config.probe_interval_s)
    long_s = 3 * timeout_s
    short_s = timeout_s / 3
    simulated = simulated_first_failure_s(long_s, range(1, 6))
    for seed in (1, 2, 3):
        quiet = run(small_case(short_s, seed))
        assert quiet.event_counts.get("failed", 0) == 0, f"seed {seed}: simulator"

    # Measured inside the cluster's block, asserted after it (an assertion inside a
    # nursery would come out wrapped in an exception group).
    with trio.fail_after(90):
        async with LocalCluster.open(tmp_path, profile="local") as cluster:
            agents = await cluster.start_many(6)
            await cluster.wait_converged(timeout_s=20.0)
            victim, others = agents[5], agents[:5]
            names = {a.name for a in others}
            pids = [a.pid or 0 for a in agents]
            assert all(pids)
            observers = Observers()

            def failures_since(t: float) -> list[tuple[str, str]]:
                return [(o, r["member"]) for o, r in observers.records
                        if r.get("event") == "failed" and float(r["ts"]) >= t]

            async with trio.open_nursery() as nursery:
                for agent in others:
                    await nursery.start(observers.watch, agent)
                # A stall shorter than the suspicion timeout.
                began = time.time()
                await stall_processes(pids, Stall(members=(5,), at=0.0, duration_s=short_s))
                state_after = process_state(pids[5])
                await trio.sleep(2 * timeout_s)
                short_failures = failures_since(began)
                # D = 3 x the suspicion timeout.
                began = time.time()
                (window,) = await stall_processes(
                    pids, Stall(members=(5,), at=0.0, duration_s=long_s))
                # Each agent's event is stamped when it happened; its record may reach
                # us a little later (a monitor stream from a busy agent), so wait.
                failed = await observers.wait_for("failed", victim.name, began, names,
                                                  timeout_s=10.0, strict=False)
                back = await observers.wait_for("joined", victim.name, window.resumed_at - 0.05,
                                                names, timeout_s=15.0, strict=False)
                converged = True
                try:
                    await cluster.wait_converged(timeout_s=20.0)
                except ClusterError:
                    converged = False
                long_failures = failures_since(began)
                nursery.cancel_scope.cancel()

    # Short: suspected perhaps, never failed, by anyone, about anyone.
    assert state_after != "T"
    assert short_failures == []
    # Long: every other agent declared it failed while it was stopped; after SIGCONT it
    # refuted and rejoined every view; no failure about a healthy agent.
    assert set(failed) == names, failed
    assert all(window.stopped_at < ts < window.resumed_at for ts in failed.values()), (
        window, failed)
    assert set(back) == names, back
    assert converged
    assert [f for f in long_failures if f[1] != victim.name] == []
    # The first failure came about as long after the stall began as in the simulator.
    real = min(failed.values()) - window.stopped_at
    print(f"first failure after the stall began: agents {real:.2f} s, simulator "
          f"{min(simulated):.2f}-{max(simulated):.2f} s over seeds 1-5")
    assert min(simulated) - 2.0 <= real <= max(simulated) + 2.0
