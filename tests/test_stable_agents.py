"""`swim agent --mode stable` over real agent processes on 127.0.0.1 (local profile):
they join into one view, a killed agent is removed in one view change at every other
agent, and no SWIM suspicion or failure event is ever logged. Bounded waits; every
process is stopped in teardown by `LocalCluster.open`."""

from __future__ import annotations

import json
import pathlib
import signal
from typing import Any

import pytest

from swim.agent.cluster import AgentProcess, LocalCluster

pytestmark = pytest.mark.slow


def records(agent: AgentProcess) -> list[dict[str, Any]]:
    """The agent's JSON event records, from its log."""
    out = []
    for line in agent.log_path.read_text().splitlines():
        if line.startswith("{") and '"event"' in line:
            out.append(json.loads(line))
    return out


async def test_stable_agents_join_and_remove_a_killed_one_in_one_view_change(
    tmp_path: pathlib.Path,
) -> None:
    async with LocalCluster.open(tmp_path, profile="local") as cluster:
        agents = [cluster.define(f"s{i}", extra_args=["--mode", "stable"]) for i in (1, 2, 3, 4)]
        await cluster.start(agents[0])
        for agent in agents[1:]:
            await cluster.start(agent, join=[agents[0].bind])
        await cluster.wait_converged(timeout_s=60.0)
        for agent in agents:
            views = [r for r in records(agent) if r["event"] == "view"]
            assert views and views[-1]["size"] == 4, (agent.name, views)
        victim = agents[3]
        cluster.kill(victim, signal.SIGKILL)
        rest = agents[:3]
        for observer in rest:
            await cluster.wait_until(observer, {victim.name: "dead"}, timeout_s=60.0)
        epochs = set()
        for observer in rest:
            log = records(observer)
            views = [r for r in log if r["event"] == "view"]
            removals = [r for r in views if r["removed"]]
            assert [r["removed"] for r in removals] == [[victim.name]], (observer.name, views)
            assert removals[0]["size"] == 3
            epochs.add((removals[0]["epoch"], removals[0]["config_id"]))
            assert not [r for r in log if r["event"] in ("suspect", "failed")]
        # Every agent moved to the same configuration.
        assert len(epochs) == 1
