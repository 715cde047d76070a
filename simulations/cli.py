"""`swim sim`: run one simulated scenario from the command line.

    swim sim --nodes 100 --duration 120 --seed 7 --kill 3@30 --loss 0.05
    swim sim --nodes 50 --duration 200 --pause 4:5:10 --json
    swim sim --nodes 64 --duration 300 --stall 8:12:4 --start converged
    swim sim --nodes 20 --duration 120 --partition 0-9/10-19@20:60

Faulty members are drawn from the seed among the non-seed members, so the same command
line always simulates the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from typing import Any

from simulations.faults import Crash, Fault, Partition, Pause, Stall
from simulations.metrics import RunResult
from simulations.network import NetworkModel
from simulations.scenario import Scenario, Simulation
from swim.core import Config

_INF = float("inf")


# ----------------------------------------------------------------------- flag parsing


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def _kill(text: str) -> tuple[int, float | None]:
    """``K`` or ``K@T``: kill K members at time T (default: a third of the run)."""
    count, _, at = text.partition("@")
    try:
        k = int(count)
        t = float(at) if at else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or K@T (e.g. 3@30), got {text!r}") from None
    if k < 1 or (t is not None and (t < 0 or math.isinf(t))):
        raise argparse.ArgumentTypeError(f"expected K >= 1 and T >= 0, got {text!r}")
    return k, t


def _pause(text: str) -> tuple[int, float, float]:
    """``C:D:I``: C members paused for D seconds, every D + I seconds (Lifeguard)."""
    parts = text.split(":")
    try:
        c, d, i = int(parts[0]), float(parts[1]), float(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected C:D:I (e.g. 4:5:10), got {text!r}") from None
    if c < 1 or not d > 0 or i < 0:
        raise argparse.ArgumentTypeError(f"expected C >= 1, D > 0, I >= 0, got {text!r}")
    return c, d, i


def _members(text: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        a = int(lo)
        b = int(hi) if dash else a
        if a < 0 or b < a:
            raise ValueError
        out.extend(range(a, b + 1))
    return tuple(out)


def _partition(text: str) -> tuple[tuple[tuple[int, ...], ...], bool, float | None, float]:
    """``A/B[/C...][@START[:HEAL]]`` (symmetric) or ``A>B[@START[:HEAL]]`` (one-way)."""
    groups_text, _, times = text.partition("@")
    one_way = ">" in groups_text
    try:
        parts = groups_text.split(">" if one_way else "/")
        if len(parts) < 2:
            raise ValueError
        groups = tuple(_members(p) for p in parts)
        start_text, _, heal_text = times.partition(":")
        start = float(start_text) if start_text else None
        heal = float(heal_text) if heal_text else _INF
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected groups like 0-4/5-9 or 0-4>5-9, optionally @START[:HEAL], got {text!r}"
        ) from None
    if (start is not None and start < 0) or (start is not None and heal <= start):
        raise argparse.ArgumentTypeError(f"the heal time must follow the start: {text!r}")
    return groups, one_way, start, heal


def register(sub: Any) -> None:
    """Add the `sim` subcommand to the `swim` parser's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "sim", help="run a simulated cluster",
        description="Run the real protocol core in a deterministic simulated network.",
    )
    p.add_argument("--nodes", type=_positive_int, default=50, help="cluster size (50)")
    p.add_argument("--duration", type=_positive_float, default=60.0,
                   help="simulated seconds (60)")
    p.add_argument("--seed", type=int, default=0, help="run seed (0)")
    p.add_argument("--profile", choices=("lan", "wan", "local"), default="lan",
                   help="protocol and network profile (lan)")
    p.add_argument("--loss", type=_probability, default=0.0,
                   help="independent datagram loss probability (0)")
    p.add_argument("--dup", type=_probability, default=0.0,
                   help="datagram duplication probability (0)")
    p.add_argument("--kill", type=_kill, action="append", default=[], metavar="K[@T]",
                   help="crash K members at T seconds (default: a third of the run)")
    p.add_argument("--pause", type=_pause, metavar="C:D:I",
                   help="pause C members for D s every D+I s, from a sixth of the run")
    p.add_argument("--stall", type=_pause, metavar="C:D:I",
                   help="stall C members together (as SIGSTOP: arrivals queue, overdue "
                        "timers fire on resume) for D s every D+I s, from a sixth of the run")
    p.add_argument("--stall-mode", choices=("process", "input"), default="process",
                   help="process: everything stops (SIGSTOP, the default); input: only "
                        "message processing stops, timers run (slow message processing)")
    p.add_argument("--partition", type=_partition, action="append", default=[],
                   metavar="SPEC",
                   help="A/B[@START[:HEAL]] symmetric or A>B one-way; groups are index "
                        "ranges like 0-4,7 (unlisted members form one more group)")
    p.add_argument("--mode", choices=("wire", "object"), default="object",
                   help="wire: real codec on every packet; object: messages handed over")
    p.add_argument("--start", choices=("join", "converged"), default="join",
                   help="join through the seeds, or start converged (join)")
    p.add_argument("--seeds", type=_positive_int, default=1, help="seed members (1)")
    p.add_argument("--stagger", type=float, default=0.0, metavar="SECONDS",
                   help="spread the initial joins over this long (0)")
    p.add_argument("--plain-swim", action="store_true",
                   help="turn every Lifeguard extension off")
    p.add_argument("--trace", action="store_true", help="hash the whole trace")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(handler=run, sim_parser=p)


