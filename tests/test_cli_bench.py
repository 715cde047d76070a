"""The cluster benchmark keeps working: a tiny run through `python -m benchmarks`' module,
checked for the figures it promises (not their values)."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest
import trio

REPO = pathlib.Path(__file__).parent.parent

pytestmark = pytest.mark.slow


async def test_the_benchmark_runner_lists_the_cluster_benchmark() -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "benchmarks", "--help"], cwd=REPO, capture_stdout=True
    )
    assert b"cluster" in result.stdout


async def test_a_tiny_cluster_benchmark_reports_every_figure(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "figures.json"
    with trio.fail_after(120):
        result = await trio.run_process(
            [sys.executable, "-m", "benchmarks.cluster_bench", "--agents", "4", "--profile",
             "local", "--steady-s", "1", "--trials", "1", "--json", str(out)],
            cwd=REPO, capture_stdout=True, capture_stderr=True, check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    figures = json.loads(out.read_text())
    assert figures["agents"] == 4
    # Completeness is a figure, not a promise (a loaded machine may see a false
    # suspicion); that the crash was detected and the leave seen at all is.
    assert isinstance(figures["incomplete_trials"], int)
    assert figures["detection"]["first_failed_s"]["n"] == 1
    assert figures["leave"]["first_left_s"]["n"] == 1
    assert set(figures["detection"]["all_failed_s"]) == {"median", "min", "max", "n"}
    assert figures["rss_mib_per_agent"]["mean"] > 0
    assert b"detection: all observers" in result.stdout
