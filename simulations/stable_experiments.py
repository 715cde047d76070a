"""The stable-view mode's experiments (issue 11), as functions the notebook and the
benchmarks call: SWIM + Lifeguard and the stable-view mode side by side, same seeds.

* `variants`: the configurations compared; `flappers_for`: which members misbehave;
* `flip_flops`: the flip-flop fault (`simulations.flipflop.FlipFlop`) or lossy members
  (`LossyMembers`), one `FlipFlopResult` per (seed, mode), traced for figures;
* `mass_crashes`: simultaneous crashes (`simulations.mass_crash`), traced;
* `steady_cost`: traffic per member per second in a fault-free run;
* `conflicts` and `conflict_grid`: Rapid's Fig. 11, how often cut detection proposes a
  cut other than the whole correlated failure (pure `CutDetector`, no network);
* `trace_rows`: a traced result's samples as plain rows, for ``pandas``.

Runs go through an executor (`simulations.experiments.make_executor`), in the order of
their inputs. `sizes_for` gives the notebook's sizes at ``SWIM_NOTEBOOK_SCALE``.
"""

from __future__ import annotations

import concurrent.futures
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from simulations.experiments import Row, Scale, run_all
from simulations.flipflop import FlipFlopResult, LossyMembers, run_flip_flop
from simulations.mass_crash import MassCrashResult, crashed_members, run_mass_crash
from simulations.sweep import InlineExecutor
from swim.core import Config
from swim.core.stable import Configuration, CutDetector, CutParams, rings_of

# ============================================================================== sizes


@attrs.frozen(kw_only=True)
class StableSizes:
    """How big each stable-view experiment is at one scale."""

    scale: Scale
    #: Worker processes (0: run in the caller's process).
    workers: int
    seeds: tuple[int, ...]
    #: (a) the flip-flop: (cluster size, simulated seconds) per run, flapping members.
    flip_runs: tuple[tuple[int, float], ...]
    flip_flappers: int
    #: (b) lossy members: cluster size, their share of the members (at least one), loss.
    lossy_nodes: int
    lossy_share: float
    lossy_loss: float
    #: (c) simultaneous crashes.
    crash_nodes: int
    crashes: int
    #: (d) cut-detection conflicts.
    conflict_nodes: int
    conflict_trials: int
    conflict_receivers: int
    #: (e) the fault-free run the cost is measured on.
    cost_nodes: int
    cost_duration_s: float


_SIZES: dict[str, StableSizes] = {
    "ci": StableSizes(
        scale="ci", workers=0, seeds=(1,),
        flip_runs=((30, 120.0),), flip_flappers=2,
        lossy_nodes=30, lossy_share=0.01, lossy_loss=0.8,
        crash_nodes=50, crashes=10,
        conflict_nodes=200, conflict_trials=2, conflict_receivers=5,
        cost_nodes=30, cost_duration_s=60.0,
    ),
    "full": StableSizes(
        scale="full", workers=2, seeds=(1,),
        flip_runs=((200, 200.0), (1000, 120.0)), flip_flappers=2,
        lossy_nodes=200, lossy_share=0.01, lossy_loss=0.8,
        crash_nodes=1000, crashes=10,
        conflict_nodes=1000, conflict_trials=5, conflict_receivers=30,
        cost_nodes=200, cost_duration_s=120.0,
    ),
}


def sizes_for(scale: Scale) -> StableSizes:
    """The stable-view experiment sizes at `scale`."""
    return _SIZES[scale]


# ====================================================================== the runs


def variants() -> dict[str, Config]:
    """The configurations compared: SWIM + Lifeguard (memberlist's LAN), the stable-view
    preset (half the protocol period), and the stable-view mode at the LAN period (the
    same probe traffic as SWIM in steady state, slower to notice a failure)."""
    stable = Config.stable_views()
    return {
        "swim": Config.lan(),
        "stable": stable,
        "stable-1s": attrs.evolve(stable, probe_interval_s=1.0, probe_timeout_s=0.5),
    }


def flappers_for(nodes: int, count: int) -> list[int]:
    """`count` members spread evenly over the cluster (never member 0, the seed)."""
    return crashed_members(nodes, count)


@attrs.frozen(kw_only=True)
class _FlipJob:
    label: str
    config: Config
    nodes: int
    flappers: tuple[int, ...]
    seed: int
    duration_s: float
    fault: LossyMembers | None


def _flip(job: _FlipJob) -> FlipFlopResult:
    result = run_flip_flop(job.config, nodes=job.nodes, flappers=job.flappers, seed=job.seed,
                           duration_s=job.duration_s, fault=job.fault, trace=True)
    return attrs.evolve(result, mode=job.label)


def flip_flops(modes: Mapping[str, Config], *, nodes: int, flappers: Sequence[int],
               seeds: Iterable[int], duration_s: float,
               executor: concurrent.futures.Executor,
               lossy: LossyMembers | None = None) -> list[FlipFlopResult]:
    """One traced `run_flip_flop` per seed and mode (in that order), each labelled with
    its mode's key: the flip-flop of `flappers` from t = 20 s, or the `lossy` fault."""
    jobs = [_FlipJob(label=label, config=config, nodes=nodes, flappers=tuple(flappers),
                     seed=seed, duration_s=duration_s, fault=lossy)
            for seed in seeds for label, config in modes.items()]
    return run_all(_flip, jobs, executor)


