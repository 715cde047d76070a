"""The agent's control protocol: newline-delimited JSON over TCP on loopback.

A client sends one JSON object per line and reads one JSON object per line back::

    -> {"cmd": "members"}
    <- {"ok": true, "members": [{"name": "n1", "addr": "127.0.0.1:7946", ...}]}
    -> {"cmd": "nope"}
    <- {"ok": false, "error": "unknown command 'nope' (try: event, info, ...)"}

Commands: ``info``, ``members``, ``event`` (``name``, ``payload``), ``tags`` (``set``:
object, ``delete``: list), ``leave`` (answered once the departure was gossiped; then the
agent exits), ``monitor`` (answered ``{"ok": true, "streaming": true}``, then one event
record per line until the client closes the connection), ``query`` (``name``,
``payload``, ``nodes``, ``tags``, ``timeout_s``, ``ack``, ``relay_factor``, ``reask``; answered
``{"ok": true, "streaming": true, "id": ..., "name": ..., "timeout_s": ...}``, then one
record per ack or answer, then a ``{"type": "done", ...}`` summary, then the connection is
closed) and ``keys`` (``op``: install, use, remove or list; ``key``; ``timeout_s``;
answered once every member has answered or the command timed out, with the per-member
report). Several requests may share one connection, one at a time; a connection ends
after ``monitor`` or ``query``.

Authentication: every request carries the agent's token as ``"auth"`` (see
`swim.agent.rpc_token`: a random token in a 0600 file of the agent's user, or
``--rpc-auth TOKEN``), compared in constant time. A request without it, or with another,
is answered ``{"ok": false, "error": "permission denied: ...", "code": "permission_denied"}``
and the connection is closed. The clients here add the token themselves.

Bounds: a request line is at most 64 KiB (longer: an error, then the connection is
closed); a new connection must send an authenticated request within 2 s; at most 16
connections wait for theirs (at most 4 from one source IP), and a newcomer beyond either
bound closes the oldest waiting one, so idle connections cannot keep out a client that
sends its token at once; at most 64 authenticated connections at once; an authenticated
connection idle for 60 s is closed; a response the client does not read within 10 s ends
the connection; a monitor that falls more than 1024 events behind is cut off with an
error line. A malformed request (also one nested too deeply for the JSON parser) gets an
error answer and never affects the agent: nothing a client sends can raise out of the
connection handler.
"""

from __future__ import annotations

import errno
import json
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import attrs
import trio

from swim.agent import rpc_token
from swim.core.messages import Address

Record = dict[str, Any]

#: Longest request or response line accepted (bytes, newline excluded).
MAX_LINE_BYTES = 64 * 1024
#: Longest response line a client accepts (a members list of a large cluster).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: A connection with no request for this long is closed.
IDLE_TIMEOUT_S = 60.0
#: A response (or monitor record) the client does not take within this long ends the
#: connection.
SEND_TIMEOUT_S = 10.0
#: Authenticated connections served at once; more are answered with an error and closed.
MAX_CONNECTIONS = 64
#: How long a new connection has to send its first, authenticated, request.
AUTH_TIMEOUT_S = 2.0
#: Connections waiting to authenticate, in all and from one source IP; a newcomer beyond
#: either bound closes the oldest waiting one (from its own source for the second).
MAX_PENDING = 16
MAX_PENDING_PER_SOURCE = 4
#: The error code of a request refused for its token.
PERMISSION_DENIED = "permission_denied"
#: Refusals a client caused are logged at most once per kind per this long.
LOG_INTERVAL_S = 10.0
#: Event records buffered per monitor before it is cut off as too slow.
MONITOR_BUFFER = 1024
#: Default agent RPC address.
DEFAULT_RPC: Address = ("127.0.0.1", 7373)


class RpcError(Exception):
    """A request failed: the agent answered with an error, or the exchange broke."""


class AgentUnreachable(RpcError):
    """No agent answers at the address."""


class PermissionDenied(RpcError):
    """The agent refused the request: no token, or not its token."""


class RequestError(Exception):
    """Raised by a dispatcher: the request is wrong; answered as ``{"ok": false}``."""


class LineTooLong(Exception):
    """A peer sent a line over the limit."""


class RecordStream(Protocol):
    """Records streamed to a client after a request's first answer (``query``)."""

    def __aiter__(self) -> AsyncIterator[Record]: ...

    def close(self) -> None:
        """The client is gone or the stream is over: stop producing."""
        ...


