"""RPC hardening: the attacks of issue 8 against the agent's control protocol.

Before: any local user (tried as uid 65534) could run ``info``, ``tags``, ``event`` and
``leave``; one 60,001-byte line of ``[`` killed the agent (a RecursionError escaped the
connection handler); 64 idle connections locked the CLI out. Here: in process (an `Agent`
over the fake node of tests/test_cli_rpc.py, authentication on) and as real `swim agent`
processes (`swim.agent.cluster.LocalCluster`), with token files in a per-test
XDG_RUNTIME_DIR. Every wait is bounded; assertions are about answers, not durations.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio

from swim.agent import rpc, rpc_token
from swim.agent.agent import Agent, AgentOptions
from swim.agent.cluster import LocalCluster
from swim.agent.output import format_addr
from swim.agent.tags import tags_of
from tests.test_cli_agents import swim
from tests.test_cli_rpc import FakeNode

WAIT_S = 5.0
BRACKETS = b"[" * 60_001 + b"\n"


@pytest.fixture
def runtime_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """Token files go to a directory of this test (subprocesses inherit it too)."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    monkeypatch.delenv(rpc_token.TOKEN_ENV, raising=False)
    return xdg / "swim"


@attrs.define(eq=False)
class Guarded:
    agent: Agent
    node: FakeNode
    addr: tuple[str, int]
    err: io.StringIO
    exit_code: list[int]


