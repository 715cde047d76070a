"""The papers' experiments, as functions the notebooks call (and the tests check).

Each experiment builds `Scenario` values, runs them on a `concurrent.futures.Executor`
(`InlineExecutor` at the reduced size, a process pool at full size, or a Dask cluster's
executor) and returns plain rows (lists of dicts, ready for ``pandas.DataFrame``), in the
order of its inputs, whatever the executor. The closed forms they are compared with live
here too, so a notebook cell is a call, a table and a figure.

SWIM (Das, Gupta, Motivala, DSN 2002)
    `first_detection` (time from a crash to its first suspicion, against
    `expected_first_probe_periods`, e/(e-1) periods for large n), `message_load`
    (datagrams per member per protocol period against n), `dissemination` (the
    infected fraction over time against `bailey_fraction`, the simple epidemic),
    `probe_failure` (failed probes of live members under loss, against
    `probe_failure_formula`).

Lifeguard (Dadgar, Phillips, Currey, 2017)
    `lifeguard_variants` (SWIM, the three extensions alone, Lifeguard), `stall_scenario`
    (the interval experiment: C members stalled together for D s, then running for I s),
    `interval_false_positives` (FP and FP- per variant and cell), `detection_latency`
    (crash to first declaration and to every member knowing), `alpha_beta` (the
    alpha/beta trade-off between false positives and latency).

Flip-flop faults (Rapid, USENIX ATC 2018)
    `flip_flop`: members that lose all ingress and get it back, over and over
    (`flip_flop_faults`), and every observer's view size (`simulations.flipflop.view_of`)
    sampled over time.

The notebooks pick their sizes with `sizes_for`, from ``SWIM_NOTEBOOK_SCALE``
(``ci``, the default: seconds per notebook; ``full``: what ``make notebooks`` runs).
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import random
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import attrs

from simulations.faults import Crash, Fault, Partition, Stall, StallMode
from simulations.flipflop import FlipFlop, view_of
from simulations.scenario import Scenario, Simulation, run
from simulations.sweep import InlineExecutor, grid, sweep
from swim.core import Config

Row = dict[str, Any]
Scale = Literal["ci", "full"]
_T = TypeVar("_T")
_R = TypeVar("_R")

#: The environment variable the notebooks read their size from.
SCALE_ENV = "SWIM_NOTEBOOK_SCALE"


# ============================================================================== sizes


@attrs.frozen(kw_only=True)
class Sizes:
    """How big each notebook experiment is at one scale (see `sizes_for`)."""

    scale: Scale
    #: Worker processes for the sweeps (0: run in the notebook's own process).
    workers: int
    # SWIM: first detection (several crashes per run, spaced `crash_every_s`).
    detection_nodes: int
    detection_seeds: tuple[int, ...]
    detection_crashes: int
    # SWIM: message load.
    load_nodes: tuple[int, ...]
    load_duration_s: float
    # SWIM: dissemination.
    dissemination_nodes: int
    dissemination_seeds: tuple[int, ...]
    # SWIM: probe failure under loss.
    probe_nodes: int
    probe_duration_s: float
    probe_losses: tuple[float, ...]
    probe_ks: tuple[int, ...]
    # Lifeguard: the interval experiment (Table IV, Figs. 2-3).
    interval_nodes: int
    interval_duration_s: float
    interval_stalled: tuple[int, ...]
    interval_stall_s: tuple[float, ...]
    interval_seeds: tuple[int, ...]
    # Lifeguard: detection latency (Table V).
    latency_nodes: int
    latency_seeds: tuple[int, ...]
    latency_crashes: int
    # Lifeguard: alpha / beta (Table VII).
    alphas: tuple[int, ...]
    betas: tuple[int, ...]
    alpha_beta_seeds: tuple[int, ...]
    # Flip-flop (Rapid Fig. 9).
    flip_nodes: int
    flip_flappers: int
    flip_duration_s: float


_SIZES: dict[str, Sizes] = {
    "ci": Sizes(
        scale="ci", workers=0,
        detection_nodes=40, detection_seeds=(1, 2), detection_crashes=5,
        load_nodes=(8, 16, 32, 64), load_duration_s=30.0,
        dissemination_nodes=200, dissemination_seeds=(1,),
        probe_nodes=24, probe_duration_s=60.0, probe_losses=(0.1, 0.3),
        probe_ks=(0, 1, 3),
        interval_nodes=32, interval_duration_s=48.0, interval_stalled=(4,),
        interval_stall_s=(4.0, 16.0), interval_seeds=(1,),
        latency_nodes=32, latency_seeds=(1,), latency_crashes=2,
        alphas=(2, 5), betas=(2, 6), alpha_beta_seeds=(1,),
        flip_nodes=24, flip_flappers=1, flip_duration_s=150.0,
    ),
    "full": Sizes(
        scale="full", workers=2,
        detection_nodes=100, detection_seeds=tuple(range(1, 9)), detection_crashes=7,
        load_nodes=(8, 16, 32, 64, 128, 256, 512), load_duration_s=60.0,
        dissemination_nodes=1000, dissemination_seeds=(1, 2, 3),
        probe_nodes=32, probe_duration_s=120.0, probe_losses=(0.05, 0.1, 0.2, 0.3),
        probe_ks=(0, 1, 2, 3),
        interval_nodes=64, interval_duration_s=100.0, interval_stalled=(4, 16),
        interval_stall_s=(2.0, 8.0, 16.0), interval_seeds=(1,),
        latency_nodes=128, latency_seeds=(1, 2, 3), latency_crashes=5,
        alphas=(2, 3, 4, 5), betas=(2, 6), alpha_beta_seeds=(1,),
        flip_nodes=100, flip_flappers=2, flip_duration_s=240.0,
    ),
}


def scale_from_env(environ: Mapping[str, str] | None = None) -> Scale:
    """The scale named by ``SWIM_NOTEBOOK_SCALE`` (``ci`` when unset)."""
    value = (os.environ if environ is None else environ).get(SCALE_ENV, "ci").strip() or "ci"
    if value == "ci":
        return "ci"
    if value == "full":
        return "full"
    raise ValueError(f"{SCALE_ENV} must be 'ci' or 'full', not {value!r}")


def sizes_for(scale: Scale) -> Sizes:
    """The experiment sizes at `scale`."""
    return _SIZES[scale]


def make_executor(workers: int) -> concurrent.futures.Executor:
    """A process pool of `workers` (forkserver, or spawn: safe beside the kernel's and
    Dask's threads), or an `InlineExecutor` for 0 workers. The caller shuts it down."""
    if workers <= 0:
        return InlineExecutor()
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)


