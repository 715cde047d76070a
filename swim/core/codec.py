"""The wire format: compact CBOR, versioned, bounded. The only module that touches bytes.

A datagram (or a stream frame) is one CBOR array ``[VERSION, message, message, ...]``;
each message is a positional array ``[kind, field, ...]`` with a small-integer kind.
Hosts travel as packed IPv4/IPv6 bytes (4 or 16), not text. Piggybacked news is encoded
once when queued and reused for every retransmission; a datagram is then assembled by
concatenating encoded messages behind an array header, with no re-encoding.

`decode_untrusted` parses attacker-controlled bytes: it returns the messages or raises
`MalformedMessage`, and nothing else. The input length is bounded before parsing, cbor2
reads declared lengths incrementally (a 9-byte header claiming 2**60 items allocates
nothing), nesting depth is capped, every semantic tag is refused, trailing bytes are
refused, and every field is type- and range-checked before a value is built.
"""

from __future__ import annotations

import functools
import io
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any, Final, NoReturn

import cbor2

from swim.core.config import META_MAX_BYTES, NAME_MAX_BYTES
from swim.core.messages import (
    Ack,
    Address,
    Alive,
    Dead,
    MemberState,
    MemberStatus,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Query,
    QueryResponse,
    Refusal,
    Relay,
    StableAlert,
    StableAlerts,
    StableVote,
    Suspect,
    UserBroadcast,
    UserMessage,
    ViewDigest,
    ViewSync,
)
from swim.core.stable.params import MAX_CUT_ENTRIES
from swim.core.vivaldi import PACKED_BYTES, Coordinate

#: Wire format version; the first item of every datagram and stream frame.
VERSION: Final = 1
#: Largest datagram accepted (the UDP payload maximum).
MAX_DATAGRAM_BYTES: Final = 65_507
#: Largest stream frame accepted (push-pull of ~100k members fits).
MAX_STREAM_BYTES: Final = 32 * 1024 * 1024
#: Most messages in one datagram or frame.
MAX_MESSAGES: Final = 4096
#: Most member entries in one push-pull exchange.
MAX_PUSH_PULL_MEMBERS: Final = 250_000
#: Most CBOR arrays one datagram or stream frame may hold, checked by `_scan_untrusted`
#: before anything is decoded (cbor2 builds the whole tree first, at ~70 bytes per tiny
#: item: a 32 MiB frame of empty arrays would take 2.5 GB). A push-pull holds one array
#: per member and per replayed broadcast; every other frame a few per message.
MAX_ARRAYS_DATAGRAM: Final = 2 * MAX_MESSAGES + 256
MAX_ARRAYS_STREAM: Final = MAX_PUSH_PULL_MEMBERS + 2 * MAX_MESSAGES + 1024
#: Most items per array allowed on average: no message kind has more than 12 fields.
_ITEMS_PER_ARRAY: Final = 12
#: Most recent user broadcasts one push-pull exchange may carry.
MAX_PUSH_PULL_BROADCASTS: Final = 256
#: Largest user payload (broadcast or message).
MAX_USER_PAYLOAD_BYTES: Final = 64 * 1024
#: Incarnations and user-broadcast ids are unsigned 63-bit integers.
MAX_INCARNATION: Final = (1 << 63) - 1
#: Sequence numbers are unsigned 32-bit integers and wrap.
MAX_SEQ: Final = (1 << 32) - 1


class MalformedMessage(Exception):
    """Input bytes that are not a valid datagram or frame (a peer's fault)."""