@pytest.fixture
async def guarded(nursery: trio.Nursery, runtime_dir: pathlib.Path) -> Guarded:
    """An in-process agent with RPC authentication on (the default), answering."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    node = FakeNode()
    options = AgentOptions(name="n1", bind=node.addr, rpc=("127.0.0.1", port), log_json=True)
    err = io.StringIO()
    agent = Agent(options, node, out=io.StringIO(), err=err)
    state = Guarded(agent, node, ("127.0.0.1", port), err, [])

    async def run() -> None:
        state.exit_code.append(await agent.run(listeners))

    nursery.start_soon(run)
    with trio.fail_after(WAIT_S):
        while True:
            try:
                await rpc.call(state.addr, {"cmd": "info"}, timeout_s=1.0)
                break
            except rpc.RpcError:
                await trio.sleep(0.01)
    return state


async def exchange(
    addr: tuple[str, int], data: bytes, *, source: str = "127.0.0.1"
) -> list[dict[str, Any]]:
    """Send raw bytes, half-close, read every answer line until the agent closes."""
    stream = await trio.open_tcp_stream(*addr, local_address=source)
    async with stream:
        await stream.send_all(data)
        await stream.send_eof()
        return await answers_until_closed(stream)


async def answers_until_closed(
    stream: trio.SocketStream, timeout_s: float = WAIT_S
) -> list[dict[str, Any]]:
    reader = rpc.LineReader(stream, rpc.MAX_RESPONSE_BYTES)
    answers = []
    with trio.fail_after(timeout_s):
        try:
            while (line := await reader.read_line()) is not None:
                answers.append(json.loads(line))
        except trio.BrokenResourceError:
            pass  # a reset after the last answer: also a close
    return answers


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode() + b"\n"


def token_of(state: Guarded) -> str:
    token = rpc_token.read_token(state.addr)
    assert token is not None
    return token


# ================================================================================ auth


async def test_the_agents_user_just_works_through_a_private_token_file(
    guarded: Guarded, runtime_dir: pathlib.Path
) -> None:
    path = rpc_token.token_path(guarded.addr)
    assert path.parent == runtime_dir
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token_of(guarded)) >= 40  # 256 random bits
    assert (await rpc.call(guarded.addr, {"cmd": "info"}))["name"] == "n1"
    assert (await rpc.call(guarded.addr, {"cmd": "leave"}))["left"] is True
    with trio.fail_after(WAIT_S):
        while not guarded.exit_code:
            await trio.sleep(0.01)
    assert not path.exists()  # removed when the agent exits


@pytest.mark.parametrize(
    "auth",
    [pytest.param({}, id="missing"), {"auth": "wrong"}, {"auth": ""}, {"auth": 5}, {"auth": None}],
)
@pytest.mark.parametrize(
    "request_",
    [
        {"cmd": "info"},
        {"cmd": "members"},
        {"cmd": "tags", "set": {"owned": "yes"}},
        {"cmd": "event", "name": "deploy", "payload": "evil"},
        {"cmd": "leave"},
        {"cmd": "monitor"},
    ],
    ids=lambda r: r["cmd"],
)
async def test_a_request_without_the_token_is_refused_and_does_nothing(
    guarded: Guarded, request_: dict[str, Any], auth: dict[str, Any]
) -> None:
    # A second, valid-looking line on the same connection is never read.
    answers = await exchange(guarded.addr, line({**request_, **auth}) + line({"cmd": "info"}))
    assert answers == [
        {
            "ok": False,
            "error": "permission denied: missing or wrong RPC token",
            "code": "permission_denied",
        }
    ]
    assert guarded.node.broadcasts == []
    assert tags_of(guarded.node.meta) == {}
    assert not guarded.node.left
    assert (await rpc.call(guarded.addr, {"cmd": "info"}))["ok"]  # still serving


async def test_every_request_on_a_connection_carries_the_token(guarded: Guarded) -> None:
    token = token_of(guarded)
    answers = await exchange(
        guarded.addr,
        line({"cmd": "info", "auth": token}) + line({"cmd": "info"}) + line({"cmd": "info"}),
    )
    assert [a["ok"] for a in answers] == [True, False]
    assert answers[1]["code"] == "permission_denied"


async def test_clients_say_clearly_why_they_were_refused(
    guarded: Guarded, runtime_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(rpc.PermissionDenied, match="refused the RPC token"):
        await rpc.call(guarded.addr, {"cmd": "info"}, auth="wrong")
    token = token_of(guarded)
    # Another user looks in its own directory and finds no token there...
    elsewhere = runtime_dir.parent.parent / "other-user"
    elsewhere.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(elsewhere))
    assert rpc_token.read_token(guarded.addr) is None
    with pytest.raises(rpc.PermissionDenied, match=r"no RPC token .* --rpc-auth TOKEN"):
        await rpc.call(guarded.addr, {"cmd": "info"})
    # ... unless given the token, by argument or by SWIM_RPC_AUTH.
    assert (await rpc.call(guarded.addr, {"cmd": "info"}, auth=token))["ok"]
    monkeypatch.setenv(rpc_token.TOKEN_ENV, token)
    assert (await rpc.call(guarded.addr, {"cmd": "info"}))["ok"]


def test_tokens_are_compared_exactly() -> None:
    assert rpc_token.tokens_match("s3cret", "s3cret")
    for given in ("s3cre", "s3cret ", "S3CRET", "", None, 5, b"s3cret"):
        assert not rpc_token.tokens_match(given, "s3cret")


def test_a_token_directory_another_user_could_read_is_refused(
    runtime_dir: pathlib.Path,
) -> None:
    runtime_dir.mkdir(mode=0o755)
    runtime_dir.chmod(0o755)
    with pytest.raises(rpc_token.TokenFileError, match="not private to this user"):
        rpc_token.write_token(("127.0.0.1", 7373), "t")
    runtime_dir.chmod(0o700)
    path = rpc_token.write_token(("127.0.0.1", 7373), "t")
    assert rpc_token.read_token(("127.0.0.1", 7373)) == "t"
    rpc_token.remove_token(("127.0.0.1", 7373), "not-mine")
    assert path.exists()
    rpc_token.remove_token(("127.0.0.1", 7373), "t")
    assert not path.exists()


# ================================================================================ parsing


async def test_a_60001_byte_line_of_brackets_is_answered_and_the_agent_keeps_serving(
    guarded: Guarded,
) -> None:
    # Not authenticated yet: answered, then closed.
    assert await exchange(guarded.addr, BRACKETS) == [
        {"ok": False, "error": "malformed request: nested too deeply"}
    ]
    # Authenticated: answered, and the connection goes on.
    token = token_of(guarded)
    answers = await exchange(
        guarded.addr,
        line({"cmd": "info", "auth": token})
        + BRACKETS
        + b'{"cmd": "info", "x": '
        + b"[" * 60_000
        + b"\n"
        + line({"cmd": "members", "auth": token}),
    )
    assert [a["ok"] for a in answers] == [True, False, False, True]
    assert answers[1]["error"] == "malformed request: nested too deeply"
    assert (await rpc.call(guarded.addr, {"cmd": "info"}))["ok"]
    assert "nested too deeply" in guarded.err.getvalue()  # logged


async def test_any_exception_while_parsing_is_answered_and_logged(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(line: bytes) -> tuple[str, dict[str, Any]]:
        raise RuntimeError("parser bug")

    with monkeypatch.context() as patched:
        patched.setattr(rpc, "parse_request_untrusted", broken)
        assert await exchange(guarded.addr, b'{"cmd": "info"}\n') == [
            {"ok": False, "error": "malformed request: RuntimeError"}
        ]
    assert "internal error parsing a request: RuntimeError('parser bug')" in guarded.err.getvalue()
    assert (await rpc.call(guarded.addr, {"cmd": "info"}))["ok"]


async def test_any_exception_while_answering_is_answered_and_logged(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deep(cmd: str, request: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    with monkeypatch.context() as patched:
        patched.setattr(guarded.agent, "handle", deep)
        with pytest.raises(rpc.RpcError, match="internal error: maximum recursion depth"):
            await rpc.call(guarded.addr, {"cmd": "info"})
    assert (await rpc.call(guarded.addr, {"cmd": "info"}))["ok"]


# ================================================================================ limits


EVICTED = [{"ok": False, "error": "too many connections waiting to authenticate; closing"}]


async def collect_answers(
    streams: list[trio.SocketStream], into: list[list[dict[str, Any]]], nursery: trio.Nursery
) -> None:
    """Read each stream's answers until it is closed, in the background (until the
    nursery is cancelled: the test bounds its own waits)."""

    async def one(stream: trio.SocketStream) -> None:
        into.append(await answers_until_closed(stream, timeout_s=math.inf))

    for stream in streams:
        nursery.start_soon(one, stream)


async def until(predicate: Any) -> None:
    with trio.fail_after(WAIT_S):
        while not predicate():
            await trio.sleep(0.005)


async def test_64_idle_connections_do_not_lock_the_owner_out(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "AUTH_TIMEOUT_S", 60.0)  # so only eviction closes them here
    idle = [await trio.open_tcp_stream(*guarded.addr) for _ in range(64)]
    closed: list[list[dict[str, Any]]] = []
    try:
        async with trio.open_nursery() as nursery:
            await collect_answers(idle, closed, nursery)
            # All but the newest few were closed to make room (oldest first).
            await until(lambda: len(closed) == 64 - rpc.MAX_PENDING_PER_SOURCE)
            assert closed == [EVICTED] * (64 - rpc.MAX_PENDING_PER_SOURCE)
            # The owner's request gets in, at the expense of the oldest idle one (and
            # once in, the owner no longer takes a waiting slot: the next needs none).
            assert (await rpc.call(guarded.addr, {"cmd": "info"}))["name"] == "n1"
            assert (await rpc.call(guarded.addr, {"cmd": "members"}))["ok"]
            await until(lambda: len(closed) == 64 - rpc.MAX_PENDING_PER_SOURCE + 1)
            nursery.cancel_scope.cancel()
    finally:
        for stream in idle:
            await stream.aclose()
    assert closed == [EVICTED] * (64 - rpc.MAX_PENDING_PER_SOURCE + 1)


async def test_a_flood_from_one_source_cannot_push_out_anothers_waiting_connection(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "AUTH_TIMEOUT_S", 60.0)
    mine = await trio.open_tcp_stream(*guarded.addr, local_address="127.0.0.1")
    async with mine:
        flood = [
            await trio.open_tcp_stream(*guarded.addr, local_address="127.0.0.2")
            for _ in range(3 * rpc.MAX_PENDING)
        ]
        closed: list[list[dict[str, Any]]] = []
        try:
            async with trio.open_nursery() as nursery:
                await collect_answers(flood, closed, nursery)
                await until(lambda: len(closed) == len(flood) - rpc.MAX_PENDING_PER_SOURCE)
                # Still waiting, not pushed out: the token is accepted.
                await mine.send_all(line({"cmd": "info", "auth": token_of(guarded)}))
                reader = rpc.LineReader(mine, rpc.MAX_RESPONSE_BYTES)
                with trio.fail_after(WAIT_S):
                    answer = await reader.read_line()
                assert answer is not None and json.loads(answer)["name"] == "n1"
                nursery.cancel_scope.cancel()
        finally:
            for stream in flood:
                await stream.aclose()
    assert closed == [EVICTED] * (len(flood) - rpc.MAX_PENDING_PER_SOURCE)


async def test_an_unauthenticated_connection_must_send_its_token_quickly(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "AUTH_TIMEOUT_S", 0.1)
    stream = await trio.open_tcp_stream(*guarded.addr)
    async with stream:
        await stream.send_all(b"\n\n")  # blank lines do not count
        assert await answers_until_closed(stream) == [
            {"ok": False, "error": "no authenticated request within 0.1 s; closing"}
        ]
    # An authenticated connection has the whole idle timeout.
    async with rpc.connect(guarded.addr) as conn:
        await conn.call({"cmd": "info"})
        await trio.sleep(0.3)
        assert (await conn.call({"cmd": "members"}))["ok"]


async def test_authenticated_connections_are_bounded_too(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "MAX_CONNECTIONS", 2)
    async with rpc.connect(guarded.addr) as a, rpc.connect(guarded.addr) as b:
        await a.call({"cmd": "info"})
        await b.call({"cmd": "info"})
        with pytest.raises(rpc.RpcError, match="too many connections"):
            await rpc.call(guarded.addr, {"cmd": "info"})
    with trio.fail_after(WAIT_S):
        while True:  # the slots free up once the server sees the closes
            try:
                await rpc.call(guarded.addr, {"cmd": "info"})
                break
            except rpc.RpcError:
                await trio.sleep(0.01)


# ================================================================================ real agents


@pytest.fixture
async def cluster(tmp_path: pathlib.Path, runtime_dir: pathlib.Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster.open(tmp_path / "cluster", profile="local") as c:
        yield c


NOBODY = 65534


@functools.cache
def _nobody_python() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]] | None:
    """A command prefix and environment that run ``swim`` as uid 65534, or None.

    Only root can switch users. This interpreter may sit under a directory only root can
    enter (``/root/.pyenv``), so the same Python version elsewhere on PATH is tried too,
    given this checkout and its site-packages."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    paths = sysconfig.get_paths()
    pythonpath = os.pathsep.join(
        [str(pathlib.Path(__file__).resolve().parents[1]), paths["purelib"], paths["platlib"]]
    )
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/local/bin", "/usr/bin"]
    candidates: list[tuple[str, tuple[tuple[str, str], ...]]] = [(sys.executable, ())]
    for directory in dirs:
        python = shutil.which(version, path=directory) if directory else None
        if python is not None:
            candidates.append((python, (("PYTHONPATH", pythonpath),)))
    for python, extra in candidates:
        try:
            probe = subprocess.run(
                [python, "-c", "import swim.agent.rpc"],
                env={**os.environ, **dict(extra)},
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return (python, "-m", "swim.cli"), extra
    return None


@pytest.fixture
def as_nobody() -> None:
    """Skips (with its reason: a sync fixture keeps it) unless uid 65534 can run swim."""
    if _nobody_python() is None:
        pytest.skip("needs root and a Python that uid 65534 can run")


async def swim_as_nobody(*args: str) -> subprocess.CompletedProcess[bytes]:
    """`swim ARGS...` as uid/gid 65534, with that user's own environment for tokens."""
    found = _nobody_python()
    assert found is not None
    command, extra = found
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "HOME")}
    with trio.fail_after(30):
        return await trio.run_process(
            [*command, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**env, **dict(extra)},
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
        )