def run_all(fn: Callable[[_T], _R], items: Sequence[_T],
            executor: concurrent.futures.Executor) -> list[_R]:
    """``[fn(item) for item in items]`` on `executor`, in the order of `items`.

    `fn` must be a module-level function and the items picklable (a process pool or a
    Dask cluster ships them to other processes)."""
    futures = [executor.submit(fn, item) for item in items]
    return [f.result() for f in futures]


def quantile(values: Sequence[float], q: float) -> float:
    """The `q` quantile of `values` (linear interpolation, as numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# ======================================================================= closed forms


def expected_first_probe_periods(nodes: int) -> float:
    """Expected protocol periods until some member's probe picks a given crashed member,
    with members in lock step choosing targets uniformly: ``1 / (1 - (1 - 1/(n-1))^(n-1))``,
    which tends to ``e/(e-1)`` = 1.582 as n grows (the SWIM paper, section 3.1)."""
    if nodes < 2:
        raise ValueError("a probe needs at least two members")
    miss = (1.0 - 1.0 / (nodes - 1)) ** (nodes - 1)
    return 1.0 / (1.0 - miss)


def bailey_fraction(periods: float, nodes: int, contacts_per_period: float = 2.0) -> float:
    """The infected fraction after `periods` of Bailey's simple epidemic from one member,
    ``x(t) / n = 1 / (1 + (n - 1) e^(-c t))`` with `contacts_per_period` c. In SWIM each
    informed member passes news on the ping it sends and on the acks it returns, about
    two contacts a period, which gives the paper's ``n - n^-(2 lambda - 2)`` informed after
    ``lambda log n`` periods."""
    return 1.0 / (1.0 + (nodes - 1) * math.exp(-contacts_per_period * periods))


def bailey_periods_to(fraction: float, nodes: int, contacts_per_period: float = 2.0) -> float:
    """When `bailey_fraction` reaches `fraction` (the inverse of the curve)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    return math.log((nodes - 1) * fraction / (1.0 - fraction)) / contacts_per_period


