"""The start-up benchmark keeps working: a tiny run checked for the figures it promises
(not their values), and its reading of the agents' event records."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest
import trio

from benchmarks.startup_bench import all_alive_at, join_floor_s, running_at, verdict

REPO = pathlib.Path(__file__).parent.parent


def _record(ts: float, event: str, member: str) -> str:
    return json.dumps({"ts": ts, "event": event, "member": member})


def test_all_alive_is_the_first_moment_every_member_is_alive() -> None:
    log = "\n".join([
        '{"ts": 0.5, "log": "running: ..."}',
        "import time: not a record",
        _record(1.0, "joined", "b"),
        _record(2.0, "suspect", "b"),
        _record(3.0, "joined", "c"),
        _record(3.5, "user", "b"),
        _record(4.0, "alive", "b"),
        _record(5.0, "failed", "c"),
    ])
    assert all_alive_at(log, "a", {"a", "b", "c"}) == 4.0
    assert all_alive_at(log, "a", {"a", "b", "c", "d"}) is None
    assert all_alive_at("", "a", {"a"}) is None  # no record ever says so


def test_running_is_the_time_of_the_agents_running_record() -> None:
    log = "\n".join([
        "not json", json.dumps({"ts": 1.0, "log": "started"}), _record(2.0, "alive", "a"),
        json.dumps({"ts": 3.0, "log": "running: gossip on 127.0.0.1:1"}),
        json.dumps({"ts": 4.0, "log": "running: again"}),
    ])
    assert running_at(log) == 3.0
    assert running_at(_record(2.0, "alive", "a")) is None


def test_a_goal_is_met_at_or_under_it_and_printed_beside_its_floor() -> None:
    assert verdict(0.45, 0.06, 0.39, "s") == "goal <= 0.060 s: MISSED (floor here 0.390 s)"
    assert verdict(0.06, 0.06, 0.05, "s").startswith("goal <= 0.060 s: met")
    assert verdict(27.5, 28.0, 27.9, "MiB") == "goal <= 28.0 MiB: met (floor here 27.9 MiB)"
    assert verdict(9.5, 1.5, 5.85, "s") == "goal <= 1.50 s: MISSED (floor here 5.85 s)"


def test_the_join_floor_is_every_agents_start_up_cpu_shared_by_the_cpus() -> None:
    results = {"agents": 30, "machine": {"cpus": 2}, "reference_core": {"cpu_s": 0.4}}
    assert join_floor_s(results) == pytest.approx(6.0)


@pytest.mark.slow
async def test_a_tiny_startup_benchmark_reports_every_figure() -> None:
    with trio.fail_after(150):
        result = await trio.run_process(
            [sys.executable, "-m", "benchmarks.startup_bench", "--reps", "1",
             "--join-reps", "1", "--agents", "3", "--json"],
            cwd=REPO, capture_stdout=True, capture_stderr=True, check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    figures = json.loads(result.stdout)
    assert figures["tree"]["swim"] == str(REPO / "swim")
    assert figures["agents"] == 3 and figures["machine"]["cpus"] >= 1
    (single,) = figures["single"]
    assert single["cpu_s"] > 0 and single["rss_mib"] > 0
    (join,) = figures["join"]
    assert join["join_s"] > 0 and join["join_events_s"] > 0
    assert 0 < join["last_running_s"] <= join["join_events_s"]
    assert join["after_last_running_s"] == pytest.approx(
        join["join_events_s"] - join["last_running_s"]
    )
    for reference in ("reference", "reference_core"):
        assert figures[reference]["rss_mib"] > 0 and figures[reference]["cpu_s"] > 0
    # The core is imported on top of trio, so it can only add to the floor.
    assert figures["reference_core"]["rss_mib"] > figures["reference"]["rss_mib"]
