"""A cluster of real `swim agent` processes on loopback, for the demo, tests and benchmarks.

`LocalCluster` picks free ports, starts agents as subprocesses (their output goes to log
files in a working directory), talks to them over RPC, kills and restarts them, and stops
every process it started when its `async with` block ends, whatever the reason.
"""

from __future__ import annotations

import math
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

import attrs
import trio

from swim.agent import rpc
from swim.agent.output import Record, format_addr
from swim.core.messages import Address

#: How long an agent may take to start answering RPC.
START_TIMEOUT_S = 20.0
#: How long `stop` waits for an agent to leave and exit before killing it.
STOP_TIMEOUT_S = 15.0


class ClusterError(Exception):
    """An agent did not start, or a wait ran out of time."""


def agent_command() -> list[str]:
    """The command that runs `swim` with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "swim.cli"]


def free_port(host: str = "127.0.0.1", avoid: set[int] | None = None) -> int:
    """A port free for both TCP and UDP on `host` right now (bounded tries)."""
    avoid = avoid or set()
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if port in avoid:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise ClusterError(f"no free port found on {host}")


@attrs.define(eq=False)
class AgentProcess:
    """One agent started by a `LocalCluster`."""

    name: str
    bind: Address
    rpc: Address
    log_path: pathlib.Path
    args: list[str]
    process: trio.Process | None = None
    #: Wall-clock time (time.time()) when the process was started.
    started_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        """The end of the agent's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    """Agents on loopback. Use as ``async with LocalCluster.open(workdir) as cluster``."""

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        profile: str = "local",
        host: str = "127.0.0.1",
        log_json: bool = True,
    ) -> None:
        self.workdir = workdir
        self.profile = profile
        self.host = host
        self.log_json = log_json
        self.agents: dict[str, AgentProcess] = {}
        self._ports: set[int] = set()

    @classmethod
    @asynccontextmanager
    async def open(
        cls, workdir: pathlib.Path, *, profile: str = "local", log_json: bool = True
    ) -> AsyncIterator[LocalCluster]:
        """A cluster whose processes are all stopped when the block ends."""
        workdir.mkdir(parents=True, exist_ok=True)
        cluster = cls(workdir, profile=profile, log_json=log_json)
        try:
            yield cluster
        finally:
            with trio.CancelScope(shield=True):
                await cluster.stop_all()

    def _port(self) -> int:
        port = free_port(self.host, self._ports)
        self._ports.add(port)
        return port

    def define(
        self, name: str, *, tags: dict[str, str] | None = None, extra_args: Sequence[str] = ()
    ) -> AgentProcess:
        """Reserve ports for an agent named `name` (not started yet); `extra_args` are
        added to its `swim agent` command line."""
        bind = (self.host, self._port())
        rpc_addr = (self.host, self._port())
        args = [
            "agent", "--name", name, "--bind", format_addr(bind), "--rpc", format_addr(rpc_addr),
            "--profile", self.profile,
        ]
        for key, value in sorted((tags or {}).items()):
            args += ["--tag", f"{key}={value}"]
        if self.log_json:
            args.append("--log-json")
        args += extra_args
        agent = AgentProcess(name, bind, rpc_addr, self.workdir / f"{name}.log", args)
        self.agents[name] = agent
        return agent

    async def start(
        self, agent: AgentProcess, *, join: Sequence[Address] = (), wait: bool = True
    ) -> AgentProcess:
        """Start (or restart) `agent`, joining through `join`; wait until it answers RPC."""
        if agent.running:
            raise ClusterError(f"{agent.name} is already running")
        args = list(agent.args)
        for seed in join:
            args += ["--join", format_addr(seed)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with agent.log_path.open("ab") as log:
            agent.process = await trio.lowlevel.open_process(
                [*agent_command(), *args],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own session: a Ctrl-C at the terminal reaches only the parent, which
                # then stops the agents itself (SIGTERM: a graceful leave).
                start_new_session=True,
            )
        agent.started_at = time.time()
        if wait:
            await self.wait_ready(agent)
        return agent

    async def wait_ready(self, agent: AgentProcess, timeout_s: float = START_TIMEOUT_S) -> Record:
        """Poll `info` until the agent answers; raise `ClusterError` if it exits first."""
        deadline = trio.current_time() + timeout_s
        while trio.current_time() < deadline:
            if not agent.running:
                raise ClusterError(
                    f"agent {agent.name} exited with {agent.process and agent.process.returncode}"
                    f":\n{agent.log_tail()}"
                )
            try:
                return await rpc.call(agent.rpc, {"cmd": "info"}, timeout_s=2.0)
            except rpc.RpcError:
                await trio.sleep(0.05)
        raise ClusterError(f"agent {agent.name} did not answer within {timeout_s:g} s")

    async def start_many(
        self,
        count: int,
        *,
        prefix: str = "n",
        tags: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> list[AgentProcess]:
        """Start `count` agents: the first, then the rest at once, all joining the first
        (`extra_args` go on every one's command line)."""
        agents = [
            self.define(f"{prefix}{i + 1}", tags=tags, extra_args=extra_args)
            for i in range(count)
        ]
        await self.start(agents[0])
        async with trio.open_nursery() as nursery:
            for agent in agents[1:]:
                nursery.start_soon(self._start_joining, agent, agents[0].bind)
        return agents

    async def _start_joining(self, agent: AgentProcess, seed: Address) -> None:
        await self.start(agent, join=[seed])

    async def members(self, agent: AgentProcess) -> list[Record]:
        """The members `agent` knows, as `swim members --json` prints them."""
        answer = await rpc.call(agent.rpc, {"cmd": "members"}, timeout_s=5.0)
        members: list[Record] = answer["members"]
        return members

    async def statuses(self, agent: AgentProcess) -> dict[str, str]:
        """{member name: status} in `agent`'s view."""
        return {m["name"]: m["status"] for m in await self.members(agent)}

    async def wait_until(
        self,
        agent: AgentProcess,
        expected: dict[str, str],
        *,
        timeout_s: float,
        poll_s: float = 0.1,
    ) -> float:
        """Poll until `agent` sees each named member with the given status (``"absent"``
        = not listed). Returns the wall time it happened; raises `ClusterError` on timeout.
        """
        deadline = trio.current_time() + timeout_s
        seen: dict[str, str] = {}
        while trio.current_time() < deadline:
            try:
                seen = await self.statuses(agent)
            except rpc.RpcError:
                seen = {}
            if all(seen.get(name, "absent") == want for name, want in expected.items()):
                return time.time()
            await trio.sleep(poll_s)
        raise ClusterError(
            f"{agent.name} did not see {expected} within {timeout_s:g} s; it sees {seen}"
        )

    async def wait_converged(self, timeout_s: float, poll_s: float = 0.2) -> float:
        """Poll until every running agent sees every running agent alive."""
        running = [a for a in self.agents.values() if a.running]
        want = {a.name: "alive" for a in running}
        deadline = trio.current_time() + timeout_s
        pending = list(running)
        while pending and trio.current_time() < deadline:
            still = []
            for agent in pending:
                try:
                    seen = await self.statuses(agent)
                except rpc.RpcError:
                    seen = {}
                if any(seen.get(n) != s for n, s in want.items()):
                    still.append(agent)
            pending = still
            if pending:
                await trio.sleep(poll_s)
        if pending:
            raise ClusterError(
                f"{len(pending)} agents did not see all {len(running)} alive within "
                f"{timeout_s:g} s (e.g. {pending[0].name})"
            )
        return time.time()

    def kill(self, agent: AgentProcess, sig: int = signal.SIGKILL) -> float:
        """Send `sig` to the agent; returns the wall time it was sent."""
        if agent.process is None or agent.process.returncode is not None:
            raise ClusterError(f"{agent.name} is not running")
        at = time.time()
        agent.process.send_signal(sig)
        return at

    async def wait_exit(self, agent: AgentProcess, timeout_s: float) -> int | None:
        """Wait for the agent's process to exit; its code, or None on timeout."""
        if agent.process is None:
            return None
        with trio.move_on_after(timeout_s):
            return await agent.process.wait()
        return None

    async def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every running agent (graceful leave), SIGKILL any still up after
        `timeout_s`, and reap them all."""
        running = [a for a in self.agents.values() if a.running]
        for agent in running:
            with suppress(ClusterError, ProcessLookupError):
                self.kill(agent, signal.SIGTERM)
        deadline = trio.current_time() + timeout_s
        for agent in running:
            assert agent.process is not None
            remaining = max(0.0, deadline - trio.current_time())
            with trio.move_on_after(remaining):
                await agent.process.wait()
            if agent.process.returncode is None:
                agent.process.kill()
                with trio.move_on_after(5.0):
                    await agent.process.wait()

    def kill_all_now(self) -> None:
        """SIGKILL every agent still running (synchronous; for emergencies)."""
        for agent in self.agents.values():
            if agent.running and agent.process is not None:
                agent.process.kill()


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-quantile (0..1) of `values` by nearest rank; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


class Observers:
    """Monitor streams on several agents, collecting (observer, record) pairs."""

    def __init__(self) -> None:
        #: (observer name, record) for every event any watched agent reported.
        self.records: list[tuple[str, Record]] = []

    async def watch(
        self,
        agent: AgentProcess,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Collect `agent`'s events; started once the agent acknowledged the monitor."""
        try:
            async with rpc.connect(agent.rpc) as conn:
                await conn.monitor()
                task_status.started()
                async for record in conn.records():
                    self.records.append((agent.name, record))
        except rpc.RpcError:
            pass  # the agent went away; its monitor ends

    def first(self, kind: str, member: str, after: float, **fields: object) -> dict[str, float]:
        """{observer: ts of its first `kind` record about `member` at or after `after`},
        counting only records whose other `fields` match."""
        first: dict[str, float] = {}
        for observer, record in self.records:
            if record.get("event") != kind or record.get("member") != member:
                continue
            if any(record.get(k) != v for k, v in fields.items()):
                continue
            ts = float(record["ts"])
            if ts >= after and observer not in first:
                first[observer] = ts
        return first

    async def wait_for(
        self, kind: str, member: str, after: float, observers: set[str], timeout_s: float,
        *, strict: bool = True, **fields: object,
    ) -> dict[str, float]:
        """`first(...)` once every one of `observers` has reported, or at the timeout.

        At the timeout, raises `ClusterError` naming the missing observers if `strict`,
        else returns what was seen.
        """
        with trio.move_on_after(timeout_s):
            while True:
                seen = self.first(kind, member, after, **fields)
                if observers <= seen.keys():
                    return seen
                await trio.sleep(0.05)
        seen = self.first(kind, member, after, **fields)
        if strict:
            missing = ", ".join(sorted(observers - seen.keys()))
            raise ClusterError(f"no {kind!r} about {member} from {missing} within {timeout_s:g} s")
        return seen