def probe_failure_formula(loss: float, indirect_probes: int) -> float:
    """Probability that a probe of a live member fails under independent loss p:
    ``(1 - q^2)(1 - q^4)^k`` with q = 1 - p (the direct ping and its ack, then k
    indirect paths of four legs each)."""
    q = 1.0 - loss
    return (1.0 - q * q) * (1.0 - q**4) ** indirect_probes


# ================================================================== SWIM experiments


def swim_paper_config() -> Config:
    """SWIM as the paper analyses it: `Config.paper_swim` with news riding only on probe
    traffic (no gossip timer, no push-pull anti-entropy, no TCP fallback ping, no
    coordinates), so every datagram is a ping, ping-req, ack or nack."""
    return attrs.evolve(Config.paper_swim(), gossip_timer=False, push_pull=False,
                        tcp_fallback_ping=False, coordinates=False)


#: Crashes land this long before a period boundary, so a probe sent at the boundary
#: already finds the member gone (with `Config.synchronous_rounds`).
CRASH_LEAD_S = 0.01


@attrs.frozen(kw_only=True)
class _DetectionJob:
    variant: str
    scenario: Scenario


def crash_scenario(nodes: int, seed: int, crashes: int, config: Config, *,
                   every_s: float = 15.0) -> Scenario:
    """A converged cluster in which `crashes` members (drawn from the seed) crash one
    after another, every `every_s` seconds, each `CRASH_LEAD_S` before a period
    boundary; the run lasts until the last one has had `every_s` + 30 s."""
    period = config.probe_interval_s
    rng = random.Random(f"crashes/{nodes}/{seed}")
    members = rng.sample(range(1, nodes), crashes)
    faults = tuple(
        Crash(member=m, at=math.ceil(every_s * (j + 1) / period) * period - CRASH_LEAD_S)
        for j, m in enumerate(members)
    )
    return Scenario(nodes=nodes, duration_s=every_s * (crashes + 1) + 30.0, seed=seed,
                    config=config, start="converged", faults=faults)


def _detection_rows(job: _DetectionJob) -> list[Row]:
    result = run(job.scenario)
    return [{"variant": job.variant, **row} for row in result.detection_rows()]


def _detections(jobs: Sequence[_DetectionJob],
                executor: concurrent.futures.Executor) -> list[Row]:
    return [row for rows in run_all(_detection_rows, jobs, executor) for row in rows]


def first_detection(nodes: int, seeds: Iterable[int], crashes: int,
                    executor: concurrent.futures.Executor) -> list[Row]:
    """One row per crash: the delays to its first suspicion, first declaration and
    every member knowing, in seconds and (``first_probe_periods``) in periods.

    Two variants: ``"lock step, uniform"`` (`swim_paper_config` with synchronous rounds
    and uniformly random targets: the paper's analysis, where a crash just before a
    boundary is first suspected ``first_probe_periods`` periods later, as the probe's
    period ends) and ``"unsynchronised, round robin"`` (each member on its own phase,
    as deployed)."""
    base = swim_paper_config()
    variants = {
        "lock step, uniform": attrs.evolve(base, synchronous_rounds=True,
                                           probe_selection="uniform"),
        "unsynchronised, round robin": base,
    }
    jobs = [_DetectionJob(variant=name, scenario=crash_scenario(nodes, seed, crashes, config))
            for name, config in variants.items() for seed in seeds]
    rows = _detections(jobs, executor)
    period = base.probe_interval_s
    for row in rows:
        s = row["first_suspected_s"]
        row["first_probe_periods"] = None if s is None else (s - CRASH_LEAD_S) / period
    return rows