class Dispatcher(Protocol):
    """What the server needs from the agent."""

    async def handle(self, cmd: str, request: Mapping[str, Any]) -> Record:
        """Answer one request (not ``monitor``); raise `RequestError` for a bad one."""
        ...

    def responded(self, cmd: str) -> None:
        """Called after the answer to `cmd` was sent (or could not be)."""
        ...

    def subscribe(self) -> trio.MemoryReceiveChannel[Record]:
        """A channel of event records; the dispatcher closes its end if it overflows."""
        ...

    def query(self, request: Mapping[str, Any]) -> tuple[Record, RecordStream]:
        """Start a query: the fields of the first answer and the records that follow;
        raise `RequestError` for a bad one."""
        ...

    def unsubscribe(self, channel: trio.MemoryReceiveChannel[Record]) -> None:
        """Stop feeding a channel from `subscribe`."""
        ...

    def log(self, message: str) -> None:
        """Write a line on the agent's log."""
        ...


class LineReader:
    """Reads newline-terminated lines from a stream, each at most `max_bytes`."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_bytes: int) -> None:
        self._stream = stream
        self._max = max_bytes
        self._buf = bytearray()

    async def read_line(self) -> bytes | None:
        """The next line without its newline; None at end of stream (a partial last line
        is dropped). Raises `LineTooLong`."""
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                if len(line) > self._max:
                    raise LineTooLong(f"line of {len(line)} bytes is over {self._max}")
                return line
            if len(self._buf) > self._max:
                raise LineTooLong(f"line is over {self._max} bytes")
            start = len(self._buf)
            data = await self._stream.receive_some(65536)
            if not data:
                return None
            self._buf += data


def encode_line(record: Mapping[str, Any]) -> bytes:
    """A record as one JSON line (NaN and infinities are refused)."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def error(message: str) -> Record:
    """An error answer."""
    return {"ok": False, "error": message}


def parse_request_untrusted(line: bytes) -> tuple[str, Record]:
    """(cmd, request) from a request line; raises `RequestError` if malformed."""
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"malformed request: not a JSON line ({exc})") from None
    except RecursionError:  # e.g. 60,000 times "[": deeper than the parser can go
        raise RequestError("malformed request: nested too deeply") from None
    if not isinstance(request, dict):
        raise RequestError('malformed request: expected a JSON object like {"cmd": "members"}')
    cmd = request.get("cmd")
    if not isinstance(cmd, str):
        raise RequestError('malformed request: missing "cmd" (a string)')
    return cmd, request


# ================================================================================ server


@attrs.define(eq=False)
class RpcStats:
    """What the RPC server refused or survived. Read them; do not modify them."""

    #: Requests without the agent's token (answered "permission denied", then closed).
    denied: int = 0
    #: New connections closed for sending no authenticated request in time.
    auth_timeouts: int = 0
    #: Connections still waiting to authenticate, closed to make room for a newer one.
    evicted: int = 0
    #: Connections refused because `MAX_CONNECTIONS` were being served.
    over_limit: int = 0
    #: Malformed request lines (answered with an error).
    malformed: int = 0
    #: Failures inside the server or the agent (answered "internal error" and logged).
    internal_errors: int = 0


@attrs.define(eq=False)
class _Pending:
    """A connection that has not authenticated yet."""

    source: str
    scope: trio.CancelScope
    evicted: bool = False


