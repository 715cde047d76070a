"""The agent's control protocol: newline-delimited JSON over TCP on loopback.

A client sends one JSON object per line and reads one JSON object per line back::

    -> {"cmd": "members"}
    <- {"ok": true, "members": [{"name": "n1", "addr": "127.0.0.1:7946", ...}]}
    -> {"cmd": "nope"}
    <- {"ok": false, "error": "unknown command 'nope' (try: event, info, ...)"}

Commands: ``info``, ``members``, ``event`` (``name``, ``payload``), ``tags`` (``set``:
object, ``delete``: list), ``leave`` (answered once the departure was gossiped; then the
agent exits), ``monitor`` (answered ``{"ok": true, "streaming": true}``, then one event
record per line until the client closes the connection). Several requests may share one
connection, one at a time; a connection ends after ``monitor``.

Bounds: a request line is at most 64 KiB (longer: an error, then the connection is
closed); a connection idle for 60 s is closed; at most 64 connections at once; a response
the client does not read within 10 s ends the connection; a monitor that falls more than
1024 events behind is cut off with an error line. A malformed request gets an error
answer and never affects the agent.
"""

from __future__ import annotations

import errno
import json
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio

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
#: Connections served at once; more are answered with an error and closed.
MAX_CONNECTIONS = 64
#: Event records buffered per monitor before it is cut off as too slow.
MONITOR_BUFFER = 1024
#: Default agent RPC address.
DEFAULT_RPC: Address = ("127.0.0.1", 7373)


class RpcError(Exception):
    """A request failed: the agent answered with an error, or the exchange broke."""


class AgentUnreachable(RpcError):
    """No agent answers at the address."""


class RequestError(Exception):
    """Raised by a dispatcher: the request is wrong; answered as ``{"ok": false}``."""


class LineTooLong(Exception):
    """A peer sent a line over the limit."""


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
    if not isinstance(request, dict):
        raise RequestError('malformed request: expected a JSON object like {"cmd": "members"}')
    cmd = request.get("cmd")
    if not isinstance(cmd, str):
        raise RequestError('malformed request: missing "cmd" (a string)')
    return cmd, request


# ================================================================================ server


class RpcServer:
    """Serves the control protocol on listeners until cancelled."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._connections = 0

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
        try:
            async with stream:
                if self._connections >= MAX_CONNECTIONS:
                    await self._send(stream, error("too many connections; try again later"))
                    return
                self._connections += 1
                try:
                    await self._requests(stream)
                finally:
                    self._connections -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away; nothing to answer

    async def _requests(self, stream: trio.SocketStream) -> None:
        reader = LineReader(stream, MAX_LINE_BYTES)
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
            try:
                cmd, request = parse_request_untrusted(line)
            except RequestError as exc:
                if not await self._send(stream, error(str(exc))):
                    return
                continue
            if cmd == "monitor":
                await self._monitor(stream, reader)
                return
            response = await self._answer(cmd, request)
            try:
                sent = await self._send(stream, response)
            finally:
                self._dispatcher.responded(cmd)
            if not sent:
                return

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

    async def _monitor(self, stream: trio.SocketStream, reader: LineReader) -> None:
        channel = self._dispatcher.subscribe()
        try:
            if not await self._send(stream, {"ok": True, "streaming": True}):
                return
            async with trio.open_nursery() as nursery:

                async def until_client_closes() -> None:
                    # Anything the client sends is ignored; EOF (or garbage) ends the stream.
                    try:
                        while await reader.read_line() is not None:
                            pass
                    except LineTooLong:
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(until_client_closes)
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
    """One client connection to an agent."""

    def __init__(self, stream: trio.SocketStream, addr: Address) -> None:
        self.addr = addr
        self._stream = stream
        self._reader = LineReader(stream, MAX_RESPONSE_BYTES)

    async def send(self, request: Mapping[str, Any]) -> None:
        """Send one request line."""
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
            raise RpcError(str(answer.get("error", "request failed")))
        return answer

    async def monitor(self) -> None:
        """Subscribe this connection to the agent's events (then read `records`)."""
        await self.call({"cmd": "monitor"})

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
async def connect(addr: Address, *, timeout_s: float = 5.0) -> AsyncIterator[RpcConnection]:
    """Open a connection to the agent at `addr`; raises `AgentUnreachable`."""
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
        yield RpcConnection(stream, addr)


async def call(
    addr: Address, request: Mapping[str, Any], *, timeout_s: float = 30.0
) -> Record:
    """One request on a fresh connection, bounded by `timeout_s`."""
    try:
        with trio.fail_after(timeout_s):
            async with connect(addr, timeout_s=min(timeout_s, 5.0)) as conn:
                return await conn.call(request)
    except trio.TooSlowError:
        raise RpcError(
            f"agent at {_fmt(addr)} did not answer {request.get('cmd')!r} "
            f"within {math.ceil(timeout_s)} s"
        ) from None
