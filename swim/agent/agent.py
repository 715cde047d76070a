"""`swim agent`: one cluster member in the foreground, controlled over the RPC protocol.

The agent runs a `swim.Node`, prints every membership change (a human line, or one JSON
record per line with ``--log-json``; see `swim.agent.output`), keeps its tags in the
member metadata (`swim.agent.tags`) and serves `swim.agent.rpc` on loopback. SIGINT or
SIGTERM makes it leave gracefully and exit 0; a second signal exits at once. It is
started by `swim.agent.startup` from options that `swim.agent.settings` makes of the
flags and the config file.

Event records go to stdout; the agent's own log lines (start, joins, leaving, handler
runs, errors) go to stderr, as JSON too with ``--log-json``.

Queries: the agent answers a query it was started with ``--query-response NAME=TEXT``
for (a static answer), else with the output of a query handler script, if any
(`swim.agent.handlers`); acks are automatic whenever the asker wants them. Every query
it matches is printed and streamed to monitors as a ``query`` record. The RPC ``query``
command asks the cluster and streams the results; ``keys`` runs a cluster-wide key
command (`swim.runtime.keyops`) and answers its per-member report; ``join`` joins the
running member through more seeds, and ``force-leave`` marks a failed member as left
cluster-wide.

Health checks (``--check``, `swim.agent.health_checks`) run as the node's health
sources; the agent logs each change of its own health and ``info`` shows every check's
latest result. Tags set over RPC keep the health tags the checks publish.
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import attrs
import trio

from swim.agent import addresses, output, records, rpc, rpc_token
from swim.agent.handlers import DEFAULT_TIMEOUT_S, HandlerSpec, self_env
from swim.agent.health_checks import CheckSpec
from swim.agent.output import Record
from swim.agent.tags import TagError, UserEvent, check_key, encode_user_event
from swim.core.config import Config
from swim.core.core import ProtocolError
from swim.core.events import Event, JoinCompleted, NameConflict, QueryReceived
from swim.core.messages import Address, MemberState, MemberStatus
from swim.runtime import EventOverflow
from swim.runtime.health import HealthStatus

if TYPE_CHECKING:
    from swim.agent.handler_runner import HandlerRunner
    from swim.runtime import KeyReport, QueryStream
    from swim.runtime.checks import Check, HealthCheck
    from swim.runtime.health import HealthChanged

#: Upper bound on how long a graceful leave waits for its news to be gossiped.
LEAVE_TIMEOUT_S = 10.0
#: Most seeds one ``join`` request may name.
MAX_JOIN_SEEDS = 64
#: How much longer than the stream timeout a ``join`` waits for its exchanges.
JOIN_MARGIN_S = 5.0


@attrs.frozen(kw_only=True)
class AgentOptions:
    """Everything `swim agent` is started with."""

    name: str
    bind: Address
    advertise: Address | None = None
    join: tuple[Address, ...] = ()
    profile: str = "lan"
    #: ``--mode``: "swim" (SWIM + Lifeguard) or "stable" (stable views on the profile).
    mode: str = "swim"
    tags: Mapping[str, str] = attrs.field(factory=dict)
    rpc: Address = rpc.DEFAULT_RPC
    metrics: Address | None = None
    log_json: bool = False
    #: The token every RPC request must carry (``--rpc-auth``); None: a random one. Either
    #: way it is written to this user's token file (`swim.agent.rpc_token`) for clients.
    rpc_auth: str | None = None
    #: False serves RPC to anyone who can connect, without a token (for in-process tests;
    #: there is no command-line switch for it).
    rpc_auth_required: bool = True
    #: The base64 key of ``--encrypt`` (never printed), or None.
    encrypt_key: str | None = attrs.field(default=None, repr=False)
    #: The keyring file of ``--keyring-file`` (read at start), or None.
    keyring_file: str | None = None
    #: The cluster label of ``--label``.
    label: str = ""
    #: ``--accept-plaintext`` / ``--send-plaintext``: the rolling-upgrade switches.
    accept_plaintext: bool = False
    send_plaintext: bool = False
    #: ``--query-response NAME=TEXT``: the answer this agent gives to queries NAME.
    query_responses: Mapping[str, str] = attrs.field(factory=dict)
    #: ``--event-handler [EVENTS=]SCRIPT``: scripts run for events (`swim.agent.handlers`).
    event_handlers: tuple[HandlerSpec, ...] = ()
    #: ``--event-handler-timeout S``: a handler still running after this long is killed.
    event_handler_timeout_s: float = DEFAULT_TIMEOUT_S
    #: ``--check ...``: health checks (`swim.agent.health_checks`), every one named.
    checks: tuple[CheckSpec, ...] = ()

    @property
    def encrypted(self) -> bool:
        return self.encrypt_key is not None or self.keyring_file is not None


class AgentNode(Protocol):
    """What the agent uses of `swim.Node` (tests pass a fake)."""

    @property
    def name(self) -> str: ...

    @property
    def addr(self) -> Address: ...

    def members(self) -> list[MemberState]: ...

    def events(self) -> AsyncIterator[Event]: ...

    async def leave(self, timeout_s: float) -> object: ...

    def update_metadata(self, meta: bytes) -> None: ...

    def update_tags(self, tags: Mapping[str, str]) -> None: ...

    def start_health_check(
        self,
        check: Check,
        *,
        interval_s: float,
        timeout_s: float,
        name: str | None = None,
        in_thread: bool | None = None,
    ) -> HealthCheck: ...

    def health_events(self) -> AsyncIterator[HealthChanged]: ...

    def broadcast(self, payload: bytes) -> int: ...

    def stats(self) -> object: ...

    def local_health(self) -> int: ...

    def force_leave(self, name: str) -> bool: ...

    def estimate_rtt(self, a: str, b: str | None = None) -> float | None: ...

    def query(
        self,
        name: str,
        payload: bytes = b"",
        *,
        filter_nodes: Sequence[str] = (),
        filter_tags: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        want_ack: bool = False,
        relay_factor: int = 0,
        reask: bool = False,
    ) -> QueryStream: ...

    def respond(self, origin: str, query_id: int, payload: bytes = b"") -> None: ...

    async def install_key(self, key: str, *, timeout_s: float | None = None) -> KeyReport: ...

    async def use_key(self, key: str, *, timeout_s: float | None = None) -> KeyReport: ...

    async def remove_key(self, key: str, *, timeout_s: float | None = None) -> KeyReport: ...

    async def list_keys(self, *, timeout_s: float | None = None) -> KeyReport: ...


class StartupError(Exception):
    """The agent cannot start (address in use, tags too big, ...); the message says why."""


#: A function that starts joining the running node through seeds.
Joiner = Callable[[Sequence[Address]], object]


@attrs.define(eq=False)
class _JoinWait:
    """A ``join`` request waiting for the exchange with each of its seeds to end."""

    seeds: set[Address]
    results: dict[Address, JoinCompleted] = attrs.field(factory=dict)
    done: trio.Event = attrs.field(factory=trio.Event)


class Agent:
    """The running agent: pumps node events to the console, monitors and handlers, and
    answers RPC.

    `joiner` starts a join of the running node (None: the ``join`` command is refused)."""

    def __init__(
        self,
        options: AgentOptions,
        node: AgentNode,
        *,
        out: TextIO,
        err: TextIO,
        joiner: Joiner | None = None,
    ) -> None:
        self.options = options
        self._node = node
        self._joiner = joiner
        self._join_waits: list[_JoinWait] = []
        self._config = Config.profile(options.profile)
        self._out = out
        self._err = err
        self._tags = dict(options.tags)
        self._monitors: list[trio.MemorySendChannel[Record]] = []
        self._receivers: dict[int, trio.MemorySendChannel[Record]] = {}
        self._leaving = False
        self._left = trio.Event()
        self._exit = trio.Event()
        #: The exit code `run` returns (1 once a seed refused our name).
        self._exit_code = 0
        # Subscribe at once, before any checkpoint, so no early event (a join) is missed.
        self._events = node.events()
        self._quiet = False
        self._token_file: pathlib.Path | None = None
        self._handlers: HandlerRunner | None = None
        #: The running health checks, by name (filled in by `_run_checks`).
        self._checks: dict[str, HealthCheck] = {}
        if options.event_handlers:
            from swim.agent.handler_runner import HandlerRunner

            self._handlers = HandlerRunner(
                options.event_handlers,
                timeout_s=options.event_handler_timeout_s,
                response_limit=self._config.query_response_size_limit,
                log=self.log,
                respond=node.respond,
                self_env=self._self_env,
            )

    def _self_env(self) -> dict[str, str]:
        """This member's variables for handlers and script checks (tags as they are now)."""
        return self_env(self._node.name, self._tags, output.format_addr(self.options.rpc))

    # ------------------------------------------------------------------ console

    def log(self, message: str) -> None:
        """One line on the agent's log (stderr)."""
        if self.options.log_json:
            line = output.json_line({"ts": time.time(), "log": message})
        else:
            line = f"{time.strftime('%H:%M:%S')} [{self.options.name}] {message}"
        self._write(self._err, line)

    def _print(self, record: Record) -> None:
        line = output.json_line(record) if self.options.log_json else output.human_line(record)
        self._write(self._out, line)

    def _write(self, stream: TextIO, line: str) -> None:
        # A closed pipe (``swim agent | head``) must not take the member down: the
        # agent keeps running, silently.
        if self._quiet:
            return
        try:
            print(line, file=stream, flush=True)
        except (BrokenPipeError, ValueError, OSError):
            self._quiet = True

    # ------------------------------------------------------------------ running

    async def run(
        self,
        listeners: list[trio.SocketListener],
        metrics_listeners: list[trio.SocketListener] | None = None,
    ) -> int:
        """Serve until asked to exit (leave by RPC, or a signal). Returns the exit code."""
        with (
            self._rpc_token() as token,
            trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
        ):
            async with trio.open_nursery() as nursery:
                await nursery.start(rpc.RpcServer(self, token=token).serve, listeners)
                if metrics_listeners:
                    from swim.agent.metrics_http import metrics_registry, serve_metrics

                    await nursery.start(
                        serve_metrics, metrics_registry(self._node), metrics_listeners
                    )
                if self._handlers is not None:
                    await nursery.start(self._handlers.run)
                if self.options.checks:
                    await nursery.start(self._run_checks)
                nursery.start_soon(self._pump_events)
                nursery.start_soon(self._watch_signals, signals, nursery)
                self.log(
                    f"running: gossip on {output.format_addr(self._node.addr)}, "
                    f"rpc on {output.format_addr(self.options.rpc)}"
                    + (f" (token in {self._token_file}), " if self._token_file else ", ")
                    + f"profile {self.options.profile}, "
                    + records.security_line(self.options)
                    + (
                        f", metrics on http://{output.format_addr(self.options.metrics)}/metrics"
                        if self.options.metrics and metrics_listeners
                        else ""
                    )
                    + (f", tags {output.format_tags(self._tags)}" if self._tags else "")
                    + _counted(len(self.options.event_handlers), "event handler")
                    + _counted(len(self.options.checks), "health check")
                )
                await self._exit.wait()
                nursery.cancel_scope.cancel()
        self.log("stopped")
        return self._exit_code

    @contextlib.contextmanager
    def _rpc_token(self) -> Iterator[str | None]:
        """The token RPC requests must carry (None: none needed), kept in this user's
        token file while the agent runs."""
        token = None
        if self.options.rpc_auth_required:
            token = self.options.rpc_auth or rpc_token.new_token()
            try:
                self._token_file = rpc_token.write_token(self.options.rpc, token)
            except rpc_token.TokenFileError as exc:
                if self.options.rpc_auth is None:
                    raise StartupError(f"{exc} (or pass --rpc-auth TOKEN)") from None
                self.log(f"warning: {exc}; clients must pass --rpc-auth")
        try:
            yield token
        finally:
            if token is not None and self._token_file is not None:
                rpc_token.remove_token(self.options.rpc, token)
                self._token_file = None

    async def _watch_signals(
        self, signals: AsyncIterator[int], nursery: trio.Nursery
    ) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if self._leaving:
                self.log(f"{name} again: exiting without waiting for the leave")
                self._exit.set()
                return
            self.log(f"{name}: leaving the cluster")
            nursery.start_soon(self._leave_then_exit)

    async def _leave_then_exit(self) -> None:
        try:
            await self.leave()
        finally:
            self._exit.set()

    async def leave(self) -> None:
        """Leave gracefully (once); later calls wait for the first to finish."""
        if self._leaving:
            await self._left.wait()
            return
        self._leaving = True
        try:
            complete = await self._node.leave(LEAVE_TIMEOUT_S)
            if complete is False:
                self.log(
                    f"left the cluster (the news was not sent its full count within "
                    f"{LEAVE_TIMEOUT_S:g} s)"
                )
            else:
                self.log("left the cluster")
        finally:
            self._left.set()

    async def _run_checks(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the health checks on the node, then log each change of this member's
        health (subscribed first, so the first result is logged too)."""
        from swim.agent.check_runs import make_check

        node = self._node
        changes = node.health_events()
        for spec in self.options.checks:
            assert spec.name is not None  # settings.agent_options names every check
            self._checks[spec.name] = node.start_health_check(
                make_check(spec, self._self_env), interval_s=spec.interval_s,
                timeout_s=spec.timeout_s, name=spec.name,
            )
        task_status.started()
        while True:
            try:
                async for change in changes:
                    if change.name == node.name:
                        was = "unknown" if change.old is None else change.old.value
                        self.log(f"health {was} -> {change.new.value}"
                                 + (f": {change.note}" if change.note else ""))
            except EventOverflow as exc:
                self.log(f"health events: {exc}; resubscribing")
                changes = node.health_events()
                continue
            return

    async def _pump_events(self) -> None:
        while True:
            try:
                async for event in self._events:
                    self._on_event(event)
            except EventOverflow as exc:
                # The node cut our subscription off: we fell behind. Say so and
                # subscribe again; the member table is still right.
                self.log(f"event stream: {exc}; resubscribing")
                self._events = self._node.events()
                continue
            return

    def _on_event(self, event: Any) -> None:
        if isinstance(event, JoinCompleted):
            self.log(output.join_line(event))
            self._join_completed(event)
            if event.refused:
                # Another running member holds our name: joining again cannot help.
                self.log(f"error: cannot join: {event.refused}; pick another --name")
                self._exit_code = 1
                self._exit.set()
            return
        if isinstance(event, NameConflict):
            self.log(
                f"warning: another process at {output.format_addr(event.addr)} claims "
                f"this member's name {event.name!r}; it is refused, but check your agents"
            )
            return
        answered = False
        if isinstance(event, QueryReceived):
            answered = self._answer_query(event)
        if self._handlers is not None:
            self._handlers.dispatch(event, answered=answered)
        record = output.event_record(event, incarnation_of=self._incarnation_of)
        if record is None:
            return
        self._print(record)
        self._fan_out(record)

    def _answer_query(self, event: QueryReceived) -> bool:
        """Answer with the ``--query-response`` for its name; whether there is one."""
        text = self.options.query_responses.get(event.name)
        if text is None:
            return False
        try:
            self._node.respond(event.origin, event.id, text.encode("utf-8"))
        except ProtocolError as exc:
            self.log(f"cannot answer query {event.name!r} from {event.origin}: {exc}")
        return True

    def _join_completed(self, event: JoinCompleted) -> None:
        for wait in list(self._join_waits):
            if event.seed in wait.seeds and event.seed not in wait.results:
                wait.results[event.seed] = event
                if len(wait.results) == len(wait.seeds):
                    wait.done.set()

    def _incarnation_of(self, name: str) -> int | None:
        if name == self._node.name:
            return self._self_incarnation()
        for member in self._node.members():
            if member.name == name:
                return int(member.incarnation)
        return None

    def _self_incarnation(self) -> int | None:
        for member in self._node.members():
            if member.name == self._node.name:
                return int(member.incarnation)
        return None

    def _fan_out(self, record: Record) -> None:
        for channel in list(self._monitors):
            try:
                channel.send_nowait(record)
            except trio.WouldBlock:
                # This monitor is too slow: cut it off rather than hold up the agent.
                self._monitors.remove(channel)
                channel.close()
            except trio.ClosedResourceError:
                self._monitors.remove(channel)

    # ------------------------------------------------------------------ rpc.Dispatcher

    def subscribe(self) -> trio.MemoryReceiveChannel[Record]:
        send, receive = trio.open_memory_channel[Record](rpc.MONITOR_BUFFER)
        self._monitors.append(send)
        self._receivers[id(receive)] = send
        return receive

    def unsubscribe(self, channel: trio.MemoryReceiveChannel[Record]) -> None:
        send = self._receivers.pop(id(channel), None)
        if send is not None and send in self._monitors:
            self._monitors.remove(send)
        if send is not None:
            send.close()
        channel.close()

    def responded(self, cmd: str) -> None:
        if cmd == "leave" and self._left.is_set():
            self._exit.set()

    async def handle(self, cmd: str, request: Mapping[str, Any]) -> Record:
        if cmd == "members":
            keep = _member_filter(request)
            members = [output.member_record(m) for m in self._node.members()]
            return {"members": [m for m in members if keep(m)]}
        if cmd == "info":
            return self._info()
        if cmd == "event":
            return self._event(request)
        if cmd == "tags":
            return self._update_tags(request)
        if cmd == "leave":
            await self.leave()
            return {"left": True}
        if cmd == "keys":
            return await self._keys(request)
        if cmd == "join":
            return await self._join(request)
        if cmd == "force-leave":
            return self._force_leave(request)
        if cmd == "rtt":
            return self._rtt(request)
        raise rpc.RequestError(
            f"unknown command {cmd!r} (try: event, force-leave, info, join, keys, leave, "
            "members, monitor, query, rtt, tags)"
        )

    def _rtt(self, request: Mapping[str, Any]) -> Record:
        """The RTT the Vivaldi coordinates predict between two members (Serf's rtt)."""
        a, b = request.get("a"), request.get("b")
        if not isinstance(a, str) or not a or not (b is None or (isinstance(b, str) and b)):
            raise rpc.RequestError('"rtt" needs "a" (a member name) and optionally "b"')
        b = b or self._node.name
        known = {m.name for m in self._node.members()}
        for name in (a, b):
            if name not in known:
                raise rpc.RequestError(f"no member named {name!r} is known to this agent")
        rtt = self._node.estimate_rtt(a, b)
        if rtt is None:
            missing = a if a != self._node.name else b
            raise rpc.RequestError(
                f"no coordinate for {missing!r} yet (it is learned from probe acks; try "
                "again in a few protocol periods)"
            )
        return {"a": a, "b": b, "rtt_s": rtt}

    async def _join(self, request: Mapping[str, Any]) -> Record:
        """Join through more seeds; answered once each exchange ended (or timed out)."""
        texts = request.get("addrs")
        if (
            not isinstance(texts, list) or not texts or len(texts) > MAX_JOIN_SEEDS
            or not all(isinstance(t, str) for t in texts)
        ):
            raise rpc.RequestError(
                f'"join" needs "addrs": a list of 1 to {MAX_JOIN_SEEDS} HOST:PORT strings'
            )
        if self._leaving:
            raise rpc.RequestError("the agent is leaving; it joins no more")
        if self._joiner is None:
            raise rpc.RequestError("this agent cannot join through more seeds")
        results: list[Record] = []
        seeds: dict[Address, list[Record]] = {}
        for text in dict.fromkeys(texts):
            result: Record = {"addr": text, "ok": False}
            results.append(result)
            try:
                host, port = addresses.parse_host_port(text)
                addr = (host, port) if addresses.is_ip(host) else (
                    await trio.to_thread.run_sync(addresses.resolve, host, port)
                )
            except addresses.AddressError as exc:
                result["error"] = str(exc)
                continue
            result["resolved"] = output.format_addr(addr)
            if addr == self._node.addr:
                result["error"] = "that is this agent's own address"
                continue
            seeds.setdefault(addr, []).append(result)
        if seeds:
            await self._join_through(seeds)
        joined = sum(1 for r in results if r["ok"])
        self.log(f"join: {joined} of {len(results)} seed{'s' if len(results) > 1 else ''} "
                 "answered")
        return {"joined": joined, "results": results}

    async def _join_through(self, seeds: Mapping[Address, list[Record]]) -> None:
        """Start one join round through `seeds` and fill in each one's result."""
        assert self._joiner is not None
        wait = _JoinWait(set(seeds))
        self._join_waits.append(wait)
        bound_s = self._config.tcp_timeout_s + JOIN_MARGIN_S
        try:
            self._joiner(list(seeds))
            with trio.move_on_after(bound_s):
                await wait.done.wait()
        finally:
            self._join_waits.remove(wait)
        for addr, entries in seeds.items():
            done = wait.results.get(addr)
            for result in entries:
                if done is None:
                    result["error"] = f"no answer within {bound_s:g} s"
                elif done.ok:
                    result.update(ok=True, members=done.members)
                else:
                    result["error"] = done.refused or "no answer"

    def _force_leave(self, request: Mapping[str, Any]) -> Record:
        name = request.get("node")
        if not isinstance(name, str) or not name:
            raise rpc.RequestError('"force-leave" needs "node": a member name')
        if name == self._node.name:
            raise rpc.RequestError(f"{name!r} is this agent; use leave")
        try:
            forced = self._node.force_leave(name)
        except ProtocolError as exc:
            raise rpc.RequestError(f"cannot force {name!r} to leave: {exc}") from None
        if not forced:
            state = next((m for m in self._node.members() if m.name == name), None)
            if state is None:
                raise rpc.RequestError(f"no member named {name!r} is known to this agent")
            status = output.STATUS_NAMES[state.status]
            if state.status is MemberStatus.LEFT:
                raise rpc.RequestError(f"{name!r} has already left")
            raise rpc.RequestError(
                f"{name!r} is {status}, not failed: only a failed member can be forced "
                "to leave (a live one leaves by itself, with swim leave)"
            )
        self.log(f"force-leave: {name} is now left, across the cluster")
        return {"member": name, "forced": True}

    def query(self, request: Mapping[str, Any]) -> tuple[Record, rpc.RecordStream]:
        """Start the query a ``query`` request describes: the header of the answer and
        the records to stream (`records.QueryRecords`)."""
        name = request.get("name")
        payload = request.get("payload", "")
        nodes = request.get("nodes", [])
        tags = request.get("tags", {})
        timeout_s = request.get("timeout_s")
        want_ack = request.get("ack", False)
        relay_factor = request.get("relay_factor", 0)
        reask = request.get("reask", False)
        if not isinstance(name, str) or not name or not isinstance(payload, str):
            raise rpc.RequestError('"query" needs a "name" and a "payload" string')
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise rpc.RequestError('"nodes" must be a list of member names')
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            raise rpc.RequestError('"tags" must be an object of shell-style patterns')
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float)
        ):
            raise rpc.RequestError('"timeout_s" must be a number of seconds')
        if not isinstance(want_ack, bool):
            raise rpc.RequestError('"ack" must be true or false')
        if isinstance(relay_factor, bool) or not isinstance(relay_factor, int):
            raise rpc.RequestError('"relay_factor" must be an integer')
        if not isinstance(reask, bool):
            raise rpc.RequestError('"reask" must be true or false')
        if self._leaving:
            raise rpc.RequestError("the agent is leaving; no more queries")
        try:
            stream = self._node.query(
                name, payload.encode("utf-8"), filter_nodes=nodes, filter_tags=tags,
                timeout_s=None if timeout_s is None else float(timeout_s),
                want_ack=want_ack, relay_factor=relay_factor, reask=reask,
            )
        except ProtocolError as exc:
            raise rpc.RequestError(f"cannot send query: {exc}") from None
        header: Record = {
            "id": stream.id,
            "name": name,
            "timeout_s": round(stream.deadline - trio.current_time(), 3),
        }
        return header, records.QueryRecords(stream)

    async def _keys(self, request: Mapping[str, Any]) -> Record:
        from swim.security import KeyringError

        op = request.get("op")
        key = request.get("key")
        timeout_s = request.get("timeout_s")
        if op not in ("install", "use", "remove", "list"):
            raise rpc.RequestError('"keys" needs "op": one of install, use, remove, list')
        if op != "list" and not isinstance(key, str):
            raise rpc.RequestError(f'"keys" with "op": "{op}" needs a "key" (base64)')
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s <= 3600
        ):
            raise rpc.RequestError('"timeout_s" must be a number of seconds in (0, 3600]')
        timeout = None if timeout_s is None else float(timeout_s)
        node = self._node
        began = trio.current_time()
        try:
            if op == "list":
                report = await node.list_keys(timeout_s=timeout)
            else:
                assert isinstance(key, str)
                command = {"install": node.install_key, "use": node.use_key,
                           "remove": node.remove_key}[op]
                report = await command(key, timeout_s=timeout)
        except (KeyringError, ProtocolError) as exc:
            raise rpc.RequestError(f"cannot run keys {op}: {exc}") from None
        elapsed = trio.current_time() - began
        self.log(f"keys {op}: {report.summary} in {elapsed:.2f} s")
        return {**records.key_report_record(report), "elapsed_s": round(elapsed, 3)}

    def _info(self) -> Record:
        from swim.agent.health_checks import check_record

        stats = self._node.stats()
        counts: dict[str, int] = {}
        for member in self._node.members():
            status = output.STATUS_NAMES[member.status]
            counts[status] = counts.get(status, 0) + 1
        return {
            "name": self._node.name,
            "addr": output.format_addr(self._node.addr),
            "rpc": output.format_addr(self.options.rpc),
            "profile": self.options.profile,
            "tags": dict(self._tags),
            "incarnation": self._self_incarnation(),
            "health": self._node.local_health(),
            "members": counts,
            "leaving": self._leaving,
            "security": records.security_record(self.options, stats),
            "handlers": records.handlers_record(self.options, self._handlers),
            "checks": [check_record(spec, self._checks.get(spec.name or ""))
                       for spec in self.options.checks],
            "stats": records.stats_record(stats),
        }

    def _event(self, request: Mapping[str, Any]) -> Record:
        name = request.get("name")
        payload = request.get("payload", "")
        if not isinstance(name, str) or not isinstance(payload, str):
            raise rpc.RequestError('"event" needs "name" and "payload" strings')
        if self._leaving:
            raise rpc.RequestError("the agent is leaving; no more events")
        try:
            event_id = self._node.broadcast(encode_user_event(UserEvent(name, payload.encode())))
        except (TagError, ProtocolError) as exc:
            raise rpc.RequestError(f"cannot send event: {exc}") from None
        return {"id": event_id}

    def _update_tags(self, request: Mapping[str, Any]) -> Record:
        updates = request.get("set", {})
        deletes = request.get("delete", [])
        if not isinstance(updates, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in updates.items()
        ):
            raise rpc.RequestError('"set" must be an object of string values')
        if not isinstance(deletes, list) or not all(isinstance(k, str) for k in deletes):
            raise rpc.RequestError('"delete" must be a list of strings')
        if not updates and not deletes:
            return {"tags": dict(self._tags)}
        if self._leaving:
            raise rpc.RequestError("the agent is leaving; tags can no longer change")
        tags = dict(self._tags)
        for key in deletes:
            tags.pop(key, None)
        try:
            for key, value in updates.items():
                check_key(key)
                tags[key] = value
            # update_tags keeps the health tags this member's checks publish.
            self._node.update_tags(tags)
        except (TagError, ProtocolError) as exc:
            raise rpc.RequestError(str(exc)) from None
        self._tags = tags
        self.log(f"tags now {output.format_tags(tags) or '(none)'}")
        return {"tags": dict(tags)}


def _counted(count: int, what: str) -> str:
    """``, 2 health checks`` (nothing for none)."""
    return f", {count} {what}" + ("s" if count > 1 else "") if count else ""


def _member_filter(request: Mapping[str, Any]) -> Callable[[Record], bool]:
    """The ``members`` request's filters as a predicate on member records."""
    status = request.get("status", [])
    name = request.get("name")
    tags = request.get("tags", {})
    health = request.get("health", [])
    known = set(output.STATUS_NAMES.values())
    if not isinstance(status, list) or not all(s in known for s in status):
        raise rpc.RequestError(f'"status" must be a list of {", ".join(sorted(known))}')
    healths = [h.value for h in HealthStatus]
    if not isinstance(health, list) or not all(h in healths for h in health):
        raise rpc.RequestError(f'"health" must be a list of {", ".join(healths)}')
    if name is not None and not isinstance(name, str):
        raise rpc.RequestError('"name" must be a shell-style pattern')
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise rpc.RequestError('"tags" must be an object of shell-style patterns')
    return output.member_filter(status=status, name=name, tags=tags, health=health)