def _client_gone(exc: BaseException) -> bool:
    """Whether `exc` (or every exception in a group) says the client went away."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_client_gone(inner) for inner in exc.exceptions)
    return isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError, OSError))


def _source_of(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "?"


class RpcServer:
    """Serves the control protocol on listeners until cancelled.

    With a `token`, every request must carry it (see the module docstring); with None,
    anyone who can connect is served (for in-process tests)."""

    def __init__(self, dispatcher: Dispatcher, *, token: str | None = None) -> None:
        self._dispatcher = dispatcher
        self._token = token
        self._connections = 0
        # Connections waiting to authenticate, oldest first (dicts keep insertion order).
        self._pending: dict[int, _Pending] = {}
        self._next_pending = 0
        self.stats = RpcStats()
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections on `listeners` (already bound) until cancelled."""
        await trio.serve_listeners(self._connection, listeners, task_status=task_status)

    async def _send(self, stream: trio.SocketStream, record: Mapping[str, Any]) -> bool:
        """Send one line; False if the client does not take it in time."""
        with trio.move_on_after(SEND_TIMEOUT_S):
            await stream.send_all(encode_line(record))
            return True
        return False

    async def _connection(self, stream: trio.SocketStream) -> None:
        # Nothing may escape from here: serve_listeners would take the agent down with it.
        try:
            async with stream:
                try:
                    await self._serve_connection(stream)
                except Exception as exc:
                    if _client_gone(exc):
                        return
                    self.stats.internal_errors += 1
                    self._dispatcher.log(f"rpc: internal error serving a connection: {exc!r}")
                    await self._send(stream, error("internal error"))
        except Exception:
            pass  # the client went away (or the error answer failed); nothing to answer

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        reader = LineReader(stream, MAX_LINE_BYTES)
        first: tuple[str, Record] | None = None
        if self._token is not None:
            first = await self._authenticate(stream, reader)
            if first is None:
                return
        if self._connections >= MAX_CONNECTIONS:
            self.stats.over_limit += 1
            await self._send(stream, error("too many connections; try again later"))
            return
        self._connections += 1
        try:
            if first is not None and not await self._request(stream, reader, *first):
                return
            await self._requests(stream, reader)
        finally:
            self._connections -= 1

    def _admit_pending(self, source: str) -> _Pending:
        """Register a new unauthenticated connection, closing the oldest waiting one (of
        its own source first) when a bound is reached."""
        same_source = [p for p in self._pending.values() if p.source == source]
        if len(same_source) >= MAX_PENDING_PER_SOURCE:
            self._evict(same_source[0])
        elif len(self._pending) >= MAX_PENDING:
            self._evict(next(iter(self._pending.values())))
        deadline = trio.current_time() + AUTH_TIMEOUT_S
        pending = _Pending(source, trio.CancelScope(deadline=deadline))
        self._pending[self._next_pending] = pending
        self._next_pending += 1
        return pending

    def _evict(self, pending: _Pending) -> None:
        self._forget(pending)
        pending.evicted = True
        pending.scope.cancel()

    def _forget(self, pending: _Pending) -> None:
        for key, value in self._pending.items():
            if value is pending:
                del self._pending[key]
                return

    async def _authenticate(
        self, stream: trio.SocketStream, reader: LineReader
    ) -> tuple[str, Record] | None:
        """The connection's first request if it carries the token; else answer, None."""
        pending = self._admit_pending(_source_of(stream))
        line: bytes | None = None
        too_long: LineTooLong | None = None
        try:
            with pending.scope:
                try:
                    line = b""
                    while line is not None and not line.strip():
                        line = await reader.read_line()
                except LineTooLong as exc:
                    too_long = exc
        finally:
            self._forget(pending)  # no longer waiting, whatever the outcome
        if pending.scope.cancelled_caught:
            if pending.evicted:
                self.stats.evicted += 1
                await self._send(
                    stream, error("too many connections waiting to authenticate; closing")
                )
            else:
                self.stats.auth_timeouts += 1
                await self._send(
                    stream,
                    error(f"no authenticated request within {AUTH_TIMEOUT_S:g} s; closing"),
                )
            return None
        if too_long is not None:
            await self._send(stream, error(f"request too large: {too_long}"))
            return None
        if line is None:
            return None
        parsed = await self._parse(stream, line)
        if parsed is None:
            return None
        if not self._authorized(parsed[1]):
            await self._deny(stream)
            return None
        return parsed

    def _log_limited(self, kind: str, message: str) -> None:
        """Log a refusal a client caused: at most one line per kind per `LOG_INTERVAL_S`,
        so a flood of bad requests cannot flood the log."""
        now = trio.current_time()
        last = self._logged_at.get(kind)
        if last is not None and now - last < LOG_INTERVAL_S:
            self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
            return
        self._logged_at[kind] = now
        more = self._unlogged.pop(kind, 0)
        self._dispatcher.log(f"rpc: {message}" + (f" (and {more} more since)" if more else ""))

    def _authorized(self, request: Mapping[str, Any]) -> bool:
        return self._token is None or rpc_token.tokens_match(request.get("auth"), self._token)

    async def _deny(self, stream: trio.SocketStream) -> None:
        self.stats.denied += 1
        self._log_limited("denied", f"refused a request from {_source_of(stream)}: no valid token")
        await self._send(
            stream,
            {**error("permission denied: missing or wrong RPC token"), "code": PERMISSION_DENIED},
        )

    async def _parse(self, stream: trio.SocketStream, line: bytes) -> tuple[str, Record] | None:
        """The parsed request, or None once a malformed one has been answered."""
        try:
            return parse_request_untrusted(line)
        except RequestError as exc:
            self.stats.malformed += 1
            self._log_limited("malformed", f"{exc} (from {_source_of(stream)})")
            await self._send(stream, error(str(exc)))
        except Exception as exc:  # a parser bug must not take the agent down either
            self.stats.internal_errors += 1
            self._dispatcher.log(f"rpc: internal error parsing a request: {exc!r}")
            await self._send(stream, error(f"malformed request: {type(exc).__name__}"))
        return None

    async def _requests(self, stream: trio.SocketStream, reader: LineReader) -> None:
        while True:
            line: bytes | None = b""
            with trio.move_on_after(IDLE_TIMEOUT_S) as idle:
                try:
                    line = await reader.read_line()
                except LineTooLong as exc:
                    await self._send(stream, error(f"request too large: {exc}"))
                    return
            if idle.cancelled_caught:
                await self._send(stream, error(f"idle for {IDLE_TIMEOUT_S:g} s; closing"))
                return
            if line is None:
                return
            if not line.strip():
                continue
            parsed = await self._parse(stream, line)
            if parsed is None:
                continue
            if not self._authorized(parsed[1]):
                await self._deny(stream)
                return
            if not await self._request(stream, reader, *parsed):
                return

    async def _request(
        self, stream: trio.SocketStream, reader: LineReader, cmd: str, request: Record
    ) -> bool:
        """Answer one request; False when the connection is done."""
        if cmd == "monitor":
            await self._monitor(stream, reader)
            return False
        request.pop("auth", None)  # the dispatcher never sees the token
        if cmd == "query":
            await self._query(stream, reader, request)
            return False
        response = await self._answer(cmd, request)
        try:
            return await self._send(stream, response)
        finally:
            self._dispatcher.responded(cmd)

    async def _answer(self, cmd: str, request: Mapping[str, Any]) -> Record:
        try:
            answer = await self._dispatcher.handle(cmd, request)
        except RequestError as exc:
            return error(str(exc))
        except trio.Cancelled:
            raise
        except Exception as exc:  # a bug must not take the agent down: answer and log it
            self._dispatcher.log(f"rpc: internal error on {cmd!r}: {exc!r}")
            return error(f"internal error: {exc}")
        return {"ok": True, **answer}

    async def _query(
        self, stream: trio.SocketStream, reader: LineReader, request: Record
    ) -> None:
        """Answer a query request, stream its results until the summary, then end."""
        try:
            header, records = self._dispatcher.query(request)
        except RequestError as exc:
            await self._send(stream, error(str(exc)))
            return
        except Exception as exc:  # a bug must not take the agent down: answer and log it
            self._dispatcher.log(f"rpc: internal error on 'query': {exc!r}")
            await self._send(stream, error(f"internal error: {exc}"))
            return
        try:
            if not await self._send(stream, {"ok": True, "streaming": True, **header}):
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when_client_closes, reader, nursery.cancel_scope)
                async for record in records:
                    if not await self._send(stream, record):
                        break
                nursery.cancel_scope.cancel()
        finally:
            records.close()

    async def _monitor(self, stream: trio.SocketStream, reader: LineReader) -> None:
        channel = self._dispatcher.subscribe()
        try:
            if not await self._send(stream, {"ok": True, "streaming": True}):
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when_client_closes, reader, nursery.cancel_scope)
                async for record in channel:
                    if not await self._send(stream, record):
                        break
                else:
                    # The dispatcher closed the channel: this monitor fell behind.
                    await self._send(
                        stream, error(f"monitor fell more than {MONITOR_BUFFER} events behind")
                    )
                nursery.cancel_scope.cancel()
        finally:
            self._dispatcher.unsubscribe(channel)


