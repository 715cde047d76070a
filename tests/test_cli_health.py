"""The agent's health checks (issue 9, item 3), as Consul users run them: ``swim agent
--check`` (script, HTTP, TCP) and ``[[checks]]`` in the config file, health in ``swim
members``, and health kept apart from liveness.

Three layers: the flag and table syntax as tables; each kind of check run once against
real things (a shell script, a tiny HTTP server in a thread, a listening TCP socket);
real ``swim agent`` processes on 127.0.0.1 whose checks flip, seen through other
agents' ``swim members``. Every wait is bounded and polls for a state; every process is
stopped in teardown.
"""

from __future__ import annotations

import http.server
import os
import pathlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from swim import cli
from swim.agent import output
from swim.agent.check_runs import http_get, make_check, run_script, tcp_connect
from swim.agent.cluster import AgentProcess, LocalCluster, Observers
from swim.agent.health_checks import (
    CheckSpec,
    CheckSpecError,
    check_from_table,
    name_checks,
    parse_check,
)
from swim.agent.output import format_addr
from swim.agent.ringview import moves_text, owned_counts, ring_of
from swim.agent.tags import encode_tags
from swim.core.messages import MemberState, MemberStatus
from swim.ring import Ring
from swim.runtime.checks import evaluate
from swim.runtime.health import HealthResult, HealthStatus
from tests.test_cli_serf import json_at, options_of, swim
from tests.ticks import ticking

PASSING, WARNING, CRITICAL = HealthStatus.PASSING, HealthStatus.WARNING, HealthStatus.CRITICAL

# ============================================================================ syntax


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("script=/bin/check", CheckSpec(kind="script", target="/bin/check")),
        # The kind comes last and runs to the end: a script may hold commas and '='.
        ("name=disk,interval=500ms,timeout=2,script=df -h / | grep -q ',x=1'",
         CheckSpec(kind="script", target="df -h / | grep -q ',x=1'", name="disk",
                   interval_s=0.5, timeout_s=2.0)),
        ("interval=1m,http=http://127.0.0.1:8080/health?a=1,b",
         CheckSpec(kind="http", target="http://127.0.0.1:8080/health?a=1,b", interval_s=60.0)),
        ("timeout=1.5s,tcp=db.internal:5432",
         CheckSpec(kind="tcp", target="db.internal:5432", timeout_s=1.5)),
    ],
)
def test_check_flags_parse(text: str, expected: CheckSpec) -> None:
    assert parse_check(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("interval=5s", "names no kind: a check needs one of script=..., http=..., tcp=..."),
        ("grpc=x:1", "unknown check setting 'grpc'"),
        ("intervall=5,tcp=a:1", "unknown check setting 'intervall'; did you mean 'interval'?"),
        ("interval=soon,tcp=a:1", "interval: expected a duration such as 10s, 500ms, 1m"),
        ("interval=0.01,tcp=a:1", "interval: must be at least 0.1 s and at most 3600 s"),
        ("timeout=0,tcp=a:1", "timeout: must be more than 0 s"),
        ("interval=2h,tcp=a:1", "interval: expected a duration"),
        ("script=  ", "a script check needs a command"),
        ("http=ftp://host/", "an http check needs an http:// or https:// URL with a host"),
        ("http=http://host:99999/", "bad port"),
        ("tcp=nohost", "tcp='nohost': expected HOST:PORT"),
        ("tcp=a:1,interval=5s", "put interval= before it"),
        ("name=a,name=b,tcp=a:1", "name is given twice"),
        ("just text", "expected [name=N,][interval=D,][timeout=D,]KIND=TARGET"),
    ],
)
def test_malformed_check_flags_are_refused(text: str, message: str) -> None:
    with pytest.raises(CheckSpecError) as error:
        parse_check(text)
    assert message in str(error.value)


def test_a_bad_check_flag_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser("agent").parse_args(
            ["agent", "--name", "a", "--bind", "127.0.0.1:1", "--check", "interval=x,tcp=a:1"])
    assert exit_.value.code == 2
    assert "argument --check: interval: expected a duration" in capsys.readouterr().err


def test_checks_are_named_after_their_kind_unless_named() -> None:
    specs = [parse_check("tcp=a:1"), parse_check("name=tcp,tcp=a:2"), parse_check("tcp=a:3"),
             parse_check("script=true")]
    assert [s.name for s in name_checks(specs)] == ["tcp-2", "tcp", "tcp-3", "script"]
    with pytest.raises(CheckSpecError, match="two checks are named 'x'"):
        name_checks([parse_check("name=x,tcp=a:1"), parse_check("name=x,script=true")])


