"""Two agents under one name, as an operator starts them by mistake: real processes.

The newcomer is refused and exits 1 with one clear line; the holder logs one warning;
nobody sees the real member leave or flap.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import AsyncIterator

import pytest
import trio

from swim.agent.cluster import LocalCluster, agent_command, free_port
from swim.agent.output import format_addr

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster(tmp_path: pathlib.Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster.open(tmp_path, profile="local") as c:
        yield c


async def swim(*args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            [*agent_command(), *args], capture_stdout=True, capture_stderr=True, check=False
        )


@pytest.mark.parametrize("through", ["n1", "n2"])
async def test_a_second_agent_under_a_live_name_is_refused(
    cluster: LocalCluster, through: str
) -> None:
    n1, n2 = cluster.define("n1"), cluster.define("n2")
    await cluster.start(n1)
    await cluster.start(n2, join=[n1.bind])
    await cluster.wait_converged(timeout_s=30.0)
    seed = {"n1": n1, "n2": n2}[through]
    result = await swim(
        "agent", "--name", "n1", "--bind", f"127.0.0.1:{free_port()}",
        "--rpc", f"127.0.0.1:{free_port()}", "--profile", "local",
        "--join", format_addr(seed.bind),
    )
    err = result.stderr.decode()
    assert result.returncode == 1, err
    errors = [line for line in err.splitlines() if "error: cannot join" in line]
    assert len(errors) == 1, err
    assert f"held by a live member at {format_addr(n1.bind)}" in errors[0]
    # The real n1 is alive everywhere, never seen leaving or failing.
    members = await swim("members", "--rpc", format_addr(n2.rpc), "--json")
    statuses = {m["name"]: m["status"] for m in json.loads(members.stdout)}
    assert statuses == {"n1": "alive", "n2": "alive"}
    for agent in (n1, n2):
        log = agent.log_path.read_text()
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert not [r for r in records if r.get("member") == "n1"
                    and r.get("event") in ("left", "failed", "suspect")], log
    if through == "n1":
        warnings = [line for line in n1.log_path.read_text().splitlines()
                    if "claims this member's name" in line]
        assert len(warnings) == 1
