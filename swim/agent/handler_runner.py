"""Running the agent's event handlers (`swim.agent.handlers` says what they get): the
queue, the concurrency limit, the processes and their timeouts, a query handler's answer.

Imported only by an agent started with ``--event-handler``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping

import attrs
import trio

from swim.agent.handlers import MEMBER_EVENTS, HandlerSpec, both_prefixes, member_line
from swim.agent.processes import Collector, communicate, exit_text, reap, tail
from swim.agent.tags import MalformedTags, decode_user_event_untrusted, tags_of
from swim.core.errors import ProtocolError
from swim.core.events import QueryReceived, UserBroadcastReceived

#: Handler runs at once; further events wait their turn.
MAX_CONCURRENT = 8
#: Events waiting for a handler slot; beyond this they are dropped (and counted).
MAX_PENDING = 1024
#: How much of a handler's stdout (besides a query's answer) and stderr is kept.
MAX_OUTPUT_BYTES = 8 * 1024

#: Inherited variables of these names are dropped, so a handler sees only this event's.
_OURS = ("SERF_", "SWIM_EVENT", "SWIM_SELF_", "SWIM_TAG_", "SWIM_USER_", "SWIM_QUERY_")


def _payload_stdin(payload: bytes) -> bytes:
    return payload if not payload or payload.endswith(b"\n") else payload + b"\n"


@attrs.frozen(kw_only=True)
class Invocation:
    """What one event gives its handlers."""

    #: The event type (``SWIM_EVENT``).
    kind: str
    #: A user event's or a query's name (None for member events).
    name: str | None
    #: The event's own variables, both ``SWIM_*`` and ``SERF_*``.
    env: Mapping[str, str]
    stdin: bytes
    #: For a query: (origin, id, deadline on the node's clock).
    query: tuple[str, int, float] | None = None
    #: Whether the agent already answered the query (``--query-response``).
    answered: bool = False


def invocation_of(event: object, *, answered: bool = False) -> Invocation | None:
    """The invocation for a core event, or None if handlers do not see it."""
    kind = MEMBER_EVENTS.get(type(event))
    if kind is not None:
        member = event.member  # type: ignore[attr-defined]
        return Invocation(
            kind=kind, name=None, env={},
            stdin=member_line(member.name, member.addr[0], tags_of(member.meta)),
        )
    if isinstance(event, UserBroadcastReceived):
        # A broadcast not sent as a named event (by `Node.broadcast`) has the empty name.
        name, payload = "", event.payload
        try:
            named = decode_user_event_untrusted(event.payload)
            name, payload = named.name, named.payload
        except MalformedTags:
            pass
        env = {"USER_EVENT": name, "SWIM_USER_ID": str(event.id),
               "SWIM_USER_ORIGIN": event.origin}
        return Invocation(kind="user", name=name, env=both_prefixes(env),
                          stdin=_payload_stdin(payload))
    if isinstance(event, QueryReceived):
        env = {"QUERY_NAME": event.name, "SWIM_QUERY_ID": str(event.id),
               "SWIM_QUERY_ORIGIN": event.origin}
        return Invocation(
            kind="query", name=event.name, env=both_prefixes(env),
            stdin=_payload_stdin(event.payload),
            query=(event.origin, event.id, event.deadline), answered=answered,
        )
    return None


@attrs.define
class HandlerStats:
    """What the handlers did (`swim info` shows it as ``handlers``)."""

    #: Runs started, and how they ended.
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    #: Events dropped because `MAX_PENDING` were already waiting.
    dropped: int = 0
    #: Queries answered with a handler's output.
    answered: int = 0
    running: int = 0


def _short(script: str, limit: int = 60) -> str:
    return script if len(script) <= limit else script[: limit - 3] + "..."


class HandlerRunner:
    """Runs the agent's handlers for the events `dispatch` is given, while `run` runs."""

    def __init__(
        self,
        specs: tuple[HandlerSpec, ...],
        *,
        timeout_s: float,
        response_limit: int,
        log: Callable[[str], None],
        respond: Callable[[str, int, bytes], None],
        self_env: Callable[[], Mapping[str, str]],
        shell: tuple[str, ...] = ("/bin/sh", "-c"),
    ) -> None:
        self.specs = specs
        self.stats = HandlerStats()
        self._timeout_s = timeout_s
        self._response_limit = response_limit
        self._log = log
        self._respond = respond
        self._self_env = self_env
        self._shell = shell
        self._send, self._receive = trio.open_memory_channel[
            tuple[HandlerSpec, Invocation, Mapping[str, str]]
        ](MAX_PENDING)
        # A semaphore, not a CapacityLimiter: the slot is taken by the dispatching task
        # and given back by the run's own task.
        self._slots = trio.Semaphore(MAX_CONCURRENT)
        #: Queries a handler answered: (origin, id).
        self._answered: set[tuple[str, int]] = set()
        self._dropped_unlogged = 0

    def dispatch(self, event: object, *, answered: bool = False) -> None:
        """Queue the runs `event` asks for (never blocks; drops when the queue is full)."""
        invocation = invocation_of(event, answered=answered)
        if invocation is None:
            return
        matching = [s for s in self.specs if s.matches(invocation.kind, invocation.name)]
        if not matching:
            return
        # The member's own variables as they are now (tags may change later).
        env = self._environment(invocation)
        for spec in matching:
            try:
                self._send.send_nowait((spec, invocation, env))
            except trio.WouldBlock:
                self.stats.dropped += 1
                if self._dropped_unlogged == 0:
                    self._log(
                        f"event handlers: {MAX_PENDING} runs already waiting; dropped "
                        f"{invocation.kind} for {_short(spec.script)!r}"
                    )
                self._dropped_unlogged += 1

    def _environment(self, invocation: Invocation) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
        env.update(self._self_env())
        env.update(both_prefixes({"EVENT": invocation.kind}))
        env.update(invocation.env)
        return env

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start queued runs in their own tasks until cancelled (which kills them)."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for spec, invocation, env in self._receive:
                # Taken here, one event after the other, so runs start in the order of
                # their events.
                await self._slots.acquire()
                self._dropped_unlogged = 0
                nursery.start_soon(self._run_one, spec, invocation, env)

    async def _run_one(
        self, spec: HandlerSpec, invocation: Invocation, env: Mapping[str, str]
    ) -> None:
        stats = self.stats
        stats.started += 1
        stats.running += 1
        try:
            await self._invoke(spec, invocation, env)
        finally:
            stats.running -= 1
            self._slots.release()

    async def _invoke(
        self, spec: HandlerSpec, invocation: Invocation, env: Mapping[str, str]
    ) -> None:
        what = f"handler {_short(spec.script)!r} for {invocation.kind}" + (
            f" {invocation.name!r}" if invocation.name else ""
        )
        began = trio.current_time()
        deadline = began + self._timeout_s
        if invocation.query is not None:
            deadline = min(deadline, invocation.query[2])
        if deadline <= began:
            self.stats.timed_out += 1
            self._log(f"{what}: not run, the query's deadline has passed")
            return
        try:
            process = await trio.lowlevel.open_process(
                [*self._shell, spec.script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(env), start_new_session=True,
            )
        except OSError as exc:
            self.stats.failed += 1
            self._log(f"{what}: cannot start: {(exc.strerror or str(exc)).lower()}")
            return
        keep = self._response_limit if invocation.query is not None else MAX_OUTPUT_BYTES
        out = Collector(keep)
        err = Collector(MAX_OUTPUT_BYTES)
        try:
            with trio.move_on_at(deadline) as scope:
                await communicate(process, invocation.stdin, out, err)
        finally:
            await reap(process)
        elapsed = trio.current_time() - began
        code = process.returncode
        if scope.cancelled_caught:
            self.stats.timed_out += 1
            bound = "the query's deadline" if deadline < began + self._timeout_s else (
                f"{self._timeout_s:g} s")
            self._log(f"{what}: killed after {elapsed:.2f} s ({bound})")
            return
        if code == 0:
            self.stats.succeeded += 1
            note = self._answer(invocation, out) if invocation.query is not None else ""
            self._log(f"{what}: exit 0 in {elapsed:.2f} s{note}")
            return
        self.stats.failed += 1
        last = tail(err.data) or tail(out.data)
        self._log(f"{what}: {exit_text(code)} in {elapsed:.2f} s" + (f": {last}" if last else ""))

    def _answer(self, invocation: Invocation, out: Collector) -> str:
        """Answer the query with the handler's stdout; a note for the log line."""
        assert invocation.query is not None
        origin, query_id, _ = invocation.query
        if not out.data:
            return " (no output: no answer)"
        if invocation.answered:
            return " (not sent: the agent's --query-response answered)"
        if (origin, query_id) in self._answered:
            return " (not sent: another handler answered first)"
        self._answered.add((origin, query_id))
        if len(self._answered) > 4 * MAX_PENDING:
            self._answered.clear()  # ids of long-finished queries; bounded memory
            self._answered.add((origin, query_id))
        try:
            self._respond(origin, query_id, out.data)
        except ProtocolError as exc:
            return f" (answer not sent: {exc})"
        self.stats.answered += 1
        cut = f", truncated from {out.seen} bytes" if out.seen > len(out.data) else ""
        return f" (answered with {len(out.data)} bytes{cut})"
