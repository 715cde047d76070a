"""The `Stall` fault on real processes: SIGSTOP and SIGCONT on the fault's schedule.

    python -m simulations.real_stall --pid 4242 --pid 4243 --at 5 --duration 9
    python -m simulations.real_stall --pid 4242 --duration 2 --cycles 10 --interval 3

The same `simulations.faults.Stall` value the simulator plays: every process it names is
stopped (SIGSTOP) at ``at + c * (duration_s + interval_s)`` and continued (SIGCONT)
``duration_s`` later, ``cycles`` times, all of them together (one signal after the other,
microseconds apart). A stopped process is what the simulator's stall models: the kernel
keeps queueing its UDP datagrams in the socket buffer (dropping the overflow) and accepts
TCP connections into the listen backlog; on SIGCONT its overdue timers fire and it reads
what waited.

Bounded and self-stopping: a schedule longer than ``limit_s`` (10 minutes by default) is
refused; the schedule ends by itself; and whatever ends it (the last window, an error,
cancellation, Ctrl-C or SIGTERM to the tool) every process it stopped is sent SIGCONT
before it returns. A process that has exited is skipped. Only SIGKILL of the tool itself
can leave a process stopped; ``kill -CONT <pid>`` then resumes it.

`stall_processes` is the trio function (tests call it beside a `LocalCluster`); `main`
the command line. Member ``m`` of the `Stall` is ``pids[m]`` (``--pid`` in order); the
command line stalls every pid it is given.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence

import attrs
import trio

from simulations.faults import Stall

#: Longest schedule (from the call to the last SIGCONT) accepted by default.
LIMIT_S = 600.0


@attrs.frozen(kw_only=True)
class StallWindow:
    """One stall as it happened: wall-clock times (``time.time()``) of the SIGSTOP and
    SIGCONT, and which processes were stopped (those still alive at the SIGSTOP)."""

    stopped_at: float
    resumed_at: float
    pids: tuple[int, ...]


def _signal(pid: int, sig: signal.Signals) -> bool:
    """Send `sig` to `pid`; False if the process no longer exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _chosen(pids: Sequence[int], stall: Stall) -> tuple[int, ...]:
    """The pids `stall` stops; ValueError for a member without one or a pid not to stop."""
    if stall.mode != "process":
        raise ValueError(f"{stall!r}: SIGSTOP stops the whole process; a real process "
                         "cannot have only its input stalled from outside")
    try:
        chosen = tuple(pids[m] for m in stall.members)
    except IndexError:
        raise ValueError(f"{stall!r}: only {len(pids)} pids given") from None
    own = {os.getpid(), os.getppid()}
    for pid in chosen:
        if pid <= 1 or pid in own:
            raise ValueError(f"refusing to stop pid {pid} (init, this process or its parent)")
    return chosen


def _check_length(stall: Stall, ends_in_s: float, limit_s: float) -> None:
    if ends_in_s > limit_s:
        raise ValueError(f"{stall!r} ends {ends_in_s:.1f} s from now, past the {limit_s:g} s "
                         "limit")


async def stall_processes(
    pids: Sequence[int], stall: Stall, *, start: float | None = None, limit_s: float = LIMIT_S,
) -> list[StallWindow]:
    """Play `stall` on the processes ``pids[m]`` for ``m`` in ``stall.members``.

    Times in `stall` are seconds after `start` (a `trio.current_time()` value; default:
    now). Returns the windows as they happened. Every process stopped here is continued
    before this returns or raises, whatever the reason (cancellation included).
    """
    chosen = _chosen(pids, stall)
    now = trio.current_time()
    t0 = now if start is None else start
    windows = stall.windows()
    _check_length(stall, t0 + windows[-1][1] - now, limit_s)
    stopped: set[int] = set()
    out: list[StallWindow] = []
    try:
        for begin, end in windows:
            await trio.sleep_until(t0 + begin)
            # Lock step: one signal after the other, no checkpoint in between.
            stopped_at = time.time()
            for pid in chosen:
                if _signal(pid, signal.SIGSTOP):
                    stopped.add(pid)
            held = tuple(p for p in chosen if p in stopped)
            await trio.sleep_until(t0 + end)
            resumed_at = time.time()
            for pid in held:
                _signal(pid, signal.SIGCONT)
                stopped.discard(pid)
            out.append(StallWindow(stopped_at=stopped_at, resumed_at=resumed_at, pids=held))
    finally:
        # Never leave a process stopped: not on error, not on cancellation.
        for pid in sorted(stopped):
            _signal(pid, signal.SIGCONT)
    return out


async def _main(pids: list[int], stall: Stall, limit_s: float) -> list[StallWindow]:
    async with trio.open_nursery() as nursery:
        result: list[StallWindow] = []

        async def play() -> None:
            result.extend(await stall_processes(pids, stall, limit_s=limit_s))
            nursery.cancel_scope.cancel()

        async def on_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    print("real_stall: interrupted; continuing every stopped process",
                          file=sys.stderr)
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(on_signals)
        nursery.start_soon(play)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulations.real_stall",
        description="Stop processes together with SIGSTOP for D s every D+I s "
                    "(the simulator's Stall), always continuing them at the end.",
    )
    parser.add_argument("--pid", type=int, action="append", required=True,
                        help="a process to stall (repeat for several, stalled together)")
    parser.add_argument("--at", type=float, default=0.0, help="seconds before the first stall")
    parser.add_argument("--duration", type=float, required=True, help="D: seconds stopped")
    parser.add_argument("--cycles", type=int, default=1, help="how many stalls (1)")
    parser.add_argument("--interval", type=float, default=0.0,
                        help="I: seconds running between stalls (0)")
    parser.add_argument("--limit", type=float, default=LIMIT_S,
                        help=f"refuse schedules longer than this many seconds ({LIMIT_S:g})")
    args = parser.parse_args(argv)
    try:
        stall = Stall(members=range(len(args.pid)), at=args.at, duration_s=args.duration,
                      cycles=args.cycles, interval_s=args.interval)
        _chosen(args.pid, stall)
        _check_length(stall, stall.windows()[-1][1], args.limit)
    except ValueError as exc:
        parser.error(str(exc))
    windows = trio.run(_main, args.pid, stall, args.limit)
    for w in windows:
        print(f"stopped {len(w.pids)} process(es) for {w.resumed_at - w.stopped_at:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
