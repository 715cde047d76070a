"""The start-up benchmark keeps working: a tiny run checked for the figures it promises
(not their values), and its reading of the agents' event records."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest
import trio

from benchmarks.startup_bench import all_alive_at

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
    assert figures["reference"]["rss_mib"] > 0
