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

Handlers never block the agent: events are queued (at most
`swim.agent.handler_runner.MAX_PENDING`; more are dropped, counted and logged) and run in
their own tasks, at most `swim.agent.handler_runner.MAX_CONCURRENT` at a time, in the
order the events arrived (so they may overlap). Each run is bounded by the handler
timeout (and a query handler also by the query's deadline); past it the handler's whole
process group is killed. Every run's outcome is logged: exit status and
duration, and the end of its stderr when it failed.

This module holds what the agent's options need (the handler specs and their parsing)
and the variables handlers get; `swim.agent.handler_runner` runs them, and is imported
only by an agent that has handlers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from swim.core.events import MemberFailed, MemberJoined, MemberLeft, MemberUpdated

#: The default bound on one run (``--event-handler-timeout``).
DEFAULT_TIMEOUT_S = 30.0

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


def both_prefixes(env: Mapping[str, str]) -> dict[str, str]:
    """Names without a prefix get both ``SWIM_`` and ``SERF_``; prefixed ones stay."""
    out: dict[str, str] = {}
    for key, value in env.items():
        if key.startswith("SWIM_"):
            out[key] = value
        else:
            out[f"SWIM_{key}"] = out[f"SERF_{key}"] = value
    return out


def self_env(name: str, tags: Mapping[str, str], rpc_addr: str) -> dict[str, str]:
    """This member's variables: name, role, tags and the agent's RPC address."""
    env = both_prefixes({"SELF_NAME": name, "SELF_ROLE": tags.get("role", "")})
    for key in sorted(tags):
        env.update(both_prefixes({f"TAG_{env_name(key)}": tags[key]}))
    env["SWIM_RPC_ADDR"] = rpc_addr
    return env

