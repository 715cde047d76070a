"""Child processes the agent runs (event handlers, script health checks): feeding and
reading their pipes with bounds, killing a whole process group, and describing how a
run ended in one log line.

A child runs in its own session (``start_new_session=True``), so its process group is
its own and `kill_group` takes down whatever it started too (a shell's children).
"""

from __future__ import annotations

import os
import signal
from typing import Any

import attrs
import trio

#: How long output is still read once the child itself exited (a background child of
#: a script may hold the pipe open; it is not waited for).
OUTPUT_GRACE_S = 0.2


@attrs.define
class Collector:
    """The first `limit` bytes of a stream, and how many were seen."""

    limit: int
    data: bytes = b""
    seen: int = 0

    def add(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]


async def communicate(
    process: trio.Process, stdin: bytes, out: Collector, err: Collector | None = None
) -> None:
    """Feed stdin (if the child has a stdin pipe), collect stdout and stderr (stderr into
    `out` too when `err` is None), wait for the exit, then at most `OUTPUT_GRACE_S` for
    the pipes to close."""

    async def feed() -> None:
        if process.stdin is None:
            return
        try:
            if stdin:
                await process.stdin.send_all(stdin)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the child did not read its stdin: fine
        finally:
            await process.stdin.aclose()

    async def collect(stream: Any, collector: Collector) -> None:
        if stream is None:
            return
        try:
            while chunk := await stream.receive_some(65536):
                collector.add(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        async with trio.open_nursery() as pipes:
            pipes.start_soon(collect, process.stdout, out)
            pipes.start_soon(collect, process.stderr, out if err is None else err)
            await process.wait()
            pipes.cancel_scope.deadline = trio.current_time() + OUTPUT_GRACE_S
        nursery.cancel_scope.cancel()


def kill_group(process: trio.Process) -> None:
    """SIGKILL the child's process group (the child alone if that is refused)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


async def reap(process: trio.Process) -> None:
    """Kill the child's group if it still runs, wait for it and close its pipes; shielded,
    so it completes even while the caller is being cancelled."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            kill_group(process)
            await process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9, ``signal 99`` for a number that names none."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_text(code: int | None) -> str:
    """How a child ended: ``exit 2``, ``killed by SIGTERM``."""
    if code is not None and code < 0:
        return f"killed by {signal_name(-code)}"
    return f"exit {code}"


def tail(data: bytes, limit: int = 200) -> str:
    """The last three non-empty lines of `data`, joined with `` | ``, at most `limit`
    characters (cut at the front)."""
    text = data.decode("utf-8", "replace").strip()
    if not text:
        return ""
    last = " | ".join(line.strip() for line in text.splitlines()[-3:] if line.strip())
    return last if len(last) <= limit else "..." + last[-limit:]
