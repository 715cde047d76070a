"""`swim query` and `swim keys` as an operator runs them: real `swim agent` processes on
127.0.0.1 (free ports, local profile), driven through the command line.

Every wait is bounded and polls for a state; every process is stopped in teardown.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from swim.agent.cluster import AgentProcess, LocalCluster, agent_command, free_port
from swim.agent.output import format_addr
from swim.security import load_keyring

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).parent.parent


@pytest.fixture
async def cluster(tmp_path: pathlib.Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster.open(tmp_path / "agents", profile="local") as c:
        yield c


async def swim(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    """Run `swim ARGS...` to completion, output captured."""
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            [*agent_command(), *args], capture_stdout=True, capture_stderr=True, check=False
        )


async def at(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`swim ARGS... --rpc AGENT`."""
    return await swim(*args, "--rpc", format_addr(agent.rpc))


def logged(agent: AgentProcess, kind: str | None = None) -> list[dict[str, Any]]:
    """The event records an agent printed (``--log-json``), of one kind or all."""
    records = []
    for line in agent.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"event"' in line:
            record = json.loads(line)
            if kind is None or record["event"] == kind:
                records.append(record)
    return records


async def start_all(cluster: LocalCluster, agents: list[AgentProcess]) -> None:
    await cluster.start(agents[0])
    for agent in agents[1:]:
        await cluster.start(agent, join=[agents[0].bind])
    await cluster.wait_converged(timeout_s=30.0)


# ============================================================================ queries