# ================================================================================ client


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if exc.errno == errno.ETIMEDOUT:
        return "timed out"
    return (exc.strerror or str(exc)).lower()


class RpcConnection:
    """One client connection to an agent; every request carries `auth` if there is one."""

    def __init__(self, stream: trio.SocketStream, addr: Address, auth: str | None = None) -> None:
        self.addr = addr
        self._stream = stream
        self._reader = LineReader(stream, MAX_RESPONSE_BYTES)
        self._auth = auth

    async def send(self, request: Mapping[str, Any]) -> None:
        """Send one request line."""
        if self._auth is not None:
            request = {**request, "auth": self._auth}
        try:
            await self._stream.send_all(encode_line(request))
        except (trio.BrokenResourceError, OSError) as exc:
            raise RpcError(f"agent at {_fmt(self.addr)} closed the connection: {exc}") from None

    async def receive(self) -> Record | None:
        """The next line from the agent as a record; None when it closes the connection."""
        try:
            line = await self._reader.read_line()
        except (trio.BrokenResourceError, OSError, LineTooLong) as exc:
            raise RpcError(f"connection to agent at {_fmt(self.addr)} broke: {exc}") from None
        if line is None:
            return None
        try:
            record = json.loads(line)
        except ValueError:
            raise RpcError(f"agent at {_fmt(self.addr)} sent a malformed line") from None
        if not isinstance(record, dict):
            raise RpcError(f"agent at {_fmt(self.addr)} sent a malformed line")
        return record

    async def call(self, request: Mapping[str, Any]) -> Record:
        """Send a request and return the answer; raises `RpcError` on an error answer."""
        await self.send(request)
        answer = await self.receive()
        if answer is None:
            raise RpcError(f"agent at {_fmt(self.addr)} closed the connection")
        if not answer.get("ok"):
            if answer.get("code") == PERMISSION_DENIED:
                raise self._denied()
            raise RpcError(str(answer.get("error", "request failed")))
        return answer

    def _denied(self) -> PermissionDenied:
        if self._auth is None:
            return PermissionDenied(
                f"permission denied: no RPC token for the agent at {_fmt(self.addr)} "
                f"({rpc_token.token_path(self.addr)} is missing or unreadable); run as the "
                f"agent's user, or pass --rpc-auth TOKEN or set {rpc_token.TOKEN_ENV}"
            )
        return PermissionDenied(
            f"permission denied: the agent at {_fmt(self.addr)} refused the RPC token"
        )

    async def monitor(self) -> None:
        """Subscribe this connection to the agent's events (then read `records`)."""
        await self.call({"cmd": "monitor"})

    async def query(self, request: Mapping[str, Any]) -> Record:
        """Send a ``query`` request; its first answer (then read `records` until the
        ``done`` record)."""
        return await self.call({**request, "cmd": "query"})

    def records(self) -> _Records:
        """Event records after `monitor`, until the agent closes the stream.

        A plain async iterator rather than an async generator, so abandoning it (on
        cancellation, say) leaves nothing for the garbage collector to finalize."""
        return _Records(self)


