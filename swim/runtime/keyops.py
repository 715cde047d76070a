"""Cluster-wide key commands over internal queries, after Serf's key manager.

`Node.install_key`, `use_key`, `remove_key` and `list_keys` each send one internal query
(``_swim_install-key``, ``_swim_use-key``, ``_swim_remove-key``, ``_swim_list-keys``, as
Serf's ``_serf_*``) to every member, the asker included. Query names starting with
``_swim_`` are the runtime's: they never reach the application's event stream, and
`Node.query` refuses them.

Each member applies the command to its own keyring (`Keyring.install` / `use` /
`remove`), rewrites its keyring file if it was started from one, and answers with a small
JSON document: ``{"ok": true}``, ``{"ok": false, "error": "..."}``, or for the list
``{"ok": true, "keys": [base64, ...]}`` (primary first). The asker gathers one answer per
member into a `KeyReport`: who succeeded, who failed with what message, who did not
answer before the deadline, and for the list, each key with the number of members holding
it. It stops waiting as soon as every member it asked has answered.

Every member must hear the command, so the query is sent with ``reask``: gossip alone
spends a small transmit budget and now and then misses a member, so the asker's core
re-sends the query (same id) straight to each live member that has not answered, every
eighth of the timeout, until the deadline, and a member whose answer was lost sends it
again (`swim.core.queries`). A member that applied a command never applies it twice. A
member that is really down stays silent and is reported under `KeyReport.no_answer`
once the timeout ends.

Refusals, as Serf's:

* on the asker: a node without keys cannot send a key command, nor one that sends
  plaintext (the key travels in the query, inside the gossip, so the gossip must be
  sealed);
* on each member: no keyring (encryption off); using a key that is not installed;
  removing the primary key. A member that accepts plaintext refuses key changes (a
  stranger's plaintext packet could otherwise carry one), and a member that sends
  plaintext does not list its keys (its answer would travel in the clear).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from swim.runtime.queries import QueryResultKind, QueryStream
from swim.runtime.query_rules import INTERNAL_PREFIX, is_internal
from swim.security.keyfile import KeyfileError, save_keyring
from swim.security.keyring import KeyringError, check_key, decode_key, encode_key
from swim.security.seal import Sealer


class KeyCommand(enum.Enum):
    """A cluster-wide keyring command."""

    #: Add a key that opens (does not seal yet).
    INSTALL = "install"
    #: Make an installed key the primary, the one that seals.
    USE = "use"
    #: Remove a secondary key.
    REMOVE = "remove"
    #: Report the keys each member holds.
    LIST = "list"

    @property
    def query_name(self) -> str:
        """The internal query that carries this command."""
        return _QUERY_NAMES[self]


_QUERY_NAMES: Final = {
    KeyCommand.INSTALL: f"{INTERNAL_PREFIX}install-key",
    KeyCommand.USE: f"{INTERNAL_PREFIX}use-key",
    KeyCommand.REMOVE: f"{INTERNAL_PREFIX}remove-key",
    KeyCommand.LIST: f"{INTERNAL_PREFIX}list-keys",
}
#: The command each internal query name carries.
COMMANDS_BY_QUERY: Final = {name: command for command, name in _QUERY_NAMES.items()}


class MalformedAnswer(Exception):
    """A member's answer to a key command is not one this runtime sends."""


@attrs.frozen(kw_only=True)
class MemberAnswer:
    """One member's answer: success, or the reason it failed; for the list, its keys
    (primary first)."""

    ok: bool
    error: str = ""
    keys: tuple[bytes, ...] = ()


def encode_answer(answer: MemberAnswer) -> bytes:
    """The answer as the member sends it."""
    record: dict[str, object] = {"ok": answer.ok}
    if answer.error:
        record["error"] = answer.error
    if answer.keys:
        record["keys"] = [encode_key(key) for key in answer.keys]
    return json.dumps(record, separators=(",", ":")).encode("utf-8")


#: Longest error message kept from a member's answer.
_MAX_ERROR_CHARS: Final = 400


def decode_answer_untrusted(data: bytes) -> MemberAnswer:
    """A member's answer; raises `MalformedAnswer` (only) if it is not a valid one."""
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedAnswer("not a JSON answer") from None
    if not isinstance(record, dict) or not isinstance(record.get("ok"), bool):
        raise MalformedAnswer('not an object with a boolean "ok"')
    error = record.get("error", "")
    keys = record.get("keys", [])
    if not isinstance(error, str) or not isinstance(keys, list):
        raise MalformedAnswer('"error" must be a string and "keys" a list')
    try:
        decoded = tuple(decode_key(key) for key in keys if isinstance(key, str))
    except KeyringError:
        raise MalformedAnswer("a listed key is not a valid key") from None
    if len(decoded) != len(keys):
        raise MalformedAnswer("a listed key is not a string")
    return MemberAnswer(ok=record["ok"], error=error[:_MAX_ERROR_CHARS], keys=decoded)


# ============================================================================ asker


def request_payload(command: KeyCommand, key: bytes | str | None, sealer: Sealer | None) -> bytes:
    """The query payload for `command` (the raw key, or nothing for the list).

    Raises `KeyringError` if this node may not send it: no keys, plaintext sending, or a
    bad key (base64 text or raw bytes of 16, 24 or 32 bytes).
    """
    if sealer is None or sealer.keyring is None:
        raise KeyringError(
            "encryption is not enabled on this node: key commands need a keyring, since "
            "the key travels inside the cluster's (sealed) gossip"
        )
    if sealer.send_plaintext:
        raise KeyringError(
            "this node sends plaintext, so a key command would put the key on the wire "
            "unencrypted; turn send_plaintext off first"
        )
    if command is KeyCommand.LIST:
        if key is not None:
            raise KeyringError("list_keys takes no key")
        return b""
    if key is None:
        raise KeyringError(f"{command.value} needs a key")
    return decode_key(key) if isinstance(key, str) else check_key(key)


