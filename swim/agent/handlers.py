"""Event handler scripts, after Serf's: ``swim agent --event-handler [EVENTS=]SCRIPT``.

A handler is a shell command (``/bin/sh -c SCRIPT``) run for each event it subscribes
to. EVENTS is a comma-separated list of ``member-join``, ``member-leave``,
``member-failed``, ``member-update``, ``user``, ``user:NAME``, ``query``, ``query:NAME``
or ``*`` (every event, the default when there is no ``EVENTS=``).

What a handler gets, as Serf gives it (the ``SERF_*`` names are set too, with the same
values, so Serf's handlers run unchanged):

* ``SWIM_EVENT``: ``member-join``, ``member-leave``, ``member-failed``,
  ``member-update``, ``user`` or ``query``;
* ``SWIM_SELF_NAME``, ``SWIM_SELF_ROLE`` (this member's ``role`` tag, or empty) and
  ``SWIM_TAG_<KEY>`` for each of this member's tags (the key upper-cased, every character
  but A-Z, 0-9 and _ made _);
* user events: ``SWIM_USER_EVENT`` (the event's name); queries: ``SWIM_QUERY_NAME``;
* ours only (no Serf name): ``SWIM_USER_ID`` / ``SWIM_QUERY_ID`` (the event's id; Serf
  gives a Lamport time instead), ``SWIM_USER_ORIGIN`` / ``SWIM_QUERY_ORIGIN`` (the member
  that sent it) and ``SWIM_RPC_ADDR`` (this agent's RPC address, so a handler can run
  ``swim members``);
* on stdin, for a member event one line ``NAME\\tADDR\\tROLE\\tTAGS`` (ADDR is the IP
  address, TAGS ``k=v,k2=v2`` in key order; tabs and newlines in the fields written as
  ``\\t`` and ``\\n``); for a user event or a query its payload, with a newline added
  if it has none.

A query handler that exits 0 with output on stdout answers the query with it, truncated
to the response limit (1,024 bytes by default); the first handler to do so answers, and
an agent's ``--query-response`` for that name answers before any handler. Its stderr
goes to the agent's log.

Handlers never block the agent: events are queued (at most `MAX_PENDING`; more are
dropped, counted and logged) and run in their own tasks, at most `MAX_CONCURRENT` at a
time, in the order the events arrived (so they may overlap). Each run is bounded by the
handler timeout (and a query handler also by the query's deadline); past it the
handler's whole process group is killed. Every run's outcome is logged: exit status and
duration, and the end of its stderr when it failed.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping

import attrs
import trio

from swim.agent.processes import Collector, communicate, exit_text, reap, tail
from swim.agent.tags import MalformedTags, decode_user_event_untrusted, tags_of
from swim.core.errors import ProtocolError
from swim.core.events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    QueryReceived,
    UserBroadcastReceived,
)

#: Handler runs at once; further events wait their turn.
MAX_CONCURRENT = 8
#: Events waiting for a handler slot; beyond this they are dropped (and counted).
MAX_PENDING = 1024
#: The default bound on one run (``--event-handler-timeout``).
DEFAULT_TIMEOUT_S = 30.0
#: How much of a handler's stdout (besides a query's answer) and stderr is kept.
MAX_OUTPUT_BYTES = 8 * 1024

#: The member events and the core events behind them.
MEMBER_EVENTS: Mapping[type, str] = {
    MemberJoined: "member-join",
    MemberLeft: "member-leave",
    MemberFailed: "member-failed",
    MemberUpdated: "member-update",
}
#: Every event type a handler may name.
EVENT_TYPES = (*MEMBER_EVENTS.values(), "user", "query")

_NOT_ENV = re.compile(r"[^A-Z0-9_]")
#: Inherited variables of these names are dropped, so a handler sees only this event's.
_OURS = ("SERF_", "SWIM_EVENT", "SWIM_SELF_", "SWIM_TAG_", "SWIM_USER_", "SWIM_QUERY_")


class HandlerSpecError(ValueError):
    """An ``--event-handler`` value is malformed; the message says why."""


@attrs.frozen
class EventFilter:
    """One entry of a handler's EVENTS: a type, and for user events and queries maybe a
    name."""

    kind: str
    name: str | None = None

    def matches(self, kind: str, name: str | None) -> bool:
        return self.kind in ("*", kind) and (self.name is None or self.name == name)

    def __str__(self) -> str:
        return self.kind if self.name is None else f"{self.kind}:{self.name}"


@attrs.frozen
class HandlerSpec:
    """A handler: the script and the events it runs for (empty: every event)."""

    script: str
    filters: tuple[EventFilter, ...] = ()

    def matches(self, kind: str, name: str | None = None) -> bool:
        return not self.filters or any(f.matches(kind, name) for f in self.filters)

    def __str__(self) -> str:
        events = ",".join(str(f) for f in self.filters) or "*"
        return f"{events}={self.script}"


def _filter(text: str) -> EventFilter | None:
    kind, sep, name = text.partition(":")
    if kind == "*" and not sep:
        return EventFilter("*")
    if kind in ("user", "query") and sep:
        return EventFilter(kind, name) if name else None
    if kind in EVENT_TYPES and not sep:
        return EventFilter(kind)
    return None


def parse_handler(text: str) -> HandlerSpec:
    """A handler from ``[EVENTS=]SCRIPT``; raises `HandlerSpecError`.

    As in Serf, what precedes the first ``=`` is EVENTS; a script that itself contains
    ``=`` therefore needs EVENTS first (``*=`` for every event)."""
    events, sep, script = text.partition("=")
    if not sep:
        events, script = "", text
    script = script.strip()
    if not script:
        raise HandlerSpecError(f"an event handler needs a script: {text!r}")
    filters = []
    for item in events.split(",") if sep else []:
        parsed = _filter(item.strip())
        if parsed is None:
            raise HandlerSpecError(
                f"unknown event {item.strip()!r} in {text!r} (events: "
                f"{', '.join(MEMBER_EVENTS.values())}, user, user:NAME, query, query:NAME, "
                "*); a script containing '=' needs the events first, e.g. '*=SCRIPT'"
            )
        filters.append(parsed)
    if any(f.kind == "*" for f in filters):
        filters = []
    return HandlerSpec(script, tuple(dict.fromkeys(filters)))


def env_name(key: str) -> str:
    """A tag key as the suffix of ``SWIM_TAG_`` / ``SERF_TAG_`` (as Serf makes it)."""
    return _NOT_ENV.sub("_", key.upper())


def _clean(field: str) -> str:
    return field.replace("\t", "\\t").replace("\n", "\\n")


def member_line(name: str, ip: str, tags: Mapping[str, str]) -> bytes:
    """A member as the stdin line of a member event: ``NAME\\tADDR\\tROLE\\tTAGS``."""
    pairs = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    return (
        f"{_clean(name)}\t{ip}\t{_clean(tags.get('role', ''))}\t{_clean(pairs)}\n"
    ).encode()


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
        return Invocation(kind="user", name=name, env=_both(env),
                          stdin=_payload_stdin(payload))
    if isinstance(event, QueryReceived):
        env = {"QUERY_NAME": event.name, "SWIM_QUERY_ID": str(event.id),
               "SWIM_QUERY_ORIGIN": event.origin}
        return Invocation(
            kind="query", name=event.name, env=_both(env), stdin=_payload_stdin(event.payload),
            query=(event.origin, event.id, event.deadline), answered=answered,
        )
    return None


def _both(env: Mapping[str, str]) -> dict[str, str]:
    """Names without a prefix get both ``SWIM_`` and ``SERF_``; prefixed ones stay."""
    out: dict[str, str] = {}
    for key, value in env.items():
        if key.startswith("SWIM_"):
            out[key] = value
        else:
            out[f"SWIM_{key}"] = out[f"SERF_{key}"] = value
    return out


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
        env.update(_both({"EVENT": invocation.kind}))
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


def self_env(name: str, tags: Mapping[str, str], rpc_addr: str) -> dict[str, str]:
    """This member's variables: name, role, tags and the agent's RPC address."""
    env = _both({"SELF_NAME": name, "SELF_ROLE": tags.get("role", "")})
    for key in sorted(tags):
        env.update(_both({f"TAG_{env_name(key)}": tags[key]}))
    env["SWIM_RPC_ADDR"] = rpc_addr
    return env

