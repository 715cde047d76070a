"""Tags in member metadata, and user events in broadcast payloads.

Pure code: the core filters queries by tags with it, and applications and the agent
read and write tags with it.

A member's metadata is at most 512 bytes (memberlist's limit). The agent stores its tags
there in a compact length-prefixed form::

    0xFF 0x01 | (uvarint len(key), key, uvarint len(value), value) for each tag, keys sorted

The leading 0xFF can never start UTF-8 text, so metadata written by another application
(plain text, JSON, anything without the prefix) is never mistaken for tags: decoding it
gives no tags rather than an error. User events (`swim event NAME PAYLOAD`) ride in a user
broadcast as ``0xFF 0x02 | uvarint len(name), name, payload``. The payload carries no
origin or id: the protocol core identifies each broadcast by (origin, id), delivers it
once and reports both in `UserBroadcastReceived`. Broadcasts sent by other applications
are reported as unnamed.

Everything read from the network goes through a function with an ``_untrusted`` suffix
that returns a value or raises `MalformedTags`, bounded before anything is allocated.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

import attrs

from swim.core.config import META_MAX_BYTES

TAGS_MAGIC = b"\xff\x01"
EVENT_MAGIC = b"\xff\x02"
#: Longest user event name (bytes of UTF-8).
EVENT_NAME_MAX_BYTES = 255


class TagError(ValueError):
    """The caller's tags cannot be encoded (bad key, or too big for the metadata)."""


class MalformedTags(ValueError):
    """Bytes from a peer are not a well-formed tag block or user event."""


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_uvarint_untrusted(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Read a uvarint of at most 5 bytes at `pos`; it must be at most `limit`.
    Returns (value, new pos)."""
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise MalformedTags("truncated length")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if value > limit:
            raise MalformedTags(f"length {value} over {limit}")
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 35:
            raise MalformedTags("varint too long")


def _read_text_untrusted(
    data: bytes, pos: int, what: str, max_bytes: int = META_MAX_BYTES
) -> tuple[str, int]:
    size, pos = _read_uvarint_untrusted(data, pos, min(max_bytes, len(data) - pos))
    raw = data[pos : pos + size]
    try:
        return raw.decode("utf-8"), pos + size
    except UnicodeDecodeError:
        raise MalformedTags(f"{what} is not UTF-8") from None


def check_key(key: str) -> None:
    """Raise `TagError` unless `key` can be a tag key."""
    if not key:
        raise TagError("a tag key must not be empty")
    if "=" in key:
        raise TagError(f"a tag key must not contain '=': {key!r}")
    if not key.isprintable() or key != key.strip():
        raise TagError(f"a tag key must be printable with no surrounding spaces: {key!r}")


def encode_tags(tags: Mapping[str, str]) -> bytes:
    """The metadata bytes for `tags`; raises `TagError` if they exceed 512 bytes."""
    if not tags:
        return b""
    out = bytearray(TAGS_MAGIC)
    for key in sorted(tags):
        check_key(key)
        for text in (key, tags[key]):
            raw = text.encode("utf-8")
            out += _uvarint(len(raw))
            out += raw
    if len(out) > META_MAX_BYTES:
        raise TagError(
            f"tags take {len(out)} bytes encoded; member metadata holds at most "
            f"{META_MAX_BYTES} (shorten or drop some tags)"
        )
    return bytes(out)


def decode_tags_untrusted(meta: bytes) -> dict[str, str]:
    """The tags in a peer's metadata. Raises `MalformedTags` if it is not a tag block."""
    if len(meta) > META_MAX_BYTES:
        raise MalformedTags(f"metadata of {len(meta)} bytes is over {META_MAX_BYTES}")
    if not meta:
        return {}
    if not meta.startswith(TAGS_MAGIC):
        raise MalformedTags("metadata does not hold tags")
    tags: dict[str, str] = {}
    pos = len(TAGS_MAGIC)
    while pos < len(meta):
        key, pos = _read_text_untrusted(meta, pos, "key")
        value, pos = _read_text_untrusted(meta, pos, "value")
        tags[key] = value
    return tags


def tags_of(meta: bytes) -> dict[str, str]:
    """The tags in a peer's metadata, or no tags if it holds something else."""
    try:
        return decode_tags_untrusted(meta)
    except MalformedTags:
        return {}


def tags_match(
    tags: Mapping[str, str], patterns: Mapping[str, str] | Iterable[tuple[str, str]]
) -> bool:
    """Whether `tags` has every key of `patterns`, its value matching the shell-style
    pattern (`fnmatch`, never a regex: a peer's pattern costs linear time). The one rule
    for query filters, member views, rings and ``swim members --tag``."""
    pairs = patterns.items() if isinstance(patterns, Mapping) else patterns
    for key, pattern in pairs:
        value = tags.get(key)
        if value is None or not fnmatch.fnmatchcase(value, pattern):
            return False
    return True


def parse_tag_assignment(text: str) -> tuple[str, str]:
    """Parse a ``KEY=VALUE`` command-line argument (the value may be empty)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise TagError(f"expected KEY=VALUE, got {text!r}")
    check_key(key)
    return key, value


@attrs.frozen
class UserEvent:
    """A named user event as the agent sends it (origin and id come from the core)."""

    name: str
    payload: bytes


def encode_user_event(event: UserEvent) -> bytes:
    """The broadcast payload of a named user event."""
    name = event.name.encode("utf-8")
    if not name or len(name) > EVENT_NAME_MAX_BYTES:
        raise TagError(f"an event name must be 1..{EVENT_NAME_MAX_BYTES} bytes of UTF-8")
    return b"".join([EVENT_MAGIC, _uvarint(len(name)), name, event.payload])


def decode_user_event_untrusted(data: bytes) -> UserEvent:
    """The named user event in a broadcast; raises `MalformedTags` if it is not one."""
    if not data.startswith(EVENT_MAGIC):
        raise MalformedTags("not a named user event")
    name, pos = _read_text_untrusted(data, len(EVENT_MAGIC), "name", EVENT_NAME_MAX_BYTES)
    if not name:
        raise MalformedTags("empty event name")
    return UserEvent(name, data[pos:])
