"""The simulator benchmark keeps working: a tiny run through its real command line (a
child process per size, as `make bench` runs it), checked for the figures it promises,
not their values; and its choice of build."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks._builds import COMPILED_SITE, ROOT, child_env


def test_a_tiny_run_reports_every_figure_for_the_pure_build() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.sim_scale", "--nodes", "20", "--duration", "12",
         "--build", "pure", "--json"],
        capture_output=True, text=True, check=False, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["results"]
    assert row["build"] == "pure" and row["nodes"] == 20 and row["seed"] == 1
    assert row["sim_events"] > 1_000 and row["member_s_per_wall_s"] > 0
    assert row["cpu_s"] > 0 and row["peak_rss_mib"] > 0
    # The crash (at 4 s) was suspected within the run: seconds after the crash.
    assert row["first_suspected_s"] is not None and 0.0 < row["first_suspected_s"] < 8.0


def test_a_child_runs_the_build_asked_for_and_this_tree_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = child_env("pure")["PYTHONPATH"].split(os.pathsep)
    assert paths[0] == str(ROOT) and str(COMPILED_SITE) not in paths
    # A compiled site inherited from the caller's environment is dropped for pure runs.
    monkeypatch.setenv("PYTHONPATH", str(COMPILED_SITE))
    assert child_env("pure")["PYTHONPATH"].split(os.pathsep) == [str(ROOT)]
