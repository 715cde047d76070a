"""Health checks run by a node (issue 9, item 3): a callable polled on an interval, each
run bounded by a timeout, its result one of the node's health sources
(`swim.runtime.health`).

A check is a callable of no arguments returning a `HealthStatus` (or its text,
``"passing"``...) or a `HealthResult` (a status with a note saying why: a script's
output, an HTTP status line), or an awaitable of one. `evaluate` runs it once and maps every way of
going wrong to critical, with a note saying which: it raised (``check raised
OSError: ...``), it did not finish within ``timeout_s`` (``check timed out after 2 s``), or
it returned something else (``check returned None, not a HealthStatus``).

Where a check runs. A coroutine function (``async def``) runs in the node's trio loop and
is cancelled at its timeout. Anything else runs in a worker thread (`trio.to_thread`,
abandoned at the timeout), so a blocking check (a socket without a timeout, a slow disk)
never stalls the protocol: a member whose check hangs is critical, never failed. An
abandoned thread runs on until its call returns, and the next run does not start another
meanwhile (that run is critical: ``the previous run is still going``), so a hanging check
holds one thread at most. ``in_thread=False`` runs a plain function inline instead: it
must then be quick, since it holds the loop while it runs.

Cadence: the first run starts at once, the next ``interval_s`` after the previous one
started (at once if a run took longer). Each result goes to the node, which republishes
its metadata only when its worst source changes (see `swim.runtime.health`), so a check
that keeps passing costs no gossip. Stopping a check (`HealthCheck.stop`, leaving
``Node.run_health_check``'s block, or the node stopping) removes its source, and the node's
health becomes the worst of what remains.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import trio

from swim.runtime.health import HealthResult, HealthStatus

#: What a check returns: a status, its text, or a status with a note.
CheckValue = HealthStatus | str | HealthResult
#: A health check: returns a `CheckValue`, or an awaitable of one.
Check = Callable[[], Awaitable[CheckValue] | CheckValue]
#: Where a check's results go: ``publish(source, result)``; None withdraws the source.
Publish = Callable[[str, HealthResult | None], None]

_CRITICAL: Final = HealthStatus.CRITICAL


@attrs.define(eq=False)
class ThreadSlot:
    """Whether a check's worker thread is still running (it may outlive its timeout)."""

    busy: bool = False

    def wrap(self, check: Callable[[], object]) -> Callable[[], object]:
        def call() -> object:
            try:
                return check()
            finally:
                self.busy = False  # set in the worker thread; read in the loop

        return call


def is_async(check: object) -> bool:
    """Whether `check` is a coroutine function (or an object whose ``__call__`` is)."""
    call = type(check).__call__ if callable(check) else None
    return inspect.iscoroutinefunction(check) or inspect.iscoroutinefunction(call)


async def evaluate(
    check: Check,
    timeout_s: float,
    *,
    in_thread: bool | None = None,
    slot: ThreadSlot | None = None,
) -> HealthResult:
    """Run `check` once, bounded by `timeout_s`; its result, critical on any failure.

    `in_thread`: None runs a coroutine function in the loop and anything else in a worker
    thread; True or False force either. `slot` tracks the worker thread across runs so a
    hanging check holds at most one (a fresh slot is used if None).
    """
    threaded = (not is_async(check)) if in_thread is None else in_thread
    value: object = None
    with trio.move_on_after(timeout_s) as scope:
        try:
            if threaded:
                slot = slot if slot is not None else ThreadSlot()
                if slot.busy:
                    return HealthResult(_CRITICAL, "the previous run is still going")
                slot.busy = True
                value = await trio.to_thread.run_sync(slot.wrap(check), abandon_on_cancel=True)
            else:
                value = check()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:  # any failure of the check is its result
            return HealthResult(_CRITICAL, f"check raised {type(exc).__name__}: {exc}")
    if scope.cancelled_caught:
        return HealthResult(_CRITICAL, f"check timed out after {timeout_s:g} s")
    if isinstance(value, HealthResult):
        return value
    if isinstance(value, HealthStatus | str):
        try:
            return HealthResult(HealthStatus.parse(value))
        except ValueError:
            pass
    return HealthResult(_CRITICAL, f"check returned {value!r:.40}, not a HealthStatus")


@attrs.define(eq=False)
class HealthCheck:
    """A check running in a node (``Node.start_health_check``): its settings, its
    latest result and a way to stop it. `stop` may be called from any thread."""

    #: The check's source name among the node's health sources.
    name: str
    interval_s: float
    timeout_s: float
    #: The latest result (None until the first run ends).
    last: HealthResult | None = None
    #: Runs finished.
    runs: int = 0
    #: Runs whose result was not passing.
    not_passing: int = 0
    _scope: trio.CancelScope = attrs.field(init=False, factory=trio.CancelScope)
    _token: trio.lowlevel.TrioToken = attrs.field(
        init=False, factory=trio.lowlevel.current_trio_token
    )
    _done: trio.Event = attrs.field(init=False, factory=trio.Event)

    @property
    def running(self) -> bool:
        """Whether the check still runs (False once stopped, or once its node stopped)."""
        return not self._done.is_set()

    def stop(self) -> None:
        """Stop the check and withdraw its result from the node's health. Returns at
        once; `wait_stopped` waits until it is done."""
        try:
            here = trio.lowlevel.current_trio_token() is self._token
        except RuntimeError:
            here = False
        if here:
            self._scope.cancel()
        else:
            # A loop that is gone took the check with it.
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._scope.cancel)

    async def wait_stopped(self) -> None:
        """Wait until the check has stopped (and its source was withdrawn)."""
        await self._done.wait()


async def run_check_loop(
    handle: HealthCheck,
    check: Check,
    publish: Publish,
    *,
    in_thread: bool | None = None,
) -> None:
    """Run `check` every ``handle.interval_s`` until ``handle.stop()`` or cancellation,
    handing each result to `publish`; withdraws the source on the way out."""
    slot = ThreadSlot()
    try:
        with handle._scope:
            next_at = trio.current_time()
            while True:
                result = await evaluate(
                    check, handle.timeout_s, in_thread=in_thread, slot=slot
                )
                handle.last = result
                handle.runs += 1
                if result.status is not HealthStatus.PASSING:
                    handle.not_passing += 1
                publish(handle.name, result)
                next_at = max(next_at + handle.interval_s, trio.current_time())
                await trio.sleep_until(next_at)
    finally:
        handle._done.set()
        publish(handle.name, None)