@attrs.frozen(kw_only=True)
class _LoadJob:
    variant: str
    nodes: int
    duration_s: float
    config: Config


def _load_row(job: _LoadJob) -> Row:
    result = run(Scenario(nodes=job.nodes, duration_s=job.duration_s, seed=1,
                          config=job.config, start="converged"))
    t = result.traffic
    return {"variant": job.variant, "nodes": job.nodes, "seed": 1,
            "datagrams_out_per_period": t.datagrams_out_per_period_mean,
            "datagrams_in_per_period": t.datagrams_in_per_period_mean,
            "messages_out_per_period": t.messages_out_per_period_mean,
            "bytes_out_per_period": t.bytes_out_per_period_mean}


def message_load(sizes: Iterable[int], duration_s: float,
                 executor: concurrent.futures.Executor) -> list[Row]:
    """Datagrams, messages and bytes each member sends (and receives) per protocol
    period, per cluster size, for the paper's SWIM (`swim_paper_config`: 2 datagrams
    out, a ping and an ack) and for memberlist's LAN profile (gossip timer, push-pull),
    seed 1, converged start, no faults."""
    variants = {"SWIM (paper)": swim_paper_config(), "memberlist LAN": Config.lan()}
    jobs = [_LoadJob(variant=name, nodes=n, duration_s=duration_s, config=config)
            for name, config in variants.items() for n in sizes]
    return run_all(_load_row, jobs, executor)


@attrs.frozen(kw_only=True)
class _DisseminationJob:
    variant: str
    nodes: int
    seed: int
    config: Config
    step_s: float
    periods: int


#: The update starts this long after a converged start (every member's probe cycle runs).
_DISSEMINATION_START_S = 10.0


def _dissemination_rows(job: _DisseminationJob) -> list[Row]:
    start = _DISSEMINATION_START_S
    period = job.config.probe_interval_s
    end = start + job.periods * period
    sim = Simulation(Scenario(nodes=job.nodes, duration_s=end, seed=job.seed,
                              config=job.config, start="converged"))
    sim.run_until(start)
    engine = sim.engine
    origin = engine.core(0)
    assert origin is not None
    # The update: member 0 changes its metadata, which raises its incarnation and is
    # disseminated like any membership news (an `Alive`); every other member that takes
    # it in emits one `MemberUpdated`, counted by the collector as "updated".
    origin.update_metadata(b"v2", now=engine.now)
    engine.poke(0)
    counts = engine.collector.event_counts
    others = job.nodes - 1
    rows: list[Row] = []
    steps = round(job.periods * period / job.step_s)
    for k in range(steps + 1):
        t = k * job.step_s
        sim.run_until(start + t)
        informed = 1 + counts.get("updated", 0)
        rows.append({"variant": job.variant, "seed": job.seed, "nodes": job.nodes,
                     "periods": t / period, "informed": informed,
                     "fraction": informed / job.nodes})
        if informed - 1 >= others:
            break
    return rows


def dissemination(nodes: int, seeds: Iterable[int], executor: concurrent.futures.Executor,
                  *, step_s: float = 0.1, periods: int = 20) -> list[Row]:
    """The informed fraction over time after one member's update (sampled every
    `step_s` until everyone has it, at most `periods` periods), for the paper's SWIM
    (news on probe traffic only) and memberlist's LAN profile (plus its gossip timer
    on a free-running ticker)."""
    variants = {"SWIM (paper)": swim_paper_config(),
                "memberlist LAN": attrs.evolve(Config.lan(), gossip_ticker=True)}
    jobs = [_DisseminationJob(variant=name, nodes=nodes, seed=s, config=config,
                              step_s=step_s, periods=periods)
            for name, config in variants.items() for s in seeds]
    return [row for rows in run_all(_dissemination_rows, jobs, executor) for row in rows]


