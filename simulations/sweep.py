"""Sweeps: a grid of scenarios (variants x seeds) run in parallel, as one table.

    >>> from simulations import Crash, Scenario
    >>> from simulations.sweep import grid, sweep
    >>> from swim.core import Config
    >>> base = Scenario(nodes=20, duration_s=30.0, faults=(Crash(member=5, at=10.0),))
    >>> points = grid(base, {"swim": Config.lan().plain_swim(), "lifeguard": Config.lan()},
    ...               seeds=range(10))
    >>> result = sweep(points)                      # doctest: +SKIP
    >>> pandas.DataFrame(result.rows)               # doctest: +SKIP
    >>> pandas.DataFrame(result.summary())          # doctest: +SKIP

Every run is a `SweepPoint`: a variant name and a `Scenario` (a frozen, picklable value),
so any `concurrent.futures.Executor` can run it: by default a local
`ProcessPoolExecutor` with one worker per CPU (created and shut down by the call), or a
`ThreadPoolExecutor`, `InlineExecutor` (everything in the calling process, one run after
the other: for debugging and for checking that parallel runs change nothing), or a Dask
cluster of many machines through ``distributed.Client(...).get_executor()``.

Runs are deterministic (the scenario's seed decides everything), so the rows do not
depend on the executor or on the order in which runs complete: row ``i`` is always point
``i``'s. Only the wall-clock columns (`TIMING_COLUMNS`) differ from one sweep to the next.

A run that raises is reported with its point (variant, seed, the whole scenario) and the
worker's traceback: by default the sweep stops at the first failure and raises
`SweepError`; with ``errors="collect"`` it runs everything and lists the failures in
`SweepResult.failures`.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, ParamSpec, TypeVar

import attrs

from simulations.metrics import RunResult
from simulations.scenario import Scenario, run
from swim.core import Config

__all__ = [
    "TIMING_COLUMNS",
    "InlineExecutor",
    "SweepError",
    "SweepFailure",
    "SweepPoint",
    "SweepResult",
    "grid",
    "run_point",
    "sweep",
]

#: Columns measured on the wall clock: the only ones that differ between two sweeps of
#: the same points.
TIMING_COLUMNS = ("wall_s", "sim_events_per_s")

#: Per-variant means taken by `SweepResult.summary`.
_MEAN_COLUMNS = (
    "first_suspected_s_mean",
    "first_failed_s_mean",
    "all_know_s_mean",
    "all_know_s_max",
    "false_positives",
    "fp",
    "fp_minus",
    "datagrams_out_per_period",
    "messages_out_per_period",
    "bytes_out_per_period",
    "bytes_in_per_period",
    "join_converged_s",
    "disagreement_final",
    "wall_s",
)
#: Per-variant totals taken by `SweepResult.summary`.
_SUM_COLUMNS = ("crashes", "detected", "undetected", "false_positives", "fp_by_healthy",
                "failures_raised", "fp", "fp_minus", "total_messages", "total_bytes",
                "unconverged", "wall_s")

Errors = Literal["raise", "collect"]


@attrs.frozen(kw_only=True)
class SweepPoint:
    """One run of a sweep: a scenario and the name of the variant it belongs to."""

    variant: str
    scenario: Scenario


@attrs.frozen(kw_only=True)
class SweepFailure:
    """A run that raised (in the worker or in the executor that ran it)."""

    #: Position of the point in the sweep.
    index: int
    point: SweepPoint
    #: The exception's type name and message.
    error: str
    #: The traceback, formatted where the exception was raised (the worker's side).
    traceback: str

    def __str__(self) -> str:
        sc = self.point.scenario
        return (f"run {self.index} (variant {self.point.variant!r}, seed {sc.seed}) "
                f"failed: {self.error}\nscenario: {sc!r}\n{self.traceback}")


class SweepError(Exception):
    """A sweep run failed; `failure` says which point and why, `result` holds the rows
    of the runs that had finished by then."""

    def __init__(self, failure: SweepFailure, result: SweepResult) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.result = result


@attrs.frozen(kw_only=True)
class SweepResult:
    """The rows of a sweep, in the order of its points (failed runs have no row)."""

    points: tuple[SweepPoint, ...]
    #: One plain dict per successful run (``pandas.DataFrame(result.rows)``).
    rows: list[dict[str, Any]]
    failures: tuple[SweepFailure, ...] = ()
    #: The full `RunResult` of each point (None for failures), when asked for.
    results: tuple[RunResult | None, ...] | None = None

    def variants(self) -> list[str]:
        """Variant names in order of first appearance."""
        return list(dict.fromkeys(p.variant for p in self.points))

    def deterministic_rows(self) -> list[dict[str, Any]]:
        """The rows without the wall-clock columns: equal for every sweep of the same
        points, whatever the executor."""
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in self.rows]

    def summary(self) -> list[dict[str, Any]]:
        """One dict per variant: run and failure counts, ``<column>_total`` over its runs
        of the count columns and, under the row's own column name, the mean over its runs
        of the headline columns (ignoring runs where the value is None: a detection delay
        of an undetected crash)."""
        out = []
        for variant in self.variants():
            rows = [r for r in self.rows if r["variant"] == variant]
            entry: dict[str, Any] = {
                "variant": variant,
                "runs": len(rows),
                "failures": sum(1 for f in self.failures if f.point.variant == variant),
                "seeds": [r["seed"] for r in rows],
            }
            for column in _SUM_COLUMNS:
                entry[f"{column}_total"] = sum(r[column] for r in rows)
            for column in _MEAN_COLUMNS:
                values = [r[column] for r in rows if r[column] is not None]
                entry[column] = sum(values) / len(values) if values else None
            out.append(entry)
        return out


# ============================================================================ building


def grid(
    base: Scenario,
    variants: Mapping[str, Config | Scenario],
    seeds: Iterable[int],
) -> list[SweepPoint]:
    """Every variant with every seed, variant-major (all seeds of the first variant,
    then the next...).

    A variant given as a `Config` is `base` with that config; given as a `Scenario`, it
    replaces `base` (another network, other faults...). Each point's scenario carries
    its seed.
    """
    seed_list = list(seeds)
    if not variants:
        raise ValueError("a grid needs at least one variant")
    if not seed_list:
        raise ValueError("a grid needs at least one seed")
    points: list[SweepPoint] = []
    for name, variant in variants.items():
        scenario = attrs.evolve(base, config=variant) if isinstance(variant, Config) else variant
        points.extend(
            SweepPoint(variant=name, scenario=attrs.evolve(scenario, seed=seed))
            for seed in seed_list
        )
    return points


# ============================================================================= running


def run_point(point: SweepPoint, keep_result: bool = False) -> tuple[dict[str, Any],
                                                                       RunResult | None]:
    """Run one point and flatten its result into a row (what each worker calls)."""
    result = run(point.scenario)
    return _row(point, result), result if keep_result else None


@attrs.frozen
class _Raised:
    """What a worker sends back instead of raising (keeps its traceback as text)."""

    error: str
    traceback: str


def _run_safely(point: SweepPoint, keep_result: bool) -> (
        tuple[dict[str, Any], RunResult | None] | _Raised):
    try:
        return run_point(point, keep_result)
    except Exception as exc:
        return _Raised(f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _row(point: SweepPoint, result: RunResult) -> dict[str, Any]:
    sc = point.scenario
    crashes = [d for d in result.detections if d.kind == "crash"]
    known = [d.all_know_s for d in crashes if d.all_know_s is not None]
    join = [c for c in result.convergence if c.label == "join"]
    summary = result.summary_row()
    return {
        "variant": point.variant,
        "seed": sc.seed,
        "nodes": sc.nodes,
        "duration_s": sc.duration_s,
        "mode": sc.mode,
        "start": sc.start,
        "faults": len(sc.faults),
        # Detection of crashes (delays since the crash; None: never within the run).
        "crashes": len(crashes),
        "detected": len(known),
        "undetected": summary["undetected"],
        "first_suspected_s_mean": summary["first_suspected_s_mean"],
        "first_failed_s_mean": summary["first_failed_s_mean"],
        "all_know_s_mean": summary["all_know_s_mean"],
        "all_know_s_max": max(known, default=None),
        # False positives (failures about live members).
        "false_positives": result.false_positives.total,
        "fp_by_healthy": result.false_positives.by_healthy,
        "fp_about_healthy": result.false_positives.about_healthy,
        # The same once per raiser (the Lifeguard paper's FP and FP-).
        "failures_raised": result.false_positives.raised,
        "fp": result.false_positives.fp,
        "fp_minus": result.false_positives.fp_minus,
        # Load: means over members of the per-protocol-period rates.
        "datagrams_out_per_period": result.traffic.datagrams_out_per_period_mean,
        "messages_out_per_period": result.traffic.messages_out_per_period_mean,
        "bytes_out_per_period": result.traffic.bytes_out_per_period_mean,
        "bytes_in_per_period": result.traffic.bytes_in_per_period_mean,
        "total_datagrams": result.traffic.total_datagrams,
        "total_bytes": result.traffic.total_bytes,
        "total_messages": result.traffic.total_messages,
        "total_streams": result.traffic.total_streams,
        "total_stream_bytes": result.traffic.total_stream_bytes,
        # Convergence: after the join (if the run joined) and at the end.
        "join_converged_s": join[0].took_s if join else None,
        "unconverged": sum(1 for c in result.convergence if c.took_s is None),
        "disagreement_final": result.disagreement_final,
        "distinct_views_final": result.distinct_views_final,
        "suspected_events": result.event_counts.get("suspected", 0),
        "failed_events": result.event_counts.get("failed", 0),
        "sim_events": result.sim_events,
        "trace_digest": result.trace_digest,
        "wall_s": result.wall_s,
        "sim_events_per_s": result.sim_events_per_s,
    }


def _default_executor(runs: int) -> concurrent.futures.ProcessPoolExecutor:
    # Not fork: the caller may run threads (trio's, Dask's), and forking a
    # multi-threaded process can deadlock (Python 3.12 warns about it).
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    workers = max(1, min(os.cpu_count() or 1, runs))
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)


def sweep(
    points: Iterable[SweepPoint | Scenario],
    *,
    executor: concurrent.futures.Executor | None = None,
    errors: Errors = "raise",
    keep_results: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run every point and return the rows in the order of `points`.

    Args:
        points: `SweepPoint`s (see `grid`), or bare scenarios (variant ``""``).
        executor: runs the points; None: a `ProcessPoolExecutor` with one worker per
            CPU (at most one per point), created and shut down here. A given executor
            is left running. `InlineExecutor` runs in this process, one point after the
            other. The default pool starts its workers with forkserver (or spawn), so a
            script that sweeps must guard its entry point with
            ``if __name__ == "__main__":``.
        errors: ``"raise"``: at the first failed run, cancel what has not started and
            raise `SweepError`; ``"collect"``: run everything, failures in the result.
        keep_results: also return every full `RunResult` (they are large at scale).
        progress: called as ``progress(done, total)`` after each run completes.
    """
    listed = tuple(p if isinstance(p, SweepPoint) else SweepPoint(variant="", scenario=p)
                   for p in points)
    if errors not in ("raise", "collect"):
        raise ValueError(f"errors must be 'raise' or 'collect', not {errors!r}")
    owned = executor is None
    pool = _default_executor(len(listed)) if executor is None else executor
    rows: list[dict[str, Any] | None] = [None] * len(listed)
    results: list[RunResult | None] = [None] * len(listed)
    failures: list[SweepFailure] = []

    def outcome() -> SweepResult:
        return SweepResult(
            points=listed,
            rows=[row for row in rows if row is not None],
            failures=tuple(sorted(failures, key=lambda f: f.index)),
            results=tuple(results) if keep_results else None,
        )

    try:
        futures = {pool.submit(_run_safely, point, keep_results): i
                   for i, point in enumerate(listed)}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            i = futures[future]
            try:
                got = future.result()
            except Exception as exc:  # the executor's failure: a worker died, a pickle...
                got = _Raised(f"{type(exc).__name__}: {exc}",
                              "".join(traceback.format_exception(exc)))
            if isinstance(got, _Raised):
                failure = SweepFailure(index=i, point=listed[i], error=got.error,
                                       traceback=got.traceback)
                failures.append(failure)
                if errors == "raise":
                    for other in futures:
                        other.cancel()
                    raise SweepError(failure, outcome())
            else:
                rows[i], results[i] = got
            if progress is not None:
                progress(done, len(listed))
    finally:
        if owned:
            pool.shutdown(wait=True, cancel_futures=True)
    return outcome()


# ===================================================================== in-process runs


_P = ParamSpec("_P")
_T = TypeVar("_T")


class InlineExecutor(concurrent.futures.Executor):
    """Runs each submitted call at once, in the calling thread (a sequential sweep).

    Useful to debug a run (breakpoints, profilers) and as the reference a parallel
    sweep must match.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args,
               **kwargs: _P.kwargs) -> concurrent.futures.Future[_T]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
