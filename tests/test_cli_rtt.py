"""`swim rtt` over real agents: Vivaldi coordinates learned from probe acks estimate the
RTT between two members (loopback: well under a millisecond or two)."""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from swim.agent.cluster import LocalCluster, agent_command
from swim.agent.output import format_addr

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster(tmp_path: pathlib.Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster.open(tmp_path, profile="local") as c:
        yield c


async def swim(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            [*agent_command(), *args], capture_stdout=True, capture_stderr=True, check=False
        )


async def test_rtt_between_two_members_and_to_the_agent(cluster: LocalCluster) -> None:
    agents = [cluster.define(f"n{i}") for i in (1, 2, 3)]
    await cluster.start(agents[0])
    for agent in agents[1:]:
        await cluster.start(agent, join=[agents[0].bind])
    await cluster.wait_converged(timeout_s=30.0)
    rpc = format_addr(agents[0].rpc)
    rtt: dict[str, Any] = {}
    with trio.fail_after(30):
        while True:  # coordinates arrive with the first probe acks
            result = await swim("rtt", "n2", "n3", "--rpc", rpc, "--json")
            if result.returncode == 0:
                answer = json.loads(result.stdout)
                if answer["rtt_s"] > 0:
                    rtt = answer
                    break
            assert b"no coordinate" in result.stderr or result.returncode == 0, result.stderr
            await trio.sleep(0.5)
    assert (rtt["a"], rtt["b"]) == ("n2", "n3")
    assert 0 < rtt["rtt_s"] < 0.05  # loopback
    human = await swim("rtt", "n2", "--rpc", rpc)
    assert human.returncode == 0, human.stderr
    assert human.stdout.decode().startswith("Estimated n2 <-> n1 rtt: ")
    unknown = await swim("rtt", "nobody", "--rpc", rpc)
    assert unknown.returncode == 1
    assert b"no member named 'nobody'" in unknown.stderr
