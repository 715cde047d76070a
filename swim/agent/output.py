"""What the agent prints: event records (one JSON object per line), human lines, tables.

An event record is a flat JSON object. Every record has ``ts`` (Unix seconds, wall
clock, when the agent saw the event), ``event`` (``joined``, ``suspect``, ``alive``,
``failed``, ``left``, ``updated``, ``user``, ``message``), ``member`` (for ``user``: the
member that sent the event) and ``incarnation``. Membership records add ``addr``,
``status`` and ``tags``; ``suspect`` and ``failed`` add ``accuser``; ``user`` adds
``name``, ``id`` and ``payload`` (text, or ``payload_b64`` when it is not UTF-8); ``query``
(a query this member matched; ``member`` is the asker) adds ``name``, ``id`` and the
payload the same way. Queries named ``_swim_*`` (key commands) never show.

The same records are printed by ``swim agent --log-json``, streamed by the RPC
``monitor`` command and printed by ``swim monitor --json``.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from swim.agent.tags import MalformedTags, decode_user_event_untrusted, tags_of
from swim.core.events import (
    Event,
    JoinCompleted,
    MemberAlive,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberSuspected,
    MemberUpdated,
    QueryReceived,
    UserBroadcastReceived,
    UserMessageReceived,
    ViewChanged,
)
from swim.core.messages import Address, MemberState, MemberStatus
from swim.core.tags import tags_match
from swim.runtime.health import HEALTH_NOTE_TAG, HEALTH_TAG, health_of, note_of

Record = dict[str, Any]

#: MemberStatus as the agent names it in JSON and tables.
STATUS_NAMES: Mapping[MemberStatus, str] = {
    MemberStatus.ALIVE: "alive",
    MemberStatus.SUSPECT: "suspect",
    MemberStatus.DEAD: "dead",
    MemberStatus.LEFT: "left",
}

_MEMBERSHIP_EVENTS: Mapping[type, str] = {
    MemberJoined: "joined",
    MemberSuspected: "suspect",
    MemberAlive: "alive",
    MemberFailed: "failed",
    MemberLeft: "left",
    MemberUpdated: "updated",
}


def format_addr(addr: Address) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def member_record(member: MemberState) -> Record:
    """A member as `swim members --json` prints it: ``health`` is what its metadata
    publishes (passing without checks, see `swim.runtime.health`), ``health_note`` why
    ("" if nothing was said); the raw ``health`` tags stay in ``tags``."""
    tags = tags_of(member.meta)
    return {
        "name": member.name,
        "addr": format_addr(member.addr),
        "status": STATUS_NAMES[member.status],
        "incarnation": member.incarnation,
        "health": health_of(tags).value,
        "health_note": note_of(tags),
        "tags": tags,
    }


def member_filter(
    *,
    status: Sequence[str] = (),
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    health: Sequence[str] = (),
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate on member records: status one of `status` and health one of `health`
    (any if empty), name and each tag KEY matching a shell-style pattern (`fnmatch`; a
    missing tag never matches), as `swim query --tag` filters."""
    statuses = frozenset(status)
    healths = frozenset(health)
    patterns = dict(tags or {})

    def keep(member: Mapping[str, Any]) -> bool:
        if statuses and member.get("status") not in statuses:
            return False
        if healths and member.get("health") not in healths:
            return False
        if name is not None and not fnmatch.fnmatchcase(str(member.get("name")), name):
            return False
        return tags_match(member.get("tags") or {}, patterns)

    return keep


def payload_fields(payload: bytes) -> Record:
    """``{"payload": text}``, or ``{"payload": None, "payload_b64": ...}`` when the bytes
    are not UTF-8."""
    return _payload_fields(payload)


def _payload_fields(payload: bytes) -> Record:
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload": None, "payload_b64": base64.b64encode(payload).decode("ascii")}


def event_record(
    event: Event,
    *,
    ts: float | None = None,
    incarnation_of: Callable[[str], int | None] = lambda _name: None,
) -> Record | None:
    """The record of `event`, or None for events that are not membership or user news
    (`JoinCompleted` is reported on the agent's log instead).

    `incarnation_of` looks up a member's current incarnation, for user events.
    """
    now = time.time() if ts is None else ts
    kind = _MEMBERSHIP_EVENTS.get(type(event))
    if kind is not None:
        member: MemberState = event.member  # type: ignore[union-attr]
        record: Record = {
            "ts": now,
            "event": kind,
            "member": member.name,
            "incarnation": member.incarnation,
            "addr": format_addr(member.addr),
            "status": STATUS_NAMES[member.status],
            "tags": tags_of(member.meta),
        }
        if isinstance(event, MemberSuspected | MemberFailed):
            record["accuser"] = event.accuser
        return record
    if isinstance(event, UserBroadcastReceived):
        # The core identifies a broadcast by (origin, id). A named event sent by an agent
        # carries its name in the payload; any other broadcast is reported as unnamed.
        name: str | None = None
        payload = event.payload
        try:
            named = decode_user_event_untrusted(event.payload)
            name, payload = named.name, named.payload
        except MalformedTags:
            pass
        return {
            "ts": now,
            "event": "user",
            "member": event.origin,
            "incarnation": incarnation_of(event.origin),
            "name": name,
            "id": event.id,
            **_payload_fields(payload),
        }
    if isinstance(event, QueryReceived):
        return {
            "ts": now,
            "event": "query",
            "member": event.origin,
            "incarnation": incarnation_of(event.origin),
            "name": event.name,
            "id": event.id,
            **_payload_fields(event.payload),
        }
    if isinstance(event, ViewChanged):
        # Stable-view mode: one record per view change, carrying the whole cut.
        return {
            "ts": now,
            "event": "view",
            "member": None,
            "epoch": event.epoch,
            "config_id": event.config_id,
            "size": len(event.members),
            "joined": list(event.joined),
            "removed": list(event.removed),
        }
    if isinstance(event, UserMessageReceived):
        return {
            "ts": now,
            "event": "message",
            "member": event.source,
            "incarnation": incarnation_of(event.source),
            "addr": format_addr(event.addr),
            **_payload_fields(event.payload),
        }
    return None