def steady_cost(modes: Mapping[str, Config], *, nodes: int, seeds: Iterable[int],
                duration_s: float,
                executor: concurrent.futures.Executor) -> list[FlipFlopResult]:
    """`flip_flops` without any fault (lossy members: none), for the steady-state cost."""
    nobody = LossyMembers(members=(), at=0.0, loss=0.0)
    return flip_flops(modes, nodes=nodes, flappers=(), seeds=seeds, duration_s=duration_s,
                      executor=executor, lossy=nobody)


@attrs.frozen(kw_only=True)
class _CrashJob:
    label: str
    config: Config
    nodes: int
    crashes: int
    seed: int


def _crash(job: _CrashJob) -> MassCrashResult:
    result = run_mass_crash(job.config, nodes=job.nodes, crashes=job.crashes, seed=job.seed,
                            trace=True)
    return attrs.evolve(result, mode=job.label)


def mass_crashes(modes: Mapping[str, Config], *, nodes: int, crashes: int,
                 seeds: Iterable[int],
                 executor: concurrent.futures.Executor) -> list[MassCrashResult]:
    """One traced `run_mass_crash` per seed and mode (in that order), labelled."""
    jobs = [_CrashJob(label=label, config=config, nodes=nodes, crashes=crashes, seed=seed)
            for seed in seeds for label, config in modes.items()]
    return run_all(_crash, jobs, executor)


def trace_rows(results: Iterable[FlipFlopResult | MassCrashResult]) -> list[Row]:
    """Every sample of every traced result: mode, nodes, seed, t, view size, and how many
    observed members held a view of that size."""
    return [{"mode": r.mode, "nodes": r.nodes, "seed": r.seed, "t": t, "view_size": size,
             "observers": count}
            for r in results for t, size, count in r.samples]


# ========================================================= cut-detection conflicts


def conflicts(
    *, nodes: int, k: int, h: int, l: int, failed: int, trials: int, receivers: int,  # noqa: E741
    seed: int,
) -> tuple[float, float]:
    """(share of receivers whose first proposal was not the whole failure, share of
    trials with at least one such receiver).

    In a configuration of `nodes` members, `failed` random members fail at once; their
    live observers each send one alert per ring (a failed observer sends nothing).
    Every receiver hears every alert once, in its own random order, and proposes the
    first cut its detector allows."""
    rng = random.Random(f"cut-conflicts/{seed}/{nodes}/{k}/{h}/{l}/{failed}")
    names = [f"node-{i}" for i in range(nodes)]
    conf = Configuration.of(names)
    rings = rings_of(conf, k)
    params = CutParams(k=k, h=h, l=l)
    bad_receivers = bad_trials = 0
    for _ in range(trials):
        down = set(rng.sample(names, failed))
        want = tuple(sorted((s, False) for s in down))
        alerts = [
            (observer, subject, ring)
            for subject in sorted(down)
            for ring, observer in enumerate(rings.observers_of(subject))
            if observer not in down
        ]
        live = [n for n in names if n not in down]
        any_bad = False
        for _ in range(receivers):
            _receiver = rng.choice(live)
            order = sorted(alerts, key=lambda _a: rng.expovariate(1.0))
            det = CutDetector(params, rings)
            cut = None
            for t, (observer, subject, ring) in enumerate(order):
                det.add(observer=observer, subject=subject, up=False, rings=(ring,),
                        config_id=conf.id, now=float(t))
                cut = det.proposal(float(t))
                if cut is not None:
                    break
            if cut != want:
                bad_receivers += 1
                any_bad = True
        bad_trials += any_bad
    return bad_receivers / (trials * receivers), bad_trials / trials


@attrs.frozen(kw_only=True)
class _ConflictCell:
    nodes: int
    k: int
    h: int
    l: int  # noqa: E741
    f: int
    trials: int
    receivers: int
    seed: int


def _conflict_row(cell: _ConflictCell) -> Row:
    per_receiver, per_trial = conflicts(
        nodes=cell.nodes, k=cell.k, h=cell.h, l=cell.l, failed=cell.f, trials=cell.trials,
        receivers=cell.receivers, seed=cell.seed,
    )
    return {"k": cell.k, "h": cell.h, "l": cell.l, "f": cell.f,
            "receivers_conflicting": per_receiver, "trials_with_conflict": per_trial}


def conflict_grid(*, nodes: int, k: int, hs: Iterable[int], ls: Iterable[int],
                  fs: Iterable[int], trials: int, receivers: int, seed: int,
                  executor: concurrent.futures.Executor | None = None) -> list[Row]:
    """`conflicts` for every (H, L, F) with L <= H, in that order (on `executor`, by
    default in this process): rows of k, h, l, f, receivers_conflicting and
    trials_with_conflict."""
    ls, fs = list(ls), list(fs)
    cells = [_ConflictCell(nodes=nodes, k=k, h=h, l=low, f=f, trials=trials,
                           receivers=receivers, seed=seed)
             for h in hs for low in ls if low <= h for f in fs]
    return run_all(_conflict_row, cells, executor or InlineExecutor())


def result_rows(results: Iterable[FlipFlopResult | MassCrashResult]) -> list[dict[str, Any]]:
    """The results as plain rows (`row()`, without their samples)."""
    return [r.row() for r in results]