async def test_swim_query_gathers_acks_and_the_agents_configured_answers(
    cluster: LocalCluster,
) -> None:
    n1 = cluster.define("n1", tags={"role": "db"})
    n2 = cluster.define("n2", tags={"role": "web-1"},
                        extra_args=["--query-response", "uptime=up 3 days"])
    n3 = cluster.define("n3", tags={"role": "web-2"},
                        extra_args=["--query-response", "uptime=up 5 days",
                                    "--query-response", "version=1.2"])
    await start_all(cluster, [n1, n2, n3])

    result = await at(n1, "query", "uptime", "please", "--ack", "--timeout", "2", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert sorted(answer["acks"]) == ["n1", "n2", "n3"]
    # n1 has no --query-response for it: it acks, it does not answer.
    assert answer["responses"] == {"n2": "up 3 days", "n3": "up 5 days"}
    assert (answer["total_acks"], answer["total_responses"]) == (3, 2)
    assert answer["name"] == "uptime" and answer["complete"] is True
    assert answer["dropped"] == 0
    # Every agent printed the query it matched, with the asker and the payload.
    for agent in (n1, n2, n3):
        (record,) = logged(agent, "query")
        assert (record["member"], record["name"], record["payload"], record["id"]) == (
            "n1", "uptime", "please", answer["id"])

    by_tag = json.loads((await at(n2, "query", "uptime", "--tag", "role=web-*",
                                  "--timeout", "2", "--json")).stdout)
    assert by_tag["responses"] == {"n2": "up 3 days", "n3": "up 5 days"}
    by_name = json.loads((await at(n2, "query", "version", "--node", "n1", "--node", "n3",
                                   "--ack", "--relay-factor", "1", "--timeout", "2",
                                   "--json")).stdout)
    assert sorted(by_name["acks"]) == ["n1", "n3"] and by_name["responses"] == {"n3": "1.2"}

    # --reask: the same answers, and a member asked again directly (if it was missed
    # or its answer lost) still delivers the query to its application once.
    reasked = await at(n1, "query", "uptime", "--ack", "--reask", "--timeout", "2", "--json")
    assert reasked.returncode == 0, reasked.stderr
    again = json.loads(reasked.stdout)
    assert sorted(again["acks"]) == ["n1", "n2", "n3"]
    assert again["responses"] == {"n2": "up 3 days", "n3": "up 5 days"}
    for agent in (n1, n2, n3):
        assert [r["id"] for r in logged(agent, "query")].count(again["id"]) == 1

    human = await at(n3, "query", "version", "--ack", "--timeout", "2")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.decode().splitlines()
    assert lines[0].startswith("Query 'version' dispatched (id ")
    assert sorted(line for line in lines if line.startswith("Ack from ")) == [
        "Ack from 'n1'", "Ack from 'n2'", "Ack from 'n3'"]
    assert "Response from 'n3': 1.2" in lines
    assert lines[-2:] == ["Total Acks: 3", "Total Responses: 1"]


async def test_reserved_and_bad_query_arguments_are_refused() -> None:
    port = free_port()
    reserved = await swim("agent", "--name", "x", "--bind", f"127.0.0.1:{port}",
                          "--query-response", "_swim_list-keys=no")
    assert reserved.returncode == 2 and b"reserved" in reserved.stderr
    for bad in (["--timeout", "0"], ["--relay-factor", "9"], ["--tag", "nope"]):
        result = await swim("query", "x", *bad, "--rpc", f"127.0.0.1:{port}")
        assert result.returncode == 2, bad
    keyless = await swim("keys", "--use", "not-a-key", "--rpc", f"127.0.0.1:{port}")
    assert keyless.returncode == 2 and b"not-a-key" not in keyless.stderr


# ======================================================================= key commands


async def test_swim_keys_rotates_the_key_of_every_encrypted_agent(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    old_file = tmp_path / "old.json"
    assert (await swim("keygen", "--keyring-file", str(old_file))).returncode == 0
    old = json.loads(old_file.read_text())[0]
    new = (await swim("keygen")).stdout.decode().strip()
    files = {}
    agents = []
    for i in (1, 2, 3, 4):
        files[f"n{i}"] = tmp_path / f"n{i}.json"
        shutil.copy(old_file, files[f"n{i}"])
        os.chmod(files[f"n{i}"], 0o600)
        agents.append(cluster.define(f"n{i}", extra_args=["--keyring-file",
                                                           str(files[f"n{i}"])]))
    await start_all(cluster, agents)
    n1, n2, n3, n4 = agents

    listed = await at(n2, "keys", "--list")
    assert listed.returncode == 0, listed.stderr
    text = listed.stdout.decode()
    assert text.startswith("==> Asking all members for installed keys...\n")
    assert f"    {old}  [4/4]  primary on 4" in text
    assert text.rstrip().endswith("4/4 nodes reported success")

    for step, key in (("--install", new), ("--use", new), ("--remove", old)):
        result = await at(n1, "keys", step, key)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
        lines = result.stdout.decode().splitlines()
        assert [line.split() for line in lines[1:-1]] == [
            [name, "ok"] for name in ("n1", "n2", "n3", "n4")]
        assert lines[-1] == "4/4 nodes reported success"

    report = json.loads((await at(n3, "keys", "--list", "--json")).stdout)
    assert report["success"] is True and report["summary"] == "4/4 nodes reported success"
    assert report["keys"] == {new: 4} and report["primary_keys"] == {new: 4}
    assert report["member_keys"] == {f"n{i}": [new] for i in (1, 2, 3, 4)}
    # Each agent rewrote its keyring file: only the new key, still private.
    for path in files.values():
        assert json.loads(path.read_text()) == [new]
        assert load_keyring(path).primary  # loads: valid and mode 0600
        assert path.stat().st_mode & 0o777 == 0o600
    # And nobody was ever suspected or declared failed while the keys changed.
    for agent in agents:
        assert logged(agent, "suspect") + logged(agent, "failed") == [], agent.name

    # The primary cannot be removed: every member refuses, and the command exits 1.
    refused = await at(n4, "keys", "--remove", new)
    assert refused.returncode == 1
    lines = refused.stdout.decode().splitlines()
    assert all("failed: cannot remove the primary key" in line for line in lines[1:-1])
    assert len(lines[1:-1]) == 4 and lines[-1] == "0/4 nodes reported success"

    # A member that is down (killed, not yet detected) is reported as not answering.
    cluster.kill(n4, signal.SIGKILL)
    other = (await swim("keygen")).stdout.decode().strip()
    partial = await at(n1, "keys", "--install", other, "--json")
    assert partial.returncode == 1
    report = json.loads(partial.stdout)
    assert report["no_answer"] == ["n4"] and report["succeeded"] == ["n1", "n2", "n3"]
    assert report["summary"] == "3/4 nodes reported success" and report["success"] is False


async def test_swim_keys_on_an_agent_without_encryption_is_one_clear_error(
    cluster: LocalCluster,
) -> None:
    agent = await cluster.start(cluster.define("plain"))
    result = await at(agent, "keys", "--list")
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        "swim keys: cannot run keys list: encryption is not enabled on this node: key "
        "commands need a keyring, since the key travels inside the cluster's (sealed) gossip"
    )


# ========================================================================= benchmark


async def test_a_tiny_key_rotation_benchmark_reports_every_figure(
    tmp_path: pathlib.Path,
) -> None:
    out = tmp_path / "figures.json"
    with trio.fail_after(180):
        result = await trio.run_process(
            [sys.executable, "-m", "benchmarks.key_rotation_bench", "--agents", "3",
             "--profile", "local", "--settle-s", "0.5", "--hold-s", "1", "--json", str(out)],
            cwd=REPO, capture_stdout=True, capture_stderr=True, check=False,
        )
    assert out.exists(), result.stderr.decode()
    figures = json.loads(out.read_text())
    assert [step["op"] for step in figures["steps"]] == ["install", "use", "remove"]
    assert all(step["summary"] == "3/3 nodes reported success" for step in figures["steps"])
    assert figures["only_new_key_listed"] is True and figures["only_new_key_in_files"] is True
    # False alarms are a figure (a loaded machine may see one), not a promise here.
    assert isinstance(figures["false_failures"], int)
    assert isinstance(figures["false_suspicions"], int)
    assert b"every member holds only the new key" in result.stdout