def join_line(event: JoinCompleted) -> str:
    """The agent's log line for a finished join exchange."""
    seed = format_addr(event.seed)
    if event.ok:
        plural = "" if event.members == 1 else "s"
        return f"joined through {seed}: learned {event.members} member{plural}"
    if event.refused:
        return f"join through {seed} refused: {event.refused}"
    return f"join through {seed} failed: no answer"


def json_line(record: Mapping[str, Any]) -> str:
    """One compact JSON line (no newline)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def format_tags(tags: Mapping[str, str]) -> str:
    """``k=v,k2=v2`` in key order."""
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def human_line(record: Mapping[str, Any]) -> str:
    """One readable line for an event record."""
    kind = record.get("event", "?")
    parts = [_clock(float(record.get("ts", 0.0))), f"{kind:<8}", str(record.get("member"))]
    if kind == "user":
        name = record.get("name")
        payload = record.get("payload")
        if payload is None:
            payload = f"<{len(base64.b64decode(record.get('payload_b64', '')))} bytes>"
        parts.append(f"event {name!r}: {payload}" if name is not None else f"broadcast: {payload}")
    elif kind == "message":
        parts.append(f"message: {record.get('payload')}")
    elif kind == "view":
        parts[2] = f"epoch {record.get('epoch')}: {record.get('size')} members"
        for what in ("joined", "removed"):
            names = record.get(what) or []
            if names:
                parts.append(f"{what}={','.join(names)}")
    elif kind == "query":
        payload = record.get("payload")
        if payload is None:
            payload = f"<{len(base64.b64decode(record.get('payload_b64', '')))} bytes>"
        parts.append(f"query {record.get('name')!r}: {payload}")
    else:
        parts.append(f"{record.get('addr')} inc={record.get('incarnation')}")
        if "accuser" in record:
            parts.append(f"accuser={record['accuser']}")
        tags = record.get("tags")
        if tags:
            parts.append(f"tags={format_tags(tags)}")
    return " ".join(parts)


def members_table(members: Sequence[Mapping[str, Any]], title: str | None = None) -> Any:
    """A rich Table of member records (as `member_record` makes them)."""
    from rich.markup import escape
    from rich.table import Table

    styles = {"alive": "green", "suspect": "yellow", "dead": "red", "left": "dim",
              "passing": "green", "warning": "yellow", "critical": "red"}
    table = Table(title=title, title_justify="left")
    for column in ("name", "addr", "status", "health", "incarnation", "tags"):
        table.add_column(column, justify="right" if column == "incarnation" else "left")

    def styled(text: str) -> str:
        return f"[{styles[text]}]{text}[/]" if text in styles else escape(text)

    for m in sorted(members, key=lambda m: str(m["name"])):
        tags = dict(m.get("tags") or {})
        # The health tags have their own column.
        tags.pop(HEALTH_TAG, None)
        tags.pop(HEALTH_NOTE_TAG, None)
        note = str(m.get("health_note") or "")
        table.add_row(
            escape(str(m["name"])),
            str(m["addr"]),
            styled(str(m["status"])),
            styled(str(m.get("health", "passing"))) + (f" ({escape(note)})" if note else ""),
            str(m["incarnation"]),
            escape(format_tags(tags)),
        )
    return table


def key_report_text(report: Mapping[str, Any]) -> str:
    """`swim keys`'s lines for a key command's report (as the RPC ``keys`` answers it):
    one line per member, for the list each key with ``[holders/members]``, then Serf's
    ``N/M nodes reported success``."""
    members = [str(m) for m in report.get("members") or []]
    failed: Mapping[str, str] = report.get("failed") or {}
    silent = set(report.get("no_answer") or [])
    width = max((len(m) for m in members), default=0)
    lines = []
    for member in members:
        if member in failed:
            outcome = f"failed: {failed[member]}"
        elif member in silent:
            outcome = "no answer"
        else:
            outcome = "ok"
        lines.append(f"    {member:<{width}}  {outcome}")
    keys: Mapping[str, int] = report.get("keys") or {}
    if keys:
        primary: Mapping[str, int] = report.get("primary_keys") or {}
        lines += ["", "Keys:"]
        for key, count in keys.items():
            note = f"  primary on {primary[key]}" if primary.get(key) else ""
            lines.append(f"    {key}  [{count}/{len(members)}]{note}")
    lines.append(str(report.get("summary", "")))
    return "\n".join(lines)