@pytest.mark.slow
async def test_a_real_agent_survives_the_brackets_and_refuses_a_wrong_token(
    cluster: LocalCluster,
) -> None:
    agent = await cluster.start(cluster.define("n1"))
    rpc_arg = ("--rpc", format_addr(agent.rpc))
    # The brackets line does not kill it.
    assert await exchange(agent.rpc, BRACKETS) == [
        {"ok": False, "error": "malformed request: nested too deeply"}
    ]
    result = await swim("info", *rpc_arg)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "n1"

    result = await swim("tags", "--set", "owned=yes", *rpc_arg, "--rpc-auth", "wrong")
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"swim tags: permission denied: the agent at {format_addr(agent.rpc)} refused the RPC token"
    ]
    assert agent.running
    result = await swim("tags", *rpc_arg)
    assert result.returncode == 0
    assert result.stdout == b""  # the refused request set nothing


@pytest.mark.slow
async def test_another_user_cannot_drive_a_real_agent(
    as_nobody: None, cluster: LocalCluster
) -> None:
    agent = await cluster.start(cluster.define("n1"))
    rpc_arg = ("--rpc", format_addr(agent.rpc))
    for command in (["info"], ["tags", "--set", "owned=yes"], ["event", "x", "y"], ["leave"]):
        result = await swim_as_nobody(*command, *rpc_arg)
        assert result.returncode == 1, result
        [message] = result.stderr.decode().splitlines()
        assert message.startswith(f"swim {command[0]}: permission denied: no RPC token")
    assert agent.running
    result = await swim("tags", *rpc_arg)
    assert result.returncode == 0
    assert result.stdout == b""
    # Given the token, another user may.
    token = rpc_token.read_token(agent.rpc)
    assert token is not None
    result = await swim_as_nobody("info", *rpc_arg, "--rpc-auth", token)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
async def test_rpc_auth_sets_the_token_on_both_sides(cluster: LocalCluster) -> None:
    agent = await cluster.start(cluster.define("n1", extra_args=["--rpc-auth", "open-sesame"]))
    rpc_arg = ("--rpc", format_addr(agent.rpc))
    assert rpc_token.read_token(agent.rpc) == "open-sesame"  # its user still just works
    result = await swim("info", *rpc_arg)
    assert result.returncode == 0, result.stderr
    result = await swim("info", *rpc_arg, "--rpc-auth", "open-sesame")
    assert result.returncode == 0, result.stderr
    result = await swim("info", *rpc_arg, "--rpc-auth", "sesame")
    assert result.returncode == 1
    result = await swim("agent", "--name", "x", "--bind", "127.0.0.1:1", "--rpc-auth", " x ")
    assert result.returncode == 2  # usage: a token with spaces around