def test_the_config_file_takes_consul_style_check_tables_and_flags_add_to_them(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        'name = "a"\nbind = "127.0.0.1:7946"\n'
        '[[checks]]\nname = "web"\nhttp = "http://127.0.0.1:8080/health"\n'
        'interval = "5s"\ntimeout = 1\n'
        '[[checks]]\nargs = ["/usr/local/bin/check-disk", "--min-free", "10 %"]\n'
    )
    options = options_of(["--config", str(path), "--check", "tcp=127.0.0.1:5432"])
    assert options.checks == (
        CheckSpec(kind="http", target="http://127.0.0.1:8080/health", name="web",
                  interval_s=5.0, timeout_s=1.0),
        CheckSpec(kind="script", target="/usr/local/bin/check-disk --min-free '10 %'",
                  args=("/usr/local/bin/check-disk", "--min-free", "10 %"), name="script"),
        CheckSpec(kind="tcp", target="127.0.0.1:5432", name="tcp"),
    )
    assert options.checks[1].argv() == ["/usr/local/bin/check-disk", "--min-free", "10 %"]
    assert check_from_table("interval=2,script=true") == CheckSpec(
        kind="script", target="true", interval_s=2.0)


def test_duplicate_check_names_across_the_file_and_flags_are_a_usage_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('name = "a"\nbind = "127.0.0.1:7946"\n[[checks]]\nname = "x"\ntcp = "a:1"\n')
    with pytest.raises(SystemExit) as exit_:
        cli.main(["agent", "--config", str(path), "--check", "name=x,script=true"])
    assert exit_.value.code == 2
    assert "--check: two checks are named 'x'" in capsys.readouterr().err


def test_the_members_health_filter_takes_consul_statuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = cli.build_parser("members").parse_args(
        ["members", "--health", "warning,critical", "--health", "critical"])
    assert args.health == [["warning", "critical"], ["critical"]]
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser("members").parse_args(["members", "--health", "sick"])
    assert exit_.value.code == 2
    assert "a health is one of passing, warning, critical, got 'sick'" in (
        capsys.readouterr().err)


def test_a_ring_from_member_records_is_the_ring_of_the_members() -> None:
    def member(name: str, status: MemberStatus, **tags: str) -> MemberState:
        return MemberState(name, ("127.0.0.1", 7000 + len(name)), 3, status, encode_tags(tags))

    members = [
        member("a", MemberStatus.ALIVE, zone="x"),
        member("bb", MemberStatus.SUSPECT, weight="2"),
        member("ccc", MemberStatus.ALIVE, health="critical", health_note="disk"),
        member("dddd", MemberStatus.DEAD),
    ]
    records = [output.member_record(m) for m in members]
    assert [r["health"] for r in records] == ["passing", "passing", "critical", "passing"]
    ring = ring_of(records)
    assert ring == Ring.build(members) and ring.members == ("a", "bb")
    keys = [f"k{i}" for i in range(1000)]
    counts = owned_counts(ring, keys)
    assert sum(counts.values()) == 1000 and counts["bb"] > counts["a"]  # weight 2
    healed = ring_of([*records[:2], {**records[2], "tags": {}}, records[3]])  # ccc passes
    text = moves_text(ring, healed, keys, "ccc")
    assert text.startswith(f"{owned_counts(healed, keys)['ccc']} keys moved (a->ccc ")
    assert text.endswith("; every one from or to ccc")


# ============================================================================ one run


