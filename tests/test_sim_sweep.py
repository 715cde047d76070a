"""Sweeps: the same grid gives the same rows in-process, over threads, over a process
pool and over a Dask cluster; rows are plain data in the order of the points; a failed
run is reported with its scenario.

The grid is small (2 variants x 3 seeds of 20 members for 30 simulated seconds with a
crash): a run takes a few tens of milliseconds, so the cost is the pools' start-up.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest

from simulations import Crash, Scenario
from simulations.sweep import (
    TIMING_COLUMNS,
    InlineExecutor,
    SweepError,
    SweepPoint,
    SweepResult,
    grid,
    sweep,
)
from swim.core import Config

SEEDS = [1, 2, 3]
VARIANTS = {"swim": Config.lan().plain_swim(), "lifeguard": Config.lan()}
BASE = Scenario(nodes=20, duration_s=30.0, trace=True, faults=(Crash(member=13, at=10.0),))
POINTS = grid(BASE, VARIANTS, SEEDS)


@pytest.fixture(scope="module")
def reference() -> SweepResult:
    """The grid run in this process, one point after the other."""
    return sweep(POINTS, executor=InlineExecutor())


def test_grid_is_every_variant_with_every_seed_variant_major() -> None:
    assert [(p.variant, p.scenario.seed) for p in POINTS] == [
        ("swim", 1), ("swim", 2), ("swim", 3), ("lifeguard", 1), ("lifeguard", 2),
        ("lifeguard", 3),
    ]
    assert POINTS[0].scenario.config == Config.lan().plain_swim()
    assert POINTS[3].scenario.config == Config.lan()
    assert all(p.scenario.faults == BASE.faults for p in POINTS)
    # A variant given as a whole scenario replaces the base.
    other = Scenario(nodes=5, duration_s=10.0)
    (point,) = grid(BASE, {"small": other}, [9])
    assert point == SweepPoint(variant="small", scenario=Scenario(nodes=5, duration_s=10.0,
                                                                  seed=9))
    with pytest.raises(ValueError, match="seed"):
        grid(BASE, VARIANTS, [])


def test_rows_are_plain_data_in_point_order(reference: SweepResult) -> None:
    rows = reference.rows
    assert [(r["variant"], r["seed"]) for r in rows] == [
        (p.variant, p.scenario.seed) for p in POINTS
    ]
    keys = set(rows[0])
    for row in rows:
        assert set(row) == keys  # one table: every row has every column
        for key, value in row.items():
            assert value is None or isinstance(value, int | float | str), (key, value)
        # The crash is detected, known to all, and nobody else was declared failed.
        assert row["crashes"] == row["detected"] == 1, f"seed {row['seed']}"
        assert row["undetected"] == 0 and row["false_positives"] == 0, f"seed {row['seed']}"
        assert 0 < row["first_suspected_s_mean"] <= row["all_know_s_max"] < 30.0
        assert row["messages_out_per_period"] > 0 and row["bytes_out_per_period"] > 0
        assert row["join_converged_s"] is not None and row["disagreement_final"] == 0
        assert row["trace_digest"]
    assert reference.failures == ()
    assert reference.results is None


def test_summary_per_variant(reference: SweepResult) -> None:
    summary = {s["variant"]: s for s in reference.summary()}
    assert list(summary) == ["swim", "lifeguard"]
    for variant, entry in summary.items():
        rows = [r for r in reference.rows if r["variant"] == variant]
        assert entry["runs"] == 3 and entry["failures"] == 0 and entry["seeds"] == SEEDS
        assert entry["crashes_total"] == entry["detected_total"] == 3
        assert entry["false_positives_total"] == 0
        assert entry["all_know_s_mean"] == pytest.approx(
            sum(r["all_know_s_mean"] for r in rows) / 3)
    # Lifeguard's gossip timer and nacks cost datagrams: more per period than SWIM.
    assert (summary["lifeguard"]["datagrams_out_per_period"]
            > summary["swim"]["datagrams_out_per_period"])


def test_thread_pool_gives_the_same_rows(reference: SweepResult) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        result = sweep(POINTS, executor=pool)
    assert result.deterministic_rows() == reference.deterministic_rows()


def test_process_pool_gives_the_same_rows(reference: SweepResult) -> None:
    done: list[tuple[int, int]] = []
    with _process_pool() as pool:
        result = sweep(POINTS, executor=pool, keep_results=True,
                       progress=lambda d, t: done.append((d, t)))
    assert result.deterministic_rows() == reference.deterministic_rows()
    # Wall-clock columns are there, just not comparable.
    assert all(row["wall_s"] > 0 for row in result.rows)
    assert set(TIMING_COLUMNS) <= set(result.rows[0])
    assert done == [(i, len(POINTS)) for i in range(1, len(POINTS) + 1)]
    assert result.results is not None
    assert [r.seed for r in result.results if r is not None] == [p.scenario.seed
                                                                 for p in POINTS]


def test_default_executor_is_a_local_process_pool(reference: SweepResult) -> None:
    result = sweep(POINTS[:2])
    assert result.deterministic_rows() == reference.deterministic_rows()[:2]


# ======================================================================= failures


BAD = SweepPoint(variant="bad", scenario=Scenario(nodes=5, duration_s=5.0, seed=42,
                                                  faults=(Crash(member=99, at=1.0),)))
GOOD = SweepPoint(variant="good", scenario=Scenario(nodes=5, duration_s=5.0, seed=7))


@pytest.mark.parametrize("executor_kind", ["inline", "processes"])
def test_a_failed_run_raises_with_its_scenario(executor_kind: str) -> None:
    with _executor(executor_kind) as executor, pytest.raises(SweepError) as info:
        sweep([GOOD, BAD], executor=executor)
    failure = info.value.failure
    assert failure.index == 1 and failure.point == BAD
    message = str(info.value)
    assert "variant 'bad', seed 42" in message
    assert "ValueError" in message and "no member 99" in message
    assert "Crash(member=99" in message  # the whole scenario, to replay it
    assert "Traceback" in failure.traceback  # from where it was raised, worker included


def test_collect_keeps_the_other_runs() -> None:
    result = sweep([GOOD, BAD, GOOD], executor=InlineExecutor(), errors="collect")
    assert [f.index for f in result.failures] == [1]
    assert [r["variant"] for r in result.rows] == ["good", "good"]
    (entry, bad) = result.summary()
    assert (entry["variant"], entry["runs"], entry["failures"]) == ("good", 2, 0)
    assert (bad["variant"], bad["runs"], bad["failures"]) == ("bad", 0, 1)


def _executor(kind: str) -> concurrent.futures.Executor:
    if kind == "inline":
        return InlineExecutor()
    return _process_pool()


def _process_pool() -> concurrent.futures.ProcessPoolExecutor:
    # Forkserver, not fork: this test process may run threads (trio's, Dask's).
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=2, mp_context=multiprocessing.get_context("forkserver"))


# =========================================================================== Dask


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A local Dask cluster of two worker processes, closed at the end of the module."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_cluster_gives_the_same_rows(reference: SweepResult, dask_client: Any) -> None:
    result = sweep(POINTS, executor=dask_client.get_executor())
    assert result.deterministic_rows() == reference.deterministic_rows()


def test_dask_reports_a_failed_run(dask_client: Any) -> None:
    result = sweep([BAD, GOOD], executor=dask_client.get_executor(), errors="collect")
    (failure,) = result.failures
    assert failure.point == BAD and "no member 99" in failure.error
    assert [r["variant"] for r in result.rows] == ["good"]