# ------------------------------------------------------------------------ the command


def build_scenario(args: argparse.Namespace) -> Scenario:
    """The scenario a parsed `swim sim` command line describes (ValueError if invalid)."""
    n = args.nodes
    duration = args.duration
    config = Config.profile(args.profile)
    if args.plain_swim:
        config = config.plain_swim()
    network = NetworkModel.profile(args.profile)
    if args.loss:
        network = network.with_loss(args.loss)
    if args.dup:
        network = network.with_duplicates(args.dup)
    if args.seeds > n:
        raise ValueError(f"--seeds {args.seeds} exceeds --nodes {n}")
    rng = random.Random(f"{args.seed}/cli")
    pool = list(range(args.seeds, n))
    rng.shuffle(pool)
    faults: list[Fault] = []
    for k, at in args.kill:
        if k > len(pool):
            raise ValueError(f"--kill {k}: only {len(pool)} non-seed members left to kill")
        t = duration / 3 if at is None else at
        faults += [Crash(member=pool.pop(), at=t) for _ in range(k)]
    if args.pause is not None:
        c, d, i = args.pause
        if c > len(pool):
            raise ValueError(f"--pause {c}: only {len(pool)} non-seed members left to pause")
        start = duration / 6
        cycles = max(1, int((duration - start) // (d + i)))
        faults += [
            Pause(member=pool.pop(), at=start, duration_s=d, cycles=cycles, interval_s=i)
            for _ in range(c)
        ]
    if args.stall is not None:
        c, d, i = args.stall
        if c > len(pool):
            raise ValueError(f"--stall {c}: only {len(pool)} non-seed members left to stall")
        start = duration / 6
        cycles = max(1, int((duration - start) // (d + i)))
        stalled = tuple(sorted(pool.pop() for _ in range(c)))
        faults.append(Stall(members=stalled, at=start, duration_s=d, cycles=cycles,
                            interval_s=i, mode=args.stall_mode))
    for groups, one_way, at, heal in args.partition:
        for g in groups:
            bad = [m for m in g if m >= n]
            if bad:
                raise ValueError(f"--partition: member {bad[0]} does not exist (--nodes {n})")
        t = duration / 4 if at is None else at
        faults.append(Partition(groups=groups, at=t, heal_at=heal, one_way=one_way))
    return Scenario(
        nodes=n, duration_s=duration, seed=args.seed, config=config, network=network,
        mode=args.mode, start=args.start, seeds=args.seeds, join_stagger_s=args.stagger,
        faults=tuple(faults), trace=args.trace,
    )


def run(args: argparse.Namespace) -> int:
    """Run the scenario and print its summary (or JSON)."""
    parser: argparse.ArgumentParser = args.sim_parser
    try:
        scenario = build_scenario(args)
    except ValueError as exc:
        parser.error(str(exc))
    sim = Simulation(scenario)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    _run_with_progress(sim, scenario.duration_s, show)
    result = sim.result()
    if args.json:
        json.dump(_jsonable(result.to_dict()), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(summary(result))
    return 0


def _run_with_progress(sim: Simulation, end: float, show: bool) -> None:
    if not show:
        sim.run_until(end)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    started = time.perf_counter()
    state: dict[str, Any] = {}

    def progress(now: float) -> None:
        bar = state.get("bar")
        if bar is None:
            if time.perf_counter() - started < 1.0:
                return  # short runs get no bar
            bar = Progress(
                TextColumn("simulating"), BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} s"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )
            bar.start()
            state["bar"] = bar
            state["task"] = bar.add_task("sim", total=end)
        bar.update(state["task"], completed=now)

    try:
        sim.run_until(end, progress)
    finally:
        bar = state.get("bar")
        if bar is not None:
            bar.stop()


def _jsonable(value: Any) -> Any:
    """Non-finite floats become None, so the output is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _fmt(value: float | None, unit: str = "s") -> str:
    return "never" if value is None else f"{value:.2f} {unit}"


def summary(result: RunResult) -> str:
    """A readable report of one run."""
    lines = []
    sc = result.scenario
    lines.append(
        f"swim sim: {result.nodes} members, {result.duration_s:g} s simulated, "
        f"seed {result.seed}, {result.mode} mode, start={sc['start']}"
    )
    lines.append(
        f"  wall {result.wall_s:.2f} s, {result.sim_events} events "
        f"({result.sim_events_per_s:,.0f}/s), "
        f"{result.member_s_per_wall_s:,.0f} member-s per wall s"
    )
    if result.detections:
        lines.append("detection (delay after the fault):")
        for d in result.detections:
            note = " (restarted first)" if d.restarted else ""
            lines.append(
                f"  {d.name:>10} {d.kind:<5} at {d.at:7.2f}: first suspected "
                f"{_fmt(d.first_suspected_s)}, first failed {_fmt(d.first_failed_s)}, "
                f"known to all {_fmt(d.all_know_s)}{note}"
            )
    fp = result.false_positives
    lines.append(
        f"false positives: {fp.total} (raised by healthy members {fp.by_healthy}, "
        f"by paused/slow {fp.by_faulty}; about healthy members {fp.about_healthy})"
    )
    lines.append(
        f"false positives once per raiser: {fp.raised} declared, FP {fp.fp} about "
        f"healthy members, FP- {fp.fp_minus} of them by healthy members"
    )
    t = result.traffic
    lines.append(
        f"traffic per member per protocol period: {t.datagrams_out_per_period_mean:.2f} "
        f"datagrams out (max {t.datagrams_out_per_period_max:.2f}), "
        f"{t.messages_out_per_period_mean:.2f} messages, "
        f"{t.bytes_out_per_period_mean:.0f} bytes out (max {t.bytes_out_per_period_max:.0f})"
    )
    net = result.network
    lines.append(
        f"network: {net.sent} datagrams sent, {net.delivered} delivered, {net.lost} lost, "
        f"{net.blocked} blocked, {net.undeliverable} undeliverable, "
        f"{net.streams} streams ({net.streams_failed} failed)"
        + (f", {net.queued} queued by stalls ({net.overflowed} overflowed)"
           if net.queued or net.overflowed else "")
    )
    for c in result.convergence:
        lines.append(f"convergence after {c.label} at {c.at:.2f}: {_fmt(c.took_s)}")
    peak = "n/a" if result.disagreement_peak is None else str(result.disagreement_peak)
    lines.append(
        f"views: {result.distinct_views_max} distinct at most, "
        f"{result.distinct_views_final} at the end; disagreement peak {peak}, "
        f"final {result.disagreement_final} ({result.disagreement_final_frac:.2%} of pairs)"
    )
    counts = ", ".join(f"{k} {v}" for k, v in result.event_counts.items())
    lines.append(f"events: {counts}")
    if result.trace_digest:
        lines.append(f"trace: {result.trace_digest}")
    return "\n".join(lines) + "\n"