@attrs.frozen(kw_only=True)
class KeyReport:
    """What every member answered to one key command (names sorted, keys as base64).

    `members` are those asked (every member alive or suspected in the asker's table when
    it asked, itself included) and any other that answered. `ok` holds when every one
    of them succeeded; `summary` is Serf's line, ``N/M nodes reported success``.
    """

    command: KeyCommand
    members: tuple[str, ...]
    succeeded: tuple[str, ...]
    #: member -> the reason it gave (or why its answer was unreadable).
    failed: Mapping[str, str]
    no_answer: tuple[str, ...]
    #: For the list: member -> its keys, primary first.
    member_keys: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.no_answer

    @property
    def summary(self) -> str:
        return f"{len(self.succeeded)}/{len(self.members)} nodes reported success"

    @property
    def keys(self) -> dict[str, int]:
        """For the list: each key and how many members hold it (most held first)."""
        counts: dict[str, int] = {}
        for keys in self.member_keys.values():
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    @property
    def primary_keys(self) -> dict[str, int]:
        """For the list: each primary key and how many members seal with it."""
        counts: dict[str, int] = {}
        for keys in self.member_keys.values():
            if keys:
                counts[keys[0]] = counts.get(keys[0], 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def build_report(
    command: KeyCommand, asked: Iterable[str], answers: Mapping[str, bytes]
) -> KeyReport:
    """The report from the raw answers heard, by member."""
    succeeded: list[str] = []
    failed: dict[str, str] = {}
    member_keys: dict[str, tuple[str, ...]] = {}
    for member, raw in sorted(answers.items()):
        try:
            answer = decode_answer_untrusted(raw)
        except MalformedAnswer as exc:
            failed[member] = f"unreadable answer: {exc}"
            continue
        if not answer.ok:
            failed[member] = answer.error or "failed (no reason given)"
            continue
        succeeded.append(member)
        if command is KeyCommand.LIST:
            member_keys[member] = tuple(encode_key(key) for key in answer.keys)
    members = sorted({*asked, *answers})
    return KeyReport(
        command=command,
        members=tuple(members),
        succeeded=tuple(succeeded),
        failed=failed,
        no_answer=tuple(m for m in members if m not in answers),
        member_keys=member_keys,
    )


async def gather(stream: QueryStream, waiting_for: Iterable[str]) -> dict[str, bytes]:
    """Every answer on `stream`, by member, until each of `waiting_for` has answered or
    the query ends."""
    waiting = set(waiting_for)
    answers: dict[str, bytes] = {}
    async with stream:
        if not waiting:
            return answers
        async for result in stream:
            if result.kind is QueryResultKind.RESPONSE:
                answers[result.member] = result.payload
                waiting.discard(result.member)
                if not waiting:
                    break
    return answers


def deferred_on_asker(query_name: str) -> bool:
    """Whether the asker applies this command to itself only once the others answered.

    So for `use`: if the asker sealed with the new key at once, its gossip of the query
    would no longer reach members that lack the key, and they could not even refuse.
    """
    return COMMANDS_BY_QUERY.get(query_name) is KeyCommand.USE


# ========================================================================== members


def answer_key_query(
    query_name: str,
    payload: bytes,
    sealer: Sealer | None,
    *,
    keyring_file: str | os.PathLike[str] | None,
    size_limit: int,
) -> MemberAnswer:
    """Apply the internal query `query_name` to this member's keyring; its answer.

    On success of a change, the keyring file (if any) is rewritten atomically first, so
    the answer says whether the change will survive a restart.
    """
    command = COMMANDS_BY_QUERY.get(query_name)
    if command is None:
        return MemberAnswer(ok=False, error=f"unknown internal query {query_name!r}")
    ring = None if sealer is None else sealer.keyring
    if sealer is None or ring is None:
        return MemberAnswer(
            ok=False, error="encryption is not enabled on this member (no keyring to change)"
        )
    if command is KeyCommand.LIST:
        if sealer.send_plaintext:
            return MemberAnswer(
                ok=False,
                error="this member sends plaintext; it does not list its keys in the clear",
            )
        answer = MemberAnswer(ok=True, keys=ring.keys)
        if len(encode_answer(answer)) > size_limit:
            return MemberAnswer(
                ok=False, error=f"this member holds {len(ring)} keys, too many for one answer"
            )
        return answer
    if sealer.accept_plaintext:
        return MemberAnswer(
            ok=False,
            error="this member accepts plaintext packets, so a key command could be forged; "
            "finish the rolling upgrade (accept_plaintext off) first",
        )
    try:
        key = check_key(payload)
        if command is KeyCommand.INSTALL:
            ring.install(key)
        elif command is KeyCommand.USE:
            ring.use(key)
        else:
            ring.remove(key)
    except KeyringError as exc:
        return MemberAnswer(ok=False, error=str(exc))
    if keyring_file is not None:
        try:
            save_keyring(keyring_file, ring)
        except KeyfileError as exc:
            return MemberAnswer(ok=False, error=f"changed in memory only: {exc}")
    return MemberAnswer(ok=True)


__all__ = [
    "COMMANDS_BY_QUERY",
    "INTERNAL_PREFIX",
    "KeyCommand",
    "KeyReport",
    "MalformedAnswer",
    "MemberAnswer",
    "answer_key_query",
    "build_report",
    "decode_answer_untrusted",
    "deferred_on_asker",
    "encode_answer",
    "gather",
    "is_internal",
    "request_payload",
]