def periods_to_fraction(rows: Iterable[Row], fraction: float) -> float | None:
    """The first sampled time (in periods) at which `fraction` of the members had the
    update, over one run's rows; None if it never did."""
    for row in rows:
        if row["fraction"] >= fraction:
            return float(row["periods"])
    return None


@attrs.frozen(kw_only=True)
class _ProbeJob:
    nodes: int
    duration_s: float
    loss: float
    indirect_probes: int
    seed: int


def _probe_row(job: _ProbeJob) -> Row:
    config = attrs.evolve(swim_paper_config(), indirect_probes=job.indirect_probes)
    scenario = Scenario(nodes=job.nodes, duration_s=job.duration_s, seed=job.seed,
                        config=config, start="converged")
    sim = Simulation(attrs.evolve(scenario, network=scenario.network.with_loss(job.loss)))
    sim.run_until(job.duration_s)
    probes = failures = 0
    for i in range(job.nodes):
        core = sim.engine.core(i)
        if core is not None:
            probes += core.stats.probes
            failures += core.stats.probe_failures
    measured = failures / probes if probes else 0.0
    expected = probe_failure_formula(job.loss, job.indirect_probes)
    return {"loss": job.loss, "k": job.indirect_probes, "seed": job.seed, "nodes": job.nodes,
            "probes": probes, "failures": failures, "measured": measured,
            "formula": expected,
            # The binomial standard error of the measured fraction about the formula.
            "stderr": math.sqrt(expected * (1 - expected) / probes) if probes else math.inf}


def probe_failure(nodes: int, duration_s: float, losses: Iterable[float],
                  ks: Iterable[int], executor: concurrent.futures.Executor,
                  *, seed: int = 1) -> list[Row]:
    """The fraction of probes of live members that failed, per loss and k, counted by
    every member (`Stats.probes`, `Stats.probe_failures`), next to the formula."""
    jobs = [_ProbeJob(nodes=nodes, duration_s=duration_s, loss=p, indirect_probes=k,
                      seed=seed) for p in losses for k in ks]
    return run_all(_probe_row, jobs, executor)


# ============================================================= Lifeguard experiments


def lifeguard_variants() -> dict[str, Config]:
    """The Lifeguard paper's arms (Table IV): SWIM (`Config.paper_swim`), each
    extension alone on top of it, and Lifeguard (`Config.paper_lifeguard`)."""
    swim = Config.paper_swim()
    lifeguard = Config.paper_lifeguard()
    return {
        "SWIM": swim,
        # Local health aware probe: nacks feed the awareness score, which stretches
        # the probe interval of a member in trouble.
        "LHA-Probe": attrs.evolve(swim, awareness=True, nacks=True),
        # Local health aware suspicion: beta = 6, K = 3 confirmations.
        "LHA-Suspicion": attrs.evolve(
            swim, dynamic_suspicion=True,
            suspicion_max_timeout_mult=lifeguard.suspicion_max_timeout_mult,
            suspicion_confirmations=lifeguard.suspicion_confirmations),
        "Buddy System": attrs.evolve(swim, buddy_system=True),
        "Lifeguard": lifeguard,
    }