async def test_a_script_check_maps_exit_codes_as_consul_does() -> None:
    env = dict(os.environ)
    assert await run_script(["/bin/sh", "-c", "echo fine"], env) == HealthResult(PASSING)
    assert await run_script(["/bin/sh", "-c", "echo slow disk; exit 1"], env) == HealthResult(
        WARNING, "exit 1: slow disk")
    assert await run_script(["/bin/sh", "-c", "echo gone >&2; exit 3"], env) == HealthResult(
        CRITICAL, "exit 3: gone")
    assert await run_script(["/bin/sh", "-c", "kill -TERM $$"], env) == HealthResult(
        CRITICAL, "killed by SIGTERM")
    missing = await run_script(["/nonexistent/check"], env)
    assert missing.status is CRITICAL and missing.note.startswith("cannot start: ")


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie no reaper collected counts as gone)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_gone(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    """The pids still running after waiting (bounded) for all of them to go."""
    with trio.move_on_after(timeout_s):
        while any(_alive(p) for p in pids):
            await trio.sleep(0.05)
    return [p for p in pids if _alive(p)]


async def test_a_script_past_its_timeout_is_critical_and_its_process_group_killed(
    tmp_path: pathlib.Path,
) -> None:
    pids = tmp_path / "pids"
    # The shell starts a background child too: the whole group must go.
    spec = parse_check(f"timeout=0.5,script=sleep 60 & echo $! $$ > {pids}; wait")
    check = make_check(spec, dict)
    with trio.fail_after(20):
        result = await evaluate(check, spec.timeout_s)
    assert result == HealthResult(CRITICAL, "check timed out after 0.5 s")
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    assert await wait_gone(started) == []


class StatusServer:
    """A tiny HTTP server on 127.0.0.1 answering every GET with `status`."""

    def __init__(self) -> None:
        self.status = 200
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                self.send_response(owner.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StatusServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def status_server() -> Iterator[StatusServer]:
    with StatusServer() as server:
        yield server


@pytest.mark.parametrize(
    ("code", "expected"),
    [(200, HealthResult(PASSING)), (201, HealthResult(PASSING)),
     (429, HealthResult(WARNING, "HTTP 429 Too Many Requests")),
     (503, HealthResult(CRITICAL, "HTTP 503 Service Unavailable")),
     (404, HealthResult(CRITICAL, "HTTP 404 Not Found"))],
)
def test_an_http_check_maps_status_codes_as_consul_does(
    status_server: StatusServer, code: int, expected: HealthResult
) -> None:
    status_server.status = code
    assert http_get(status_server.url, 5.0) == expected
    assert status_server.requests == 1


def test_an_http_check_without_a_server_is_critical() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = http_get(f"http://127.0.0.1:{port}/", 5.0)
    assert result == HealthResult(CRITICAL, "GET failed: connection refused")


async def test_a_tcp_check_passes_while_something_listens() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert await tcp_connect("127.0.0.1", port) == HealthResult(PASSING)
    listener.close()
    assert await tcp_connect("127.0.0.1", port) == HealthResult(
        CRITICAL, "connect failed: connection refused")


class NoSuchHost(trio.abc.HostnameResolver):
    """A resolver that knows no name (so no lookup leaves the machine)."""

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def getnameinfo(self, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def test_a_tcp_check_of_a_name_that_does_not_resolve_says_so() -> None:
    previous = trio.socket.set_custom_hostname_resolver(NoSuchHost())
    try:
        result = await tcp_connect("db.internal", 5432)
    finally:
        trio.socket.set_custom_hostname_resolver(previous)
    assert result == HealthResult(CRITICAL, "connect failed: name or service not known")


async def test_a_hanging_http_check_is_critical_and_never_blocks_the_loop() -> None:
    # A listener that never accepts: the connection opens, the GET is never answered.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        spec = parse_check(f"timeout=0.5,http=http://127.0.0.1:{silent.getsockname()[1]}/")
        async with ticking() as ticks:
            with trio.fail_after(10):
                result = await evaluate(make_check(spec, dict), spec.timeout_s)
    assert result.status is CRITICAL
    # The check's own bound or urllib's socket timeout (set to the same), whichever ends
    # first: either way it timed out.
    assert "timed out" in result.note
    assert ticks.count >= 10  # the loop kept running meanwhile


# ======================================================================= real agents


class Service:
    """A TCP service on 127.0.0.1 that accepts and closes every connection (in a thread;
    one that never accepted would fill its backlog and make connects hang)."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()


@pytest.fixture
async def cluster(tmp_path: pathlib.Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster.open(tmp_path / "agents", profile="local") as c:
        yield c


async def wait_health(
    observer: AgentProcess, name: str, health: str, timeout_s: float = 30.0
) -> dict[str, Any]:
    """`name`'s record in `observer`'s ``swim members --json`` once its health is
    `health` (bounded wait; fails with the last record seen)."""
    record: dict[str, Any] = {}
    with trio.move_on_after(timeout_s):
        while True:
            members = {m["name"]: m for m in await json_at(observer, "members")}
            record = members.get(name, {})
            if record.get("health") == health:
                return record
            await trio.sleep(0.1)
    raise AssertionError(f"{observer.name} did not see {name} {health}; it sees {record}")


@pytest.mark.slow
async def test_a_failing_script_check_takes_a_member_off_the_ring_but_not_out_of_the_cluster(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    down = tmp_path / "n2.down"
    check = (f"name=flag,interval=0.2s,timeout=2s,"
             f"script=test ! -e {down} || {{ echo maintenance; exit 2; }}")
    n1 = cluster.define("n1")
    n2 = cluster.define("n2", extra_args=["--check", check])
    n3 = cluster.define("n3")
    await cluster.start(n1)
    for agent in (n2, n3):
        await cluster.start(agent, join=[n1.bind])
    await cluster.wait_converged(timeout_s=30.0)
    observers = Observers()
    async with trio.open_nursery() as nursery:
        for agent in (n1, n3):
            await nursery.start(observers.watch, agent)
        for agent in (n1, n3):
            await wait_health(agent, "n2", "passing")
        assert "n2" in ring_of(await json_at(n1, "members"))

        down.touch()
        for observer in (n1, n3):
            record = await wait_health(observer, "n2", "critical")
            # Health is not liveness: n2 answers probes and stays alive everywhere.
            assert record["status"] == "alive"
            assert record["health_note"] == "exit 2: maintenance"
            members = await json_at(observer, "members")
            ring = ring_of(members)
            assert ring.members == ("n1", "n3")
        assert [m["name"] for m in await json_at(n3, "members", "--health", "critical")] == [
            "n2"]
        assert [m["name"] for m in await json_at(n3, "members", "--health",
                                                 "passing,warning")] == ["n1", "n3"]
        table = (await swim("members", "--rpc", format_addr(n1.rpc),
                            env={"COLUMNS": "200"})).stdout.decode()
        (row,) = [line for line in table.splitlines() if " n2 " in line]
        assert "alive" in row and "critical (exit 2: maintenance)" in row
        info = await json_at(n2, "info")
        assert [(c["name"], c["status"]) for c in info["checks"]] == [("flag", "critical")]

        down.unlink()
        for observer in (n1, n3):
            record = await wait_health(observer, "n2", "passing")
            assert record["health_note"] == ""
            assert ring_of(await json_at(observer, "members")).members == ("n1", "n2", "n3")
        nursery.cancel_scope.cancel()
    # Throughout, nobody declared n2 failed.
    assert observers.first("failed", "n2", 0.0) == {}
    assert "health passing -> critical: exit 2: maintenance" in n2.log_path.read_text()


@pytest.mark.slow
async def test_http_and_tcp_checks_on_a_real_agent_and_the_worst_wins(
    cluster: LocalCluster, status_server: StatusServer
) -> None:
    service = Service()
    port = service.port
    try:
        n1 = cluster.define("n1", extra_args=[
            "--check", f"name=web,interval=0.2s,timeout=2s,http={status_server.url}",
            "--check", f"name=db,interval=0.2s,timeout=2s,tcp=127.0.0.1:{port}",
        ])
        await cluster.start(n1)
        n2 = await cluster.start(cluster.define("n2"), join=[n1.bind])
        await cluster.wait_converged(timeout_s=30.0)
        await wait_health(n2, "n1", "passing")
        assert status_server.requests >= 1

        status_server.status = 429
        record = await wait_health(n2, "n1", "warning")
        assert record["health_note"] == "HTTP 429 Too Many Requests"
        assert "n1" in ring_of(await json_at(n2, "members"))  # warning stays on the ring

        service.close()  # the TCP check fails: critical is worse than warning
        record = await wait_health(n2, "n1", "critical")
        assert record["health_note"] == "connect failed: connection refused"
        status_server.status = 500  # both critical now; one note is published
        checks = {c["name"]: c for c in (await json_at(n1, "info"))["checks"]}
        assert checks["db"]["status"] == "critical"
        assert checks["db"]["kind"] == "tcp" and checks["web"]["kind"] == "http"

        service = Service(port)
        status_server.status = 200
        await wait_health(n2, "n1", "passing")
        assert (await json_at(n2, "members", "--name", "n1"))[0]["status"] == "alive"
    finally:
        service.close()


@pytest.mark.slow
async def test_a_timing_out_script_check_on_a_real_agent_is_critical_and_killed(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    slow, pids = tmp_path / "slow", tmp_path / "pids"
    script = (f"if [ -e {slow} ]; then sleep 60 & echo $! $$ >> {pids}; wait; fi")
    n1 = cluster.define("n1", extra_args=[
        "--check", f"name=hang,interval=0.3s,timeout=0.5s,script={script}"])
    await cluster.start(n1)
    n2 = await cluster.start(cluster.define("n2"), join=[n1.bind])
    await cluster.wait_converged(timeout_s=30.0)
    await wait_health(n2, "n1", "passing")

    slow.touch()
    record = await wait_health(n2, "n1", "critical")
    assert record["health_note"] == "check timed out after 0.5 s"
    assert record["status"] == "alive"
    slow.unlink()
    await wait_health(n2, "n1", "passing")
    # Every script that ran past its timeout was killed with its child.
    started = [int(p) for p in pids.read_text().split()]
    assert started
    assert await wait_gone(started) == []
