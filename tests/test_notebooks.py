"""The research notebooks: each runs at the reduced size in a real Jupyter kernel
(nbclient, not nbmake), renders its figures and reproduces its numbers within the
tolerances it states; the committed copies carry the full-size outputs."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable
from typing import Any

import nbformat
import pytest

from tests import notebook_runner

NOTEBOOKS = notebook_runner.notebooks()


def _check_swim(s: dict[str, Any]) -> None:
    # First detection against e/(e-1) periods: 4 standard errors (and at least 0.5).
    tolerance = max(4 * s["first_detection_stderr"], 0.5)
    assert abs(s["first_detection_periods"] - s["first_detection_formula"]) <= tolerance
    assert 1.5 < s["first_detection_formula"] < 1.6
    # Unsynchronised members: later than the lock-step figure (REFERENCE.md: about 2 T).
    assert s["first_detection_unsync_periods"] > s["first_detection_periods"]
    # Two datagrams per member per period at every size.
    assert s["load_datagrams_out"] and all(abs(x - 2) <= 0.05 for x in s["load_datagrams_out"])
    assert len(s["load_nodes"]) >= 4
    # Dissemination: behind Bailey's continuous c = 2 curve, within twice its time.
    assert s["dissemination_half_periods"] >= 0.9 * s["bailey_half_periods"]
    assert s["dissemination_all_periods"] <= 2 * s["bailey_all_periods"]
    # Probe failure: every cell within 4 binomial standard errors of the formula.
    assert s["probe_failure_cells"] >= 6 and s["probe_failure_max_abs_z"] <= 4


def _check_lifeguard(s: dict[str, Any]) -> None:
    # Table IV: SWIM has false positives, Lifeguard at most a tenth of them.
    assert s["fp_swim"] > 0 and s["fp_lifeguard"] <= 0.1 * s["fp_swim"]
    assert s["fp_minus_lifeguard"] <= s["fp_lifeguard"]
    assert set(s["fp_by_variant"]) == {"SWIM", "LHA-Probe", "LHA-Suspicion", "Buddy System",
                                       "Lifeguard"}
    # Table V: median detection latency unchanged by Lifeguard (1 s), near alpha log10(n) T.
    swim, lifeguard = s["latency_swim_median_s"], s["latency_lifeguard_median_s"]
    assert abs(swim - lifeguard) <= 1.0
    assert math.isclose(s["latency_min_timeout_s"], 5 * math.log10(s["latency_nodes"]))
    assert all(s["latency_min_timeout_s"] <= m <= s["latency_min_timeout_s"] + 4
               for m in (swim, lifeguard))
    assert s["dask_rows_identical"] is True
    # Table VII: latency grows with alpha at each beta.
    rows = s["alpha_beta"]
    for beta in {r["beta"] for r in rows}:
        mine = sorted((r for r in rows if r["beta"] == beta), key=lambda r: r["alpha"])
        latencies = [r["first_failed_median_s"] for r in mine]
        assert len(mine) >= 2 and latencies == sorted(latencies)


def _check_flip_flop(s: dict[str, Any]) -> None:
    # The views never settle: the flappers leave and rejoin the median view each cycle.
    assert s["flip_cycles"] >= 4 and s["flip_changes"] >= s["flip_cycles"]


def _check_stable_views(s: dict[str, Any]) -> None:
    # (a) Issue 11's goal at every size and seed: one transition to N - f within 60 s,
    # no healthy member removed, at most 2 sizes and identical views afterwards; SWIM,
    # same seed, declares the flappers failed over and over.
    assert s["flip_flop"]
    for row in s["flip_flop"]:
        assert row["stable_transition_s"] is not None and row["stable_transition_s"] <= 60
        assert row["stable_healthy_removed"] == 0 and row["stable_view_changes"] == [1, 1]
        assert len(row["stable_sizes"]) <= 2 and row["stable_identical"] == 1.0
        assert row["swim_failure_events"] > row["stable_failure_events"]
    # (b) The lossy members are removed, and nobody else.
    for row in s["lossy"]:
        assert row["healthy_removed"] == 0
        if row["mode"] == "stable":
            assert row["transition_s"] is not None and row["identical_settled"] == 1.0
    # (c) Simultaneous crashes leave in one view change at every live member.
    stable_crashes = [r for r in s["mass_crash"] if r["mode"] == "stable"]
    assert stable_crashes and all(r["live_removed"] == 0 and r["all_removed_s"] is not None
                                  and r["view_changes_min"] == r["view_changes_max"] == 1
                                  for r in stable_crashes)
    # (d) Every (H, L, F) cell; the narrowest band conflicts more than the widest.
    assert s["conflicts"]["cells"] == 64
    assert s["conflicts"]["h6_l4_mean"] > s["conflicts"]["h9_l1_mean"]
    # (e) Cost against SWIM in each scenario (SWIM's own ratio is 1).
    modes = {r["mode"] for r in s["cost"]}
    assert {"swim", "stable"} <= modes
    assert all(r["bytes/m/s"] > 0 and (r["mode"] != "swim" or r["bytes vs swim"] == 1.0)
               for r in s["cost"])


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "01_swim": _check_swim,
    "02_lifeguard": _check_lifeguard,
    "03_flip_flop": _check_flip_flop,
    "04_stable_views": _check_stable_views,
}


def test_every_notebook_has_checks() -> None:
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(CHECKS)


def _cell(tags: list[str], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    metadata = {"tags": tags, "execution": {"iopub.execute_input": "2026-12-01T00:00:00Z"}}
    return {"cell_type": "code", "metadata": metadata, "source": "", "outputs": outputs,
            "execution_count": None}


def test_runner_finds_local_paths_figures_and_the_summary() -> None:
    png = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVB/tmp/x"}}
    warning = {"output_type": "stream", "name": "stderr", "text": "see /home/someone/x.log"}
    result = {"output_type": "display_data", "metadata": {},
              "data": {"application/json": {"scale": "ci"}}}
    plot, run, empty = _cell(["figure"], [png]), _cell([], [warning, result]), _cell([], [])
    # nbformat ships py.typed but leaves from_dict() unannotated.
    notebook = nbformat.from_dict(  # type: ignore[no-untyped-call]
        {"cells": [plot, run, empty], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    # A path inside an image's base64 is no path; one in a warning is.
    (found,) = notebook_runner.machine_paths(notebook)
    assert found.startswith("/home/someone/x.log")
    assert notebook_runner.figure_cells(notebook) == [notebook.cells[0]]
    assert [notebook_runner.has_image(c) for c in notebook.cells] == [True, False, False]
    assert notebook_runner.summary(notebook) == {"scale": "ci"}
    notebook_runner.scrub(notebook)
    assert all("execution" not in c.metadata for c in notebook.cells)
    notebook.cells = notebook.cells[2:]
    with pytest.raises(LookupError):
        notebook_runner.summary(notebook)


def _assert_reproduced(path: pathlib.Path, notebook: Any, scale: str) -> None:
    """Every figure cell rendered a PNG, the summary is at `scale` and passes the
    notebook's checks, and no output names a path on this machine."""
    figures = notebook_runner.figure_cells(notebook)
    assert figures and all(notebook_runner.has_image(cell) for cell in figures)
    summary = notebook_runner.summary(notebook)
    assert summary["scale"] == scale
    CHECKS[path.stem](summary)
    assert notebook_runner.machine_paths(notebook) == []


# jupyter_client, zmq and distributed emit deprecation warnings of their own.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_at_ci_size(path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    committed = path.read_bytes()
    notebook = notebook_runner.execute(path, scale="ci", timeout_s=600)
    # Kept for a look after a failure; the committed notebook is never rewritten.
    nbformat.write(notebook, tmp_path / path.name)  # type: ignore[no-untyped-call]
    assert path.read_bytes() == committed
    assert not [o for o in notebook_runner.outputs(notebook) if o["output_type"] == "error"]
    _assert_reproduced(path, notebook, "ci")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_carries_full_size_outputs(path: pathlib.Path) -> None:
    # What a reader sees without running anything: `make notebooks`' outputs.
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    _assert_reproduced(path, notebook, "full")
