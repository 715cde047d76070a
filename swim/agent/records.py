"""What the agent answers that is more than a field or two: a query's streamed results,
a key command's report, its counters and its security mode (for `swim info` and its
start-up line)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from swim.agent import output
from swim.agent.output import Record

if TYPE_CHECKING:
    from swim.agent.agent import AgentOptions
    from swim.agent.handler_runner import HandlerRunner
    from swim.runtime import KeyReport, QueryStream


class QueryRecords:
    """A query's results as the RPC ``query`` command streams them: one record per ack
    or answer (``{"type": "ack"|"response", "member", "ts"}``, answers with their
    ``payload``), then ``{"type": "done", ...}`` with the summary."""

    def __init__(self, stream: QueryStream) -> None:
        self._stream = stream
        self._done = False

    def __aiter__(self) -> QueryRecords:
        return self

    async def __anext__(self) -> Record:
        if self._done:
            raise StopAsyncIteration
        try:
            result = await self._stream.__anext__()
        except StopAsyncIteration:
            self._done = True
            summary = await self._stream.wait_finished()
            return {
                "type": "done", "id": summary.id, "name": summary.name,
                "acks": summary.acks, "responses": summary.responses,
                "dropped": summary.dropped, "complete": summary.complete,
            }
        record: Record = {
            "type": result.kind.value,
            "member": result.member,
            # The node's clock, as wall-clock time.
            "ts": time.time() - (trio.current_time() - result.at),
        }
        if result.kind.value == "response":
            record.update(output.payload_fields(result.payload))
        return record

    def close(self) -> None:
        self._stream.close()


def key_report_record(report: KeyReport) -> Record:
    """A `KeyReport` as the RPC ``keys`` command answers it."""
    record: Record = {
        "op": report.command.value,
        "members": list(report.members),
        "succeeded": list(report.succeeded),
        "failed": dict(report.failed),
        "no_answer": list(report.no_answer),
        "success": report.ok,
        "summary": report.summary,
    }
    if report.command.value == "list":
        record["keys"] = report.keys
        record["primary_keys"] = report.primary_keys
        record["member_keys"] = {m: list(keys) for m, keys in report.member_keys.items()}
    return record


def stats_record(stats: Any, prefix: str = "") -> Record:
    """The numeric fields of the node's statistics (nested ones as ``outer.inner``)."""
    if attrs.has(type(stats)):
        fields = attrs.asdict(stats, recurse=False)
    elif isinstance(stats, Mapping):
        fields = dict(stats)
    else:
        return {}
    record: Record = {}
    for key, value in fields.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
            record[name] = value
        elif attrs.has(type(value)) or isinstance(value, Mapping):
            record.update(stats_record(value, f"{name}."))
    return record


def security_line(options: AgentOptions) -> str:
    """How the agent seals its traffic, for its start-up line."""
    if not options.encrypted:
        mode = "no encryption"
    elif options.send_plaintext:
        mode = "keys loaded, sending plaintext"
    else:
        mode = "encrypted"
    if options.encrypted and options.accept_plaintext:
        mode += ", accepting plaintext"
    return mode + (f", label {options.label!r}" if options.label else "")


def security_record(options: AgentOptions, stats: object) -> Record:
    """What `swim info` shows of the security layer: the mode and the rejections."""
    from swim.security import Reason

    seal_stats = getattr(stats, "security", None)
    record: Record = {
        "encrypted": options.encrypted,
        "label": options.label,
        "accept_plaintext": options.encrypted and options.accept_plaintext,
        "send_plaintext": options.encrypted and options.send_plaintext,
    }
    if seal_stats is not None:
        record["rejected"] = {reason.value: seal_stats.count(reason) for reason in Reason}
        record["rejected_total"] = seal_stats.rejected
    return record


def handlers_record(options: AgentOptions, runner: HandlerRunner | None) -> Record:
    """What `swim info` shows of the event handlers: each one (``EVENTS=SCRIPT``), the
    timeout, and the runs' counters."""
    record: Record = {
        "configured": [str(spec) for spec in options.event_handlers],
        "timeout_s": options.event_handler_timeout_s,
    }
    if runner is not None:
        record.update(attrs.asdict(runner.stats))
    return record