def stall_scenario(nodes: int, stalled: int, stall_s: float, interval_s: float, *,
                   duration_s: float, mode: StallMode = "input", seed: int = 0) -> Scenario:
    """The Lifeguard paper's interval experiment: `stalled` members (C, non-seeds, drawn
    from the sizes alone so every arm stalls the same ones) stall together for `stall_s`
    (D), then run for `interval_s` (I), over and over from a sixth of the run to its
    end. ``mode="input"`` is the paper's slow message processing (timers run, input
    waits); ``"process"`` is SIGSTOP-like."""
    rng = random.Random(f"stall-fp/{nodes}/{stalled}")
    members = tuple(sorted(rng.sample(range(1, nodes), stalled)))
    start = duration_s / 6
    cycles = max(1, int((duration_s - start) // (stall_s + interval_s)))
    return Scenario(nodes=nodes, duration_s=duration_s, start="converged", seed=seed, faults=(
        Stall(members=members, at=start, duration_s=stall_s, cycles=cycles,
              interval_s=interval_s, mode=mode),))


def interval_false_positives(variants: Mapping[str, Config], nodes: int,
                             stalled: Iterable[int], stall_s: Iterable[float],
                             seeds: Iterable[int], *, executor: concurrent.futures.Executor,
                             duration_s: float, interval_s: float = 1.0) -> list[Row]:
    """One row per variant, C, D and seed: the paper's FP (declarations about healthy
    members, once per raiser) and FP- (of those, raised by healthy members), every
    declaration about a live member (``raised``), messages and bytes sent."""
    seed_list = list(seeds)
    points = []
    cells = []
    for c in stalled:
        for d in stall_s:
            base = stall_scenario(nodes, c, d, interval_s, duration_s=duration_s)
            cell_points = grid(base, dict(variants), seeds=seed_list)
            points += cell_points
            cells += [(c, d)] * len(cell_points)
    table = sweep(points, executor=executor)
    return [{"variant": row["variant"], "C": c, "D": d, "I": interval_s, "seed": row["seed"],
             "nodes": nodes, "fp": row["fp"], "fp_minus": row["fp_minus"],
             "raised": row["failures_raised"], "messages": row["total_messages"],
             "bytes": row["total_bytes"]}
            for (c, d), row in zip(cells, table.rows, strict=True)]


def detection_latency(variants: Mapping[str, Config], nodes: int, seeds: Iterable[int],
                      crashes: int, executor: concurrent.futures.Executor) -> list[Row]:
    """One row per crash and variant (`crash_scenario`): delays to the first suspicion,
    the first declaration (the paper's detection latency) and every member knowing
    (its full dissemination)."""
    seed_list = list(seeds)
    jobs = [_DetectionJob(variant=name, scenario=crash_scenario(nodes, seed, crashes, config,
                                                                every_s=25.0))
            for name, config in variants.items() for seed in seed_list]
    return _detections(jobs, executor)


def latency_table(rows: Iterable[Row]) -> list[Row]:
    """Per variant: crashes, median and 99th percentile of the first declaration and of
    every member knowing (seconds after the crash), and the undetected crashes."""
    by_variant: dict[str, list[Row]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append(row)
    out = []
    for variant, mine in by_variant.items():
        first = [r["first_failed_s"] for r in mine if r["first_failed_s"] is not None]
        every = [r["all_know_s"] for r in mine if r["all_know_s"] is not None]
        out.append({
            "variant": variant, "crashes": len(mine),
            "first_failed_median_s": statistics.median(first) if first else None,
            "first_failed_p99_s": quantile(first, 0.99) if first else None,
            "all_know_median_s": statistics.median(every) if every else None,
            "all_know_p99_s": quantile(every, 0.99) if every else None,
            "undetected": len(mine) - len(every),
        })
    return out


def alpha_beta(alphas: Iterable[int], betas: Iterable[int], nodes: int, seeds: Iterable[int],
               executor: concurrent.futures.Executor, *, duration_s: float, stalled: int,
               stall_s: float, crashes: int) -> list[Row]:
    """Lifeguard (`Config.paper_lifeguard`, K = 3) for every alpha (`suspicion_mult`) and
    beta (`suspicion_max_timeout_mult`): FP and FP- in the interval experiment (C =
    `stalled`, D = `stall_s`, I = 1 s) and the median latency to the first declaration
    of a crash, one row per (alpha, beta)."""
    seed_list = list(seeds)
    variants = {
        f"a={a},b={b}": attrs.evolve(Config.paper_lifeguard(), suspicion_mult=a,
                                     suspicion_max_timeout_mult=b)
        for a in alphas for b in betas
    }
    fp_rows = interval_false_positives(variants, nodes, [stalled], [stall_s], seed_list,
                                       executor=executor, duration_s=duration_s)
    latency = {row["variant"]: row for row in latency_table(
        detection_latency(variants, nodes, seed_list, crashes, executor))}
    out = []
    for name, config in variants.items():
        lat = latency[name]
        mine = [r for r in fp_rows if r["variant"] == name]
        out.append({"alpha": config.suspicion_mult, "beta": config.suspicion_max_timeout_mult,
                    "seeds": len(seed_list), "fp": sum(r["fp"] for r in mine),
                    "fp_minus": sum(r["fp_minus"] for r in mine),
                    "first_failed_median_s": lat["first_failed_median_s"],
                    "all_know_median_s": lat["all_know_median_s"]})
    return out


# ================================================================= flip-flop faults


@attrs.frozen(kw_only=True)
class _FlipJob:
    nodes: int
    flappers: tuple[int, ...]
    duration_s: float
    seed: int
    config: Config
    on_s: float
    off_s: float
    start_s: float
    sample_s: float


def flip_flop_faults(nodes: int, flappers: Sequence[int], *, start_s: float, on_s: float,
                     off_s: float, until_s: float) -> tuple[Fault, ...]:
    """The flappers lose all ingress for `on_s` (nothing the other members send reaches
    them, streams included; they can still send), then have it back for `off_s`, over
    and over from `start_s` until `until_s` (one-way `Partition` windows from the rest
    of the cluster to them), as in the Rapid paper's flip-flop experiment."""
    flapping = tuple(flappers)
    rest = tuple(i for i in range(nodes) if i not in set(flapping))
    schedule = FlipFlop(members=flapping, at=start_s, down_s=on_s, up_s=off_s)
    return tuple(
        Partition(groups=(rest, flapping), at=start, heal_at=stop, one_way=True)
        for start, stop in schedule.windows(until_s)
    )


def _flip_rows(job: _FlipJob) -> list[Row]:
    faults = flip_flop_faults(job.nodes, job.flappers, start_s=job.start_s, on_s=job.on_s,
                              off_s=job.off_s, until_s=job.duration_s)
    sim = Simulation(Scenario(nodes=job.nodes, duration_s=job.duration_s, seed=job.seed,
                              config=job.config, start="converged", faults=faults))
    engine = sim.engine
    flapping = set(job.flappers)
    rows: list[Row] = []
    steps = round(job.duration_s / job.sample_s)
    for k in range(steps + 1):
        t = k * job.sample_s
        sim.run_until(t)
        for i in range(job.nodes):
            # The view `simulations.flipflop` measures: the members alive or suspect
            # (as memberlist's Members()), or in the stable-view mode the configuration.
            view = view_of(engine, engine.collector, i)
            if view is not None:
                rows.append({"t": t, "observer": i, "flapper": i in flapping,
                             "view_size": len(view[1])})
    return rows


def flip_flop(nodes: int, flappers: int, duration_s: float,
              executor: concurrent.futures.Executor, *, config: Config | None = None,
              seed: int = 1, on_s: float = 20.0, off_s: float = 10.0,
              sample_s: float = 1.0) -> list[Row]:
    """Every observer's view size (members alive or suspect in its view, itself
    included) every `sample_s`, while `flappers` members (the last ones) flap with
    `flip_flop_faults` from a tenth of the run on; `config` defaults to memberlist's
    LAN profile. One row per sample and observer."""
    members = tuple(range(nodes - flappers, nodes))
    job = _FlipJob(nodes=nodes, flappers=members, duration_s=duration_s, seed=seed,
                   config=Config.lan() if config is None else config, on_s=on_s,
                   off_s=off_s, start_s=duration_s / 10, sample_s=sample_s)
    (rows,) = run_all(_flip_rows, [job], executor)
    return rows


def view_summary(rows: Iterable[Row]) -> list[Row]:
    """Per sample time: the smallest, median and largest view size among the observers
    that do not flap, and how many different sizes they hold."""
    by_t: dict[float, list[int]] = {}
    for row in rows:
        if not row["flapper"]:
            by_t.setdefault(row["t"], []).append(row["view_size"])
    return [{"t": t, "min": min(s), "median": statistics.median(s), "max": max(s),
             "distinct_sizes": len(set(s))} for t, s in sorted(by_t.items())]