# Message kinds on the wire. Never renumber; add new kinds at the end.
KIND_PING: Final = 0
KIND_PING_REQ: Final = 1
KIND_ACK: Final = 2
KIND_NACK: Final = 3
KIND_ALIVE: Final = 4
KIND_SUSPECT: Final = 5
KIND_DEAD: Final = 6
KIND_USER_BROADCAST: Final = 7
KIND_USER_MESSAGE: Final = 8
KIND_PUSH_PULL: Final = 9
KIND_REFUSAL: Final = 10
KIND_QUERY: Final = 11
KIND_QUERY_RESPONSE: Final = 12
KIND_RELAY: Final = 13
KIND_STABLE_ALERT: Final = 14
KIND_STABLE_VOTE: Final = 15
KIND_VIEW_DIGEST: Final = 16
KIND_VIEW_SYNC: Final = 17
KIND_STABLE_ALERTS: Final = 18
#: Stable views: most ring numbers in one alert, (name, up) entries in one vote's cut,
#: names in one view-sync part, and parts of one configuration.
MAX_ALERT_RINGS: Final = 64
#: Largest voter bitmap: one bit per member of a table at its largest.
MAX_VOTER_BYTES: Final = 250_000 // 8 + 1
MAX_SYNC_NAMES: Final = 1024
MAX_SYNC_PARTS: Final = 1024
#: Most names or tag patterns in a query's filters.
MAX_QUERY_FILTERS: Final = 64
#: Longest tag pattern in a query filter (bytes of UTF-8).
MAX_PATTERN_BYTES: Final = 255
#: Most members a query's answers may be relayed through.
MAX_RELAY_FACTOR: Final = 5
#: Longest query timeout (ms): one hour.
MAX_QUERY_TIMEOUT_MS: Final = 3_600_000

#: Human names of kinds, for statistics.
KIND_NAMES: Final = {
    Ping: "ping",
    PingReq: "ping_req",
    Ack: "ack",
    Nack: "nack",
    Alive: "alive",
    Suspect: "suspect",
    Dead: "dead",
    UserBroadcast: "user_broadcast",
    UserMessage: "user_message",
    PushPull: "push_pull",
    Refusal: "refusal",
    Query: "query",
    QueryResponse: "query_response",
    Relay: "relay",
    StableAlert: "stable_alert",
    StableAlerts: "stable_alerts",
    StableVote: "stable_vote",
    ViewDigest: "view_digest",
    ViewSync: "view_sync",
}

_STATUSES: Final = tuple(MemberStatus)


# ---------------------------------------------------------------------------------------
# Encoding


@functools.lru_cache(maxsize=65_536)
def _pack_host(host: str) -> bytes:
    try:
        return ipaddress.ip_address(host).packed
    except ValueError:
        raise ValueError(f"address host must be an IP literal, got {host!r}") from None