class _Records:
    def __init__(self, conn: RpcConnection) -> None:
        self._conn = conn

    def __aiter__(self) -> _Records:
        return self

    async def __anext__(self) -> Record:
        record = await self._conn.receive()
        if record is None:
            raise StopAsyncIteration
        if record.get("ok") is False:
            raise RpcError(str(record.get("error")))
        return record


def _fmt(addr: Address) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@asynccontextmanager
async def connect(
    addr: Address, *, timeout_s: float = 5.0, auth: str | None = None
) -> AsyncIterator[RpcConnection]:
    """Open a connection to the agent at `addr`; raises `AgentUnreachable`.

    Requests carry `auth`, or when it is None the token from ``SWIM_RPC_AUTH`` or this
    user's token file for `addr` (`swim.agent.rpc_token.client_token`)."""
    token = auth if auth is not None else rpc_token.client_token(addr)
    host, port = addr
    family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        with trio.fail_after(timeout_s):
            await sock.connect((host, port))
    except trio.TooSlowError:
        sock.close()
        raise AgentUnreachable(f"cannot reach agent at {_fmt(addr)}: timed out") from None
    except OSError as exc:
        sock.close()
        raise AgentUnreachable(f"cannot reach agent at {_fmt(addr)}: {_reason(exc)}") from None
    stream = trio.SocketStream(sock)
    async with stream:
        yield RpcConnection(stream, addr, token)


async def call(
    addr: Address,
    request: Mapping[str, Any],
    *,
    timeout_s: float = 30.0,
    auth: str | None = None,
) -> Record:
    """One request on a fresh connection, bounded by `timeout_s` (`auth` as `connect`)."""
    try:
        with trio.fail_after(timeout_s):
            async with connect(addr, timeout_s=min(timeout_s, 5.0), auth=auth) as conn:
                return await conn.call(request)
    except trio.TooSlowError:
        raise RpcError(
            f"agent at {_fmt(addr)} did not answer {request.get('cmd')!r} "
            f"within {math.ceil(timeout_s)} s"
        ) from None


async def _cancel_when_client_closes(reader: LineReader, scope: trio.CancelScope) -> None:
    """End a streaming answer once its client closes: anything the client sends is
    ignored; EOF (or garbage) cancels `scope`."""
    try:
        while await reader.read_line() is not None:
            pass
    except LineTooLong:
        pass
    scope.cancel()
