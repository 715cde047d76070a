"""`swim agent` and its client commands as a user runs them: real agent processes on
127.0.0.1 (free ports, local profile), driven through the `swim` command line.

Every wait is bounded and polls for a state rather than asserting a timing; every
process is stopped in teardown (`LocalCluster.open` SIGTERMs, then SIGKILLs).
"""

from __future__ import annotations

import json
import pathlib
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from swim.agent import rpc
from swim.agent.cluster import LocalCluster, agent_command, free_port
from swim.agent.output import format_addr

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster(tmp_path: pathlib.Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster.open(tmp_path, profile="local") as c:
        yield c


async def swim(*args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[bytes]:
    """Run `swim ARGS...` to completion, output captured."""
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            [*agent_command(), *args], capture_stdout=True, capture_stderr=True, check=False
        )


async def three(cluster: LocalCluster) -> list[Any]:
    agents = [
        cluster.define(f"n{i}", tags={"role": "web" if i < 3 else "db", "idx": str(i)})
        for i in (1, 2, 3)
    ]
    await cluster.start(agents[0])
    await cluster.start(agents[1], join=[agents[0].bind])
    await cluster.start(agents[2], join=[agents[0].bind])
    await cluster.wait_converged(timeout_s=30.0)
    return agents


async def test_agents_join_then_a_killed_one_is_reported_failed(cluster: LocalCluster) -> None:
    n1, n2, n3 = await three(cluster)
    result = await swim("members", "--rpc", format_addr(n2.rpc), "--json")
    assert result.returncode == 0, result.stderr
    members = json.loads(result.stdout)
    assert [(m["name"], m["status"]) for m in members] == [
        ("n1", "alive"), ("n2", "alive"), ("n3", "alive")
    ]
    assert {m["name"]: m["tags"] for m in members} == {
        "n1": {"role": "web", "idx": "1"},
        "n2": {"role": "web", "idx": "2"},
        "n3": {"role": "db", "idx": "3"},
    }
    assert {m["name"]: m["addr"] for m in members} == {
        a.name: format_addr(a.bind) for a in (n1, n2, n3)
    }
    assert all(isinstance(m["incarnation"], int) for m in members)

    table = await swim("members", "--rpc", format_addr(n1.rpc))
    assert table.returncode == 0
    assert b"n3" in table.stdout and b"alive" in table.stdout

    cluster.kill(n3, signal.SIGKILL)
    for observer in (n1, n2):
        await cluster.wait_until(observer, {"n3": "dead"}, timeout_s=45.0)
    result = await swim("members", "--rpc", format_addr(n1.rpc), "--json")
    statuses = {m["name"]: m["status"] for m in json.loads(result.stdout)}
    assert statuses == {"n1": "alive", "n2": "alive", "n3": "dead"}
    # The agent's own log recorded the failure as a JSON line.
    log = [json.loads(line) for line in n1.log_path.read_text().splitlines()
           if line.startswith("{") and '"event"' in line]
    failed = [r for r in log if r["event"] == "failed" and r["member"] == "n3"]
    assert failed and {"ts", "incarnation", "accuser", "addr"} <= failed[0].keys()


class Monitor:
    """A `swim monitor --json` process whose output lines are read in the background."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.records: list[dict[str, Any]] = []
        self.subscribed = trio.Event()

    async def read_stdout(self) -> None:
        assert self.process.stdout is not None
        reader = rpc.LineReader(self.process.stdout, 1 << 20)
        while (line := await reader.read_line()) is not None:
            self.records.append(json.loads(line))

    async def read_stderr(self) -> None:
        assert self.process.stderr is not None
        reader = rpc.LineReader(self.process.stderr, 1 << 20)
        while (line := await reader.read_line()) is not None:
            if line.startswith(b"monitoring "):
                self.subscribed.set()


async def test_user_events_reach_every_monitor_and_leave_is_graceful(
    cluster: LocalCluster,
) -> None:
    agents = await three(cluster)
    monitors: list[Monitor] = []
    try:
        async with trio.open_nursery() as nursery:
            for agent in agents:
                process = await trio.lowlevel.open_process(
                    [*agent_command(), "monitor", "--json", "--rpc", format_addr(agent.rpc)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                monitor = Monitor(process)
                monitors.append(monitor)
                nursery.start_soon(monitor.read_stdout)
                nursery.start_soon(monitor.read_stderr)
            with trio.fail_after(15):
                for monitor in monitors:
                    await monitor.subscribed.wait()

            result = await swim("event", "--rpc", format_addr(agents[0].rpc), "deploy", "v1.2")
            assert result.returncode == 0, result.stderr
            assert b"deploy" in result.stdout

            def got_event(m: Monitor) -> bool:
                return any(r.get("event") == "user" and r.get("name") == "deploy"
                           for r in m.records)

            with trio.fail_after(20):
                while not all(got_event(m) for m in monitors):
                    await trio.sleep(0.05)
            for monitor in monitors:
                record = next(r for r in monitor.records if r.get("event") == "user")
                assert record["member"] == "n1"
                assert record["payload"] == "v1.2"
                assert isinstance(record["ts"], float)

            # Tags change at n2 and reach the others' views.
            result = await swim("tags", "--rpc", format_addr(agents[1].rpc),
                                "--set", "role=cache", "--delete", "idx")
            assert result.returncode == 0, result.stderr
            assert result.stdout.decode().split() == ["role=cache"]
            with trio.fail_after(20):
                while True:
                    members = await cluster.members(agents[0])
                    if {m["name"]: m["tags"] for m in members}["n2"] == {"role": "cache"}:
                        break
                    await trio.sleep(0.1)

            # A graceful leave: the agent answers, exits 0, the others record "left".
            result = await swim("leave", "--rpc", format_addr(agents[2].rpc))
            assert result.returncode == 0, result.stderr
            assert await cluster.wait_exit(agents[2], 15.0) == 0
            for observer in agents[:2]:
                await cluster.wait_until(observer, {"n3": "left"}, timeout_s=20.0)
            with trio.fail_after(10):
                while not any(r.get("event") == "left" and r.get("member") == "n3"
                              for r in monitors[0].records):
                    await trio.sleep(0.05)

            # SIGTERM also leaves gracefully and exits 0, and so does SIGINT.
            cluster.kill(agents[1], signal.SIGTERM)
            assert await cluster.wait_exit(agents[1], 15.0) == 0
            await cluster.wait_until(agents[0], {"n2": "left"}, timeout_s=20.0)
            cluster.kill(agents[0], signal.SIGINT)
            assert await cluster.wait_exit(agents[0], 15.0) == 0
            assert "SIGINT: leaving the cluster" in agents[0].log_path.read_text()
            nursery.cancel_scope.cancel()
    finally:
        for monitor in monitors:
            if monitor.process.returncode is None:
                monitor.process.kill()
            with trio.move_on_after(5):
                await monitor.process.wait()


@pytest.mark.parametrize(
    "args",
    [
        ["agent", "--name", "x", "--bind", "127.0.0.1:7946", "--bogus"],
        ["agent", "--bind", "127.0.0.1:7946"],
        ["agent", "--name", "x", "--bind", "nowhere"],
        ["members", "--nope"],
        ["members", "--rpc", "10.1.2.3:7373"],
        ["tags", "--set", "novalue"],
        ["event"],
    ],
)
async def test_wrong_usage_exits_2(args: list[str]) -> None:
    result = await swim(*args)
    assert result.returncode == 2
    assert b"usage: swim" in result.stderr
    assert b"error:" in result.stderr


@pytest.mark.parametrize("command", [["members"], ["monitor"], ["event", "e", "p"], ["leave"],
                                     ["tags"], ["info"]])
async def test_an_unreachable_agent_is_a_clear_error(command: list[str]) -> None:
    port = free_port()
    result = await swim(*command, "--rpc", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        f"swim {command[0]}: cannot reach agent at 127.0.0.1:{port}: connection refused"
    )


async def test_an_address_in_use_is_a_clear_error(cluster: LocalCluster) -> None:
    n1 = cluster.define("n1")
    await cluster.start(n1)
    # Gossip address taken (by the running agent).
    rpc_port = free_port()
    result = await swim("agent", "--name", "x", "--bind", format_addr(n1.bind),
                        "--rpc", f"127.0.0.1:{rpc_port}", "--profile", "local")
    assert result.returncode == 1
    assert result.stderr.decode().strip().endswith(
        f"cannot bind {format_addr(n1.bind)}: address already in use"
    )
    # RPC address taken.
    result = await swim("agent", "--name", "y", "--bind", f"127.0.0.1:{free_port()}",
                        "--rpc", format_addr(n1.rpc), "--profile", "local")
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        f"swim agent: cannot listen for RPC on {format_addr(n1.rpc)}: address already in use"
    )
    # The first agent is unharmed.
    assert (await rpc.call(n1.rpc, {"cmd": "info"}))["name"] == "n1"


async def test_metrics_are_served_over_http(cluster: LocalCluster) -> None:
    port = free_port()
    agent = cluster.define("n1", extra_args=["--metrics", f"127.0.0.1:{port}"])
    await cluster.start(agent)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            response = b""
            while chunk := await stream.receive_some():
                response += chunk
    assert response.startswith(b"HTTP/1.0 200 OK")
    assert b'swim_members{node="n1",status="alive"} 1.0' in response


async def test_tags_too_big_for_the_metadata_are_refused() -> None:
    tags = [f"--tag=k{i}={'v' * 60}" for i in range(10)]
    result = await swim("agent", "--name", "x", "--bind", f"127.0.0.1:{free_port()}",
                        "--rpc", f"127.0.0.1:{free_port()}", *tags)
    assert result.returncode == 1
    assert b"member metadata holds at most 512" in result.stderr


_RING_LINE = re.compile(r"ring: (\d+) keys over (\d+) members: (.*) \(checksum (\w+)\)")
_MOVED = re.compile(r"(\d+) keys moved \(([^)]*)\); every one from or to (\w+)")


def _ring_counts(line: re.Match[str]) -> dict[str, int]:
    pairs = [item.split() for item in line[3].split(", ")]
    return {name: int(count) for name, count in pairs}


def _moves(line: re.Match[str]) -> dict[tuple[str, str], int]:
    moves = {}
    for item in line[2].split(", "):
        pair, count = item.split()
        old, new = pair.split("->")
        moves[old, new] = int(count)
    return moves


async def test_the_demo_runs_to_the_end() -> None:
    result = await swim("demo", "--plain", timeout_s=150.0)
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, out
    for phrase in ("see each other alive", "declares", "rejoined", "received 'hello'",
                   "every agent stopped"):
        assert phrase in out, out
    victim = re.search(r"crashing (\w+) with SIGKILL", out)
    sick = re.search(r"failing (\w+)'s health check", out)
    assert victim and sick, out
    victim_name, sick_name = victim[1], sick[1]

    # The ring's sections: every ring shown places all the keys, on the members that
    # should be on it.
    rings = [_ring_counts(m) for m in _RING_LINE.finditer(out)]
    assert len(rings) == 3, out
    for line, counts in zip(_RING_LINE.finditer(out), rings, strict=True):
        assert sum(counts.values()) == int(line[1]) == 10_000
        assert len(counts) == int(line[2])
    full, without_victim, without_sick = rings
    assert len(full) == 5 and all(full.values())
    assert without_victim.keys() == full.keys() - {victim_name}
    assert without_sick.keys() == full.keys() - {sick_name}
    assert f"{victim_name} owns 0 keys now" in out
    assert f"{sick_name} owns 0 keys now and is still alive" in out
    assert f"no member declared {sick_name} failed" in out

    # Four moves (crash, rejoin, health check failing, passing), each of exactly the
    # member's keys, spread over the others as their counts grew.
    moved = list(_MOVED.finditer(out))
    assert [m[3] for m in moved] == [victim_name, victim_name, sick_name, sick_name], out
    crash, rejoin, sicken, heal = (_moves(m) for m in moved)
    for line, moves in zip(moved, (crash, rejoin, sicken, heal), strict=True):
        assert sum(moves.values()) == int(line[1])
    assert sum(crash.values()) == full[victim_name]
    assert crash == {(victim_name, name): without_victim[name] - full[name]
                     for name in without_victim}
    assert rejoin == {(new, old): count for (old, new), count in crash.items()}
    assert sum(sicken.values()) == full[sick_name]
    assert sicken == {(sick_name, name): without_sick[name] - full[name]
                      for name in without_sick}
    assert heal == {(new, old): count for (old, new), count in sicken.items()}
    assert "checksum as before the crash" in out