@functools.lru_cache(maxsize=65_536)
def _unpack_host(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _state_fields(m: MemberState) -> list[Any]:
    return [m.name, m.incarnation, int(m.status), _pack_host(m.addr[0]), m.addr[1], m.meta]


def _message_items(msg: Message) -> list[Any]:
    match msg:
        case Ping(seq, target, source):
            return [KIND_PING, seq, target, source] if source else [KIND_PING, seq, target]
        case PingReq(seq, target, (host, port), nack, source):
            items = [KIND_PING_REQ, seq, target, _pack_host(host), port, nack]
            if source:
                items.append(source)
            return items
        case Ack(seq, coord):
            return [KIND_ACK, seq] if coord is None else [KIND_ACK, seq, coord.pack()]
        case Nack(seq):
            return [KIND_NACK, seq]
        case Alive(m):
            return [KIND_ALIVE, m.name, m.incarnation, _pack_host(m.addr[0]), m.addr[1], m.meta]
        case Suspect(name, incarnation, accuser):
            return [KIND_SUSPECT, name, incarnation, accuser]
        case Dead(name, incarnation, accuser):
            return [KIND_DEAD, name, incarnation, accuser]
        case UserBroadcast(origin, id_, payload):
            return [KIND_USER_BROADCAST, origin, id_, payload]
        case UserMessage(source, payload):
            return [KIND_USER_MESSAGE, source, payload]
        case Refusal(name, (host, port)):
            return [KIND_REFUSAL, name, _pack_host(host), port]
        case Query():
            return [
                KIND_QUERY, msg.origin, msg.id, msg.name, msg.payload,
                _pack_host(msg.reply_to[0]), msg.reply_to[1], msg.timeout_ms, msg.want_ack,
                msg.relay_factor, list(msg.filter_names),
                [[key, pattern] for key, pattern in msg.filter_tags],
            ]
        case QueryResponse(origin, id_, source, ack, payload, via):
            items = [KIND_QUERY_RESPONSE, origin, id_, source, ack, payload]
            if via:
                items.append(via)
            return items
        case Relay((host, port), response):
            return [KIND_RELAY, _pack_host(host), port, _message_items(response)]
        case StableAlert(config_id, observer, subject, up, rings):
            return [KIND_STABLE_ALERT, config_id, observer, subject, up, list(rings)]
        case StableAlerts(config_id, subject, up, rings):
            return [KIND_STABLE_ALERTS, config_id, subject, up, rings]
        case StableVote(config_id, cut, voters, round_):
            items = [KIND_STABLE_VOTE, config_id, [[name, up] for name, up in cut], voters]
            if round_ != 1:  # the first round's votes leave it out
                items.append(round_)
            return items
        case ViewDigest(config_id, epoch, evidence):
            return [KIND_VIEW_DIGEST, config_id, epoch, evidence]
        case ViewSync(config_id, epoch, part, parts, names):
            return [KIND_VIEW_SYNC, config_id, epoch, part, parts, list(names)]
        case PushPull(join, members, broadcasts):
            items = [KIND_PUSH_PULL, join, [_state_fields(m) for m in members]]
            if broadcasts:  # omitted when empty, so plain exchanges stay as small
                items.append([_message_items(b) for b in broadcasts])
            return items
    raise TypeError(f"not a message: {msg!r}")


def encode_message(msg: Message) -> bytes:
    """One message as a CBOR item, ready to be placed in a datagram."""
    if type(msg) is PushPull:
        return _encode_push_pull(msg)
    return cbor2.dumps(_message_items(msg))


def _array_header(count: int) -> bytes:
    """A definite-length CBOR array header, in its shortest form (as cbor2 writes it)."""
    if count < 24:
        return bytes((0x80 + count,))
    if count < 256:
        return bytes((0x98, count))
    if count < 65_536:
        return bytes((0x99, count >> 8, count & 0xFF))
    if count < 1 << 32:
        return b"\x9a" + count.to_bytes(4, "big")
    raise ValueError("array too long")


# Encoded member states by identity: states are immutable and shared between tables,
# and a push-pull sends the whole table, mostly unchanged since the last one. Each entry
# keeps its state alive, so an id is never reused while cached.
_STATE_BYTES: dict[int, tuple[MemberState, bytes]] = {}
_STATE_BYTES_MAX: Final = 1 << 20


def _encoded_state(m: MemberState) -> bytes:
    entry = _STATE_BYTES.get(id(m))
    if entry is not None and entry[0] is m:
        return entry[1]
    data = cbor2.dumps(_state_fields(m))
    if len(_STATE_BYTES) >= _STATE_BYTES_MAX:
        _STATE_BYTES.clear()
    _STATE_BYTES[id(m)] = (m, data)
    return data


def _encode_push_pull(msg: PushPull) -> bytes:
    """``[9, join, [state...], [broadcast...]?]`` from cached state encodings."""
    broadcasts = msg.broadcasts
    parts = [
        b"\x84" if broadcasts else b"\x83",
        b"\x09",
        b"\xf5" if msg.join else b"\xf4",
        _array_header(len(msg.members)),
        *map(_encoded_state, msg.members),
    ]
    if broadcasts:
        parts.append(_array_header(len(broadcasts)))
        parts.extend(cbor2.dumps(_message_items(b)) for b in broadcasts)
    return b"".join(parts)


#: Bytes a datagram adds around its messages, at most (array header + version).
DATAGRAM_OVERHEAD: Final = 4


def assemble(encoded: Sequence[bytes]) -> bytes:
    """A datagram from already encoded messages (see `encode_message`)."""
    return b"".join((_array_header(len(encoded) + 1), b"\x01", *encoded))


def encode(messages: Iterable[Message]) -> bytes:
    """A datagram or stream frame holding `messages`."""
    return assemble([encode_message(m) for m in messages])


# ---------------------------------------------------------------------------------------
# Decoding untrusted bytes


def _refuse_tag(decoder: object, tag: object = None) -> NoReturn:
    raise MalformedMessage("CBOR tags are not part of the format")


# Built-in semantic decoders (datetimes, bignums, decimals, shared references...) are all
# replaced by a refusal; any other tag reaches the tag hook, which refuses too.
_NO_SEMANTICS: Final = dict.fromkeys([*range(0, 1024), 55799], _refuse_tag)


def _bad(why: str) -> NoReturn:
    raise MalformedMessage(why)


def _int(value: Any, limit: int, what: str) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        _bad(f"{what} must be an integer in [0, {limit}]")
    return value


def _name(value: Any, what: str = "name") -> str:
    if type(value) is not str or not 0 < len(value) <= NAME_MAX_BYTES:
        _bad(f"{what} must be a non-empty string")
    if len(value.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        _bad(f"{what} longer than {NAME_MAX_BYTES} bytes")
    return value


def _bytes(value: Any, limit: int, what: str) -> bytes:
    if type(value) is not bytes or len(value) > limit:
        _bad(f"{what} must be at most {limit} bytes")
    return value


def _addr(host: Any, port: Any) -> Address:
    if type(host) is not bytes or len(host) not in (4, 16):
        _bad("host must be a packed IPv4 or IPv6 address")
    if type(port) is not int or not 0 < port < 65_536:
        _bad("port must be in [1, 65535]")
    return (_unpack_host(host), port)


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        _bad(f"{what} must be a boolean")
    return value


def _state(items: Any) -> MemberState:
    if type(items) is not list or len(items) != 6:
        _bad("member state must be a 6-item array")
    name, inc, status, host, port, meta = items
    if type(status) is not int or not 0 <= status < len(_STATUSES):
        _bad("unknown member status")
    return MemberState(
        _name(name),
        _addr(host, port),
        _int(inc, MAX_INCARNATION, "incarnation"),
        _STATUSES[status],
        _bytes(meta, META_MAX_BYTES, "metadata"),
    )


def _message(items: Any, stream: bool) -> Message:
    if type(items) is not list or not items:
        _bad("a message must be a non-empty array")
    kind = items[0]
    if type(kind) is not int:  # 0.0 == 0 and True == 1 in Python: refuse both
        _bad("message kind must be an integer")
    n = len(items)
    if kind == KIND_PING and n in (3, 4):
        source = _name(items[3], "source") if n == 4 else ""
        return Ping(_int(items[1], MAX_SEQ, "seq"), _name(items[2], "target"), source)
    if kind == KIND_ACK and n in (2, 3):
        coord = None
        if n == 3:
            raw = _bytes(items[2], PACKED_BYTES, "coordinate")
            coord = Coordinate.unpack_untrusted(raw)
            if coord is None:
                _bad("not a valid network coordinate")
        return Ack(_int(items[1], MAX_SEQ, "seq"), coord)
    if kind == KIND_ALIVE and n == 6:
        return Alive(
            MemberState(
                _name(items[1]),
                _addr(items[3], items[4]),
                _int(items[2], MAX_INCARNATION, "incarnation"),
                MemberStatus.ALIVE,
                _bytes(items[5], META_MAX_BYTES, "metadata"),
            )
        )
    if kind in (KIND_SUSPECT, KIND_DEAD) and n == 4:
        cls = Suspect if kind == KIND_SUSPECT else Dead
        return cls(
            _name(items[1]),
            _int(items[2], MAX_INCARNATION, "incarnation"),
            _name(items[3], "accuser"),
        )
    if kind == KIND_PING_REQ and n in (6, 7):
        return PingReq(
            _int(items[1], MAX_SEQ, "seq"),
            _name(items[2], "target"),
            _addr(items[3], items[4]),
            _bool(items[5], "nack"),
            _name(items[6], "source") if n == 7 else "",
        )
    if kind == KIND_REFUSAL and n == 4 and stream:
        return Refusal(_name(items[1]), _addr(items[2], items[3]))
    if kind == KIND_QUERY and n == 12:
        return _query(items)
    if kind == KIND_QUERY_RESPONSE and n in (6, 7):
        return _query_response(items)
    if kind == KIND_RELAY and n == 4:
        inner = items[3]
        if type(inner) is not list or not inner or inner[0] != KIND_QUERY_RESPONSE:
            _bad("a relay carries a query response")
        response = _message(inner, stream=False)
        assert isinstance(response, QueryResponse)
        return Relay(_addr(items[1], items[2]), response)
    if KIND_STABLE_ALERT <= kind <= KIND_STABLE_ALERTS:
        return _stable(kind, items)
    if kind == KIND_NACK and n == 2:
        return Nack(_int(items[1], MAX_SEQ, "seq"))
    if kind == KIND_USER_BROADCAST and n == 4:
        return UserBroadcast(
            _name(items[1], "origin"),
            _int(items[2], MAX_INCARNATION, "broadcast id"),
            _bytes(items[3], MAX_USER_PAYLOAD_BYTES, "payload"),
        )
    if kind == KIND_USER_MESSAGE and n == 3:
        return UserMessage(
            _name(items[1], "source"), _bytes(items[2], MAX_USER_PAYLOAD_BYTES, "payload")
        )
    if kind == KIND_PUSH_PULL and n in (3, 4) and stream:
        members = items[2]
        if type(members) is not list or len(members) > MAX_PUSH_PULL_MEMBERS:
            _bad("push-pull members must be an array of bounded length")
        broadcasts: tuple[UserBroadcast, ...] = ()
        if n == 4:
            # (Not `raw`: a compiled function gives a name one type, and `raw` is the
            # coordinate's bytes above.)
            replayed = items[3]
            if type(replayed) is not list or len(replayed) > MAX_PUSH_PULL_BROADCASTS:
                _bad("push-pull broadcasts must be an array of bounded length")
            broadcasts = tuple(_replayed_broadcast(b) for b in replayed)
        return PushPull(
            _bool(items[1], "join"), tuple(_state(m) for m in members), broadcasts
        )
    _bad(f"unknown message kind or wrong arity: kind={kind!r} items={n}")


def _query(items: list[Any]) -> Query:
    names, tags = items[10], items[11]
    if type(names) is not list or len(names) > MAX_QUERY_FILTERS:
        _bad("query name filters must be a bounded array")
    if type(tags) is not list or len(tags) > MAX_QUERY_FILTERS:
        _bad("query tag filters must be a bounded array")
    filter_tags = []
    for pair in tags:
        if type(pair) is not list or len(pair) != 2:
            _bad("a tag filter is a [key, pattern] pair")
        key, pattern = pair
        if type(key) is not str or type(pattern) is not str:
            _bad("a tag filter's key and pattern are strings")
        if len(pattern.encode("utf-8", "surrogatepass")) > MAX_PATTERN_BYTES:
            _bad("tag pattern too long")
        filter_tags.append((_name(key, "tag key"), pattern))
    return Query(
        _name(items[1], "origin"),
        _int(items[2], MAX_INCARNATION, "query id"),
        _name(items[3], "query name"),
        _bytes(items[4], MAX_USER_PAYLOAD_BYTES, "payload"),
        _addr(items[5], items[6]),
        _int(items[7], MAX_QUERY_TIMEOUT_MS, "timeout"),
        _bool(items[8], "want_ack"),
        _int(items[9], MAX_RELAY_FACTOR, "relay factor"),
        tuple(_name(x, "filter name") for x in names),
        tuple(filter_tags),
    )


def _query_response(items: list[Any]) -> QueryResponse:
    return QueryResponse(
        _name(items[1], "origin"),
        _int(items[2], MAX_INCARNATION, "query id"),
        _name(items[3], "source"),
        _bool(items[4], "ack"),
        _bytes(items[5], MAX_USER_PAYLOAD_BYTES, "payload"),
        _name(items[6], "via") if len(items) == 7 else "",
    )


def _bounded_list(value: Any, limit: int, what: str) -> list[Any]:
    if type(value) is not list or len(value) > limit:
        _bad(f"{what} must be an array of at most {limit} items")
    return value


def _stable(kind: int, items: list[Any]) -> Message:
    """The stable-view messages (`StableAlert`, `StableAlerts`, `StableVote`,
    `ViewDigest`, `ViewSync`)."""
    n = len(items)
    if kind == KIND_STABLE_ALERTS and n == 5:
        ring_bits = _int(items[4], (1 << MAX_ALERT_RINGS) - 1, "alert rings bitmap")
        if not ring_bits:
            _bad("an alert bundle names at least one ring")
        return StableAlerts(
            _int(items[1], MAX_INCARNATION, "configuration id"),
            _name(items[2], "subject"),
            _bool(items[3], "up"),
            ring_bits,
        )
    if kind == KIND_STABLE_ALERT and n == 6:
        rings = _bounded_list(items[5], MAX_ALERT_RINGS, "alert rings")
        return StableAlert(
            _int(items[1], MAX_INCARNATION, "configuration id"),
            _name(items[2], "observer"),
            _name(items[3], "subject"),
            _bool(items[4], "up"),
            tuple(_int(r, MAX_ALERT_RINGS - 1, "ring") for r in rings),
        )
    if kind == KIND_STABLE_VOTE and n in (4, 5):
        cut = []
        for entry in _bounded_list(items[2], MAX_CUT_ENTRIES, "cut"):
            if type(entry) is not list or len(entry) != 2:
                _bad("a cut entry is a [name, up] pair")
            cut.append((_name(entry[0], "cut member"), _bool(entry[1], "up")))
        if cut != sorted(cut) or len({name for name, _ in cut}) != len(cut):
            _bad("a cut names each member once, sorted")
        round_ = _int(items[4], MAX_INCARNATION, "round") if n == 5 else 1
        if round_ < 1:
            _bad("voting rounds start at 1")
        return StableVote(
            _int(items[1], MAX_INCARNATION, "configuration id"), tuple(cut),
            _bytes(items[3], MAX_VOTER_BYTES, "voters"), round_,
        )
    if kind == KIND_VIEW_DIGEST and n == 4:
        return ViewDigest(
            _int(items[1], MAX_INCARNATION, "configuration id"),
            _int(items[2], MAX_INCARNATION, "epoch"),
            _int(items[3], MAX_INCARNATION, "evidence"),
        )
    if kind == KIND_VIEW_SYNC and n == 6:
        parts = _int(items[4], MAX_SYNC_PARTS, "parts")
        part = _int(items[3], MAX_SYNC_PARTS, "part")
        if not part < parts:
            _bad("view-sync part out of range")
        names = _bounded_list(items[5], MAX_SYNC_NAMES, "view-sync names")
        return ViewSync(
            _int(items[1], MAX_INCARNATION, "configuration id"),
            _int(items[2], MAX_INCARNATION, "epoch"), part, parts,
            tuple(_name(x, "member") for x in names),
        )
    _bad(f"unknown message kind or wrong arity: kind={kind!r} items={n}")


def _replayed_broadcast(items: Any) -> UserBroadcast:
    if type(items) is not list or not items or items[0] != KIND_USER_BROADCAST:
        _bad("push-pull broadcasts must be user broadcasts")
    msg = _message(items, stream=False)
    if not isinstance(msg, UserBroadcast):
        _bad("push-pull broadcasts must be user broadcasts")
    return msg


def _scan_untrusted(data: bytes | bytearray | memoryview, max_arrays: int) -> None:
    """Walk the CBOR structure without building it: refuse maps, tags, indefinite
    lengths, nesting deeper than the format's 5 levels, declared lengths longer than
    the bytes left, more than `max_arrays` arrays and more than 12 items per array on
    average, and anything after the first item. Costs one pass, allocates nothing."""
    view = bytes(data)
    end = len(view)
    pos = 0
    arrays = 0
    items_allowed = 1  # the top-level item; each array adds its count
    stack: list[int] = []  # items still to read in each open array
    remaining = 1  # items still to read at this level
    while True:
        if remaining == 0:
            if not stack:
                break
            remaining = stack.pop()
            continue
        remaining -= 1
        if pos >= end:
            _bad("truncated CBOR")
        ib = view[pos]
        pos += 1
        major, info = ib >> 5, ib & 0x1F
        if info < 24:
            value = info
        elif info <= 27:
            width = 1 << (info - 24)
            if pos + width > end:
                _bad("truncated CBOR")
            value = int.from_bytes(view[pos:pos + width], "big")
            pos += width
        else:
            _bad("indefinite or reserved CBOR lengths are not part of the format")
        if major in (0, 1) or major == 7:
            continue  # integers, simple values, floats: their argument was skipped
        if major in (2, 3):
            if value > end - pos:
                _bad("a string longer than the frame")
            pos += value
            continue
        if major != 4:
            _bad("CBOR maps and tags are not part of the format")
        arrays += 1
        items_allowed += value
        if arrays > max_arrays or items_allowed > _ITEMS_PER_ARRAY * max_arrays:
            _bad("too many items in one frame")
        if value > end - pos:
            _bad("an array longer than the frame")
        if len(stack) >= 5:
            _bad("nested too deeply")
        stack.append(remaining)
        remaining = value
    if pos != end:
        _bad("trailing bytes after the frame")


def decode_untrusted(data: object, *, stream: bool = False) -> tuple[Message, ...]:
    """The messages in a datagram (or, with ``stream=True``, a stream frame).

    Raises `MalformedMessage` for anything that is not a well-formed, in-range frame of
    this format version, and never raises anything else. `data` is any object, as at
    any boundary of untrusted input: what is not bytes-like is malformed too (a type
    declared narrower would make the compiled core raise `TypeError` for it instead).
    """
    limit = MAX_STREAM_BYTES if stream else MAX_DATAGRAM_BYTES
    if not isinstance(data, bytes | bytearray | memoryview):
        _bad("input must be bytes")
    if not 2 <= len(data) <= limit:
        _bad(f"frame size {len(data)} outside [2, {limit}]")
    _scan_untrusted(data, MAX_ARRAYS_STREAM if stream else MAX_ARRAYS_DATAGRAM)
    fp = io.BytesIO(data)
    try:
        top = cbor2.CBORDecoder(
            fp,
            tag_hook=_refuse_tag,
            semantic_decoders=_NO_SEMANTICS,
            max_depth=5,
            allow_indefinite=False,
        ).decode()
    except MalformedMessage:
        raise
    except Exception as exc:  # cbor2 raises several types (and ValueError, etc.)
        raise MalformedMessage(f"not CBOR: {exc}") from None
    if fp.tell() != len(data):
        _bad("trailing bytes after the frame")
    if type(top) is not list or not top:
        _bad("a frame must be a non-empty array")
    if len(top) - 1 > MAX_MESSAGES:
        _bad("too many messages in one frame")
    if top[0] != VERSION or type(top[0]) is not int:
        _bad(f"unsupported format version {top[0]!r}")
    try:
        return tuple(_message(item, stream) for item in top[1:])
    except MalformedMessage:
        raise
    except Exception as exc:  # defensive: a value that slipped past the checks
        raise MalformedMessage(f"invalid field: {exc}") from None


def message_kind(msg: Message) -> str:
    """The statistics name of a message's kind (``"ping"``, ``"alive"``...)."""
    return KIND_NAMES[type(msg)]
