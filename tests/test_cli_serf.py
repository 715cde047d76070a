"""Serf's command set (issue 9, item 6): ``swim join`` into a running agent,
``swim force-leave``, ``swim members`` filters, ``--json`` on every command,
``SWIM_RPC_ADDR``, the TOML config file, event handler scripts and host names where
addresses go.

Three layers: the parsers and the config file as tables; the agent in process over a
fake node (handlers, join), with real handler processes; real ``swim agent`` processes
on 127.0.0.1 driven through the command line, as an operator runs them. Every wait is
bounded and polls for a state; every process is stopped in teardown.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import pytest
import trio

from swim import cli
from swim.agent import addresses, handlers, output, rpc, settings
from swim.agent.agent import Agent, AgentOptions
from swim.agent.cluster import AgentProcess, LocalCluster, agent_command, free_port
from swim.agent.handlers import EventFilter, HandlerSpec, parse_handler
from swim.agent.health_checks import CheckSpec
from swim.agent.output import format_addr
from swim.agent.tags import UserEvent, encode_tags, encode_user_event
from swim.core.events import (
    JoinCompleted,
    MemberFailed,
    MemberJoined,
    QueryReceived,
    UserBroadcastReceived,
)
from swim.core.messages import Address, MemberState, MemberStatus
from tests.test_cli_rpc import FakeNode

# ============================================================================ addresses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7946", ("127.0.0.1", 7946)),
        ("[::1]:7373", ("::1", 7373)),
        ("[0:0::1]:7373", ("::1", 7373)),
        ("localhost:7946", ("localhost", 7946)),
        ("db-1.example.org:1", ("db-1.example.org", 1)),
        ("db_1.internal.:65535", ("db_1.internal.", 65535)),
    ],
)
def test_addresses_take_ip_literals_and_host_names(text: str, expected: Address) -> None:
    assert addresses.parse_host_port(text) == expected


@pytest.mark.parametrize(
    "text",
    ["7946", ":7946", "host:", "host:0", "host:65536", "host:http", "a b:1", "-a:1",
     "a..b:1", "[db.example]:1", "h\u00e9:1", f"{'a' * 254}:1", "host:\u0661"],
)
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(addresses.AddressError):
        addresses.parse_host_port(text)


def test_port_zero_is_only_for_bind() -> None:
    assert addresses.parse_host_port("localhost:0", allow_port_zero=True) == ("localhost", 0)
    assert settings.bind_arg("localhost:0") == ("localhost", 0)
    with pytest.raises(Exception, match=r"port must be 1\.\.65535"):
        settings.address_arg("localhost:0")


def test_names_resolve_with_the_system_resolver_ipv4_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert addresses.resolve("10.1.2.3", 1) == ("10.1.2.3", 1)  # no lookup for a literal
    assert addresses.resolve("localhost", 7946) == ("127.0.0.1", 7946)  # /etc/hosts
    answers = [
        (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("fe80::1%eth0", 1, 0, 2)),
        (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("2001:db8::5", 1, 0, 0)),
        (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("192.0.2.7", 1)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers)
    assert addresses.resolve("db.example", 1) == ("192.0.2.7", 1)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers[:2])
    assert addresses.resolve("db.example", 1) == ("2001:db8::5", 1)  # scoped one skipped


def _no_such_host(*args: object, **kwargs: object) -> Any:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_an_unresolvable_name_is_a_clear_error_of_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No query leaves this machine: the resolver is replaced.
    monkeypatch.setattr(socket, "getaddrinfo", _no_such_host)
    code = cli.main(["agent", "--name", "x", "--bind", "127.0.0.1:7946",
                     "--join", "db1.example:7946"])
    assert code == 1
    assert capsys.readouterr().err == (
        "swim agent: --join db1.example:7946: cannot resolve 'db1.example': "
        "name or service not known\n"
    )
    assert cli.main(["members", "--rpc", "agent.example:7373"]) == 1
    assert capsys.readouterr().err == (
        "swim members: --rpc agent.example:7373: cannot resolve 'agent.example': "
        "name or service not known\n"
    )


def test_the_rpc_address_comes_from_the_flag_then_swim_rpc_addr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rpc_address = settings.client_rpc_address
    assert rpc_address(None, {}) == ("127.0.0.1", 7373)
    assert rpc_address(None, {"SWIM_RPC_ADDR": "localhost:7400"}) == ("127.0.0.1", 7400)
    assert rpc_address(None, {"SWIM_RPC_ADDR": "[::1]:7401"}) == ("::1", 7401)
    assert rpc_address(("127.0.0.1", 7402), {"SWIM_RPC_ADDR": "[::1]:7401"}) == (
        "127.0.0.1", 7402)
    with pytest.raises(settings.OptionsError, match="SWIM_RPC_ADDR='nope'") as bad:
        rpc_address(None, {"SWIM_RPC_ADDR": "nope"})
    assert bad.value.usage
    with pytest.raises(settings.OptionsError, match="must be on loopback"):
        rpc_address(None, {"SWIM_RPC_ADDR": "10.0.0.1:7373"})
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("192.0.2.7", 7373))])
    with pytest.raises(settings.OptionsError, match=r"'agent\.example' is 192\.0\.2\.7") as far:
        rpc_address(("agent.example", 7373), {})
    assert not far.value.usage


# ======================================================================= event handlers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("notify.sh", HandlerSpec("notify.sh")),
        ("*=a=1 b.sh", HandlerSpec("a=1 b.sh")),
        ("member-join,member-failed=n.sh --x", HandlerSpec(
            "n.sh --x", (EventFilter("member-join"), EventFilter("member-failed")))),
        ("user:deploy,query=d.sh", HandlerSpec(
            "d.sh", (EventFilter("user", "deploy"), EventFilter("query")))),
        ("query:load=uptime", HandlerSpec("uptime", (EventFilter("query", "load"),))),
        ("member-leave,*=x", HandlerSpec("x")),
    ],
)
def test_handler_specs_parse_as_serfs(text: str, expected: HandlerSpec) -> None:
    assert parse_handler(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("membr-join=x", "unknown event 'membr-join'"),
        ("FOO=1 x.sh", "a script containing '=' needs the events first"),
        ("user:=x", "unknown event 'user:'"),
        ("member-join:a=x", "unknown event 'member-join:a'"),
        ("member-reap=x", "unknown event"),
        ("member-join=", "needs a script"),
        ("  ", "needs a script"),
    ],
)
def test_malformed_handler_specs_are_refused(text: str, message: str) -> None:
    with pytest.raises(handlers.HandlerSpecError, match=message):
        parse_handler(text)


def test_a_spec_matches_its_events() -> None:
    spec = parse_handler("member-join,user:deploy,query=x")
    assert spec.matches("member-join") and spec.matches("user", "deploy")
    assert spec.matches("query", "anything")
    assert not spec.matches("member-failed") and not spec.matches("user", "other")
    assert parse_handler("x").matches("member-update")


def test_member_lines_and_tag_variables_are_serfs() -> None:
    line = handlers.member_line("we\tird\nname", "10.0.0.1", {"role": "db", "zone": "a\tb"})
    assert line == b"we\\tird\\nname\t10.0.0.1\tdb\trole=db,zone=a\\tb\n"
    assert handlers.member_line("n", "::1", {}) == b"n\t::1\t\t\n"
    assert handlers.env_name("dc.name-x") == "DC_NAME_X"
    env = handlers.self_env("n1", {"role": "web", "dc": "east"}, "127.0.0.1:7373")
    assert env == {
        "SWIM_SELF_NAME": "n1", "SERF_SELF_NAME": "n1",
        "SWIM_SELF_ROLE": "web", "SERF_SELF_ROLE": "web",
        "SWIM_TAG_DC": "east", "SERF_TAG_DC": "east",
        "SWIM_TAG_ROLE": "web", "SERF_TAG_ROLE": "web",
        "SWIM_RPC_ADDR": "127.0.0.1:7373",
    }


# ========================================================================== config file

FULL_CONFIG = """
name = "web-1"
bind = "localhost:0"
advertise = "127.0.0.1:7946"
join = ["127.0.0.1:7947", "localhost:7948"]
profile = "local"
rpc = "localhost:7373"
rpc_auth = "sesame"
metrics = "127.0.0.1:9100"
log_json = true
keyring_file = "keys.json"
label = "prod"
accept_plaintext = true
send_plaintext = false
event_handlers = ["member-join=./join.sh", "query:uptime=uptime"]
event_handler_timeout = 5

[tags]
role = "web"
dc = "east"

[query_responses]
version = "1.2"

[[checks]]
name = "web"
http = "http://127.0.0.1:8080/health"
interval = "5s"
"""


def options_of(argv: Sequence[str]) -> AgentOptions:
    args = cli.build_parser("agent").parse_args(["agent", *argv])
    from_file = {} if args.config is None else settings.load_config(args.config)
    return settings.agent_options(settings.merge(from_file, settings.from_command_line(args)))


def test_every_agent_flag_has_a_config_key() -> None:
    args = cli.build_parser("agent").parse_args(["agent"])
    dests = set(vars(args)) - {"command", "handler", "parser", "config"}
    assert dests == {s.dest for s in settings.SETTINGS}
    assert set(settings.BY_KEY) == {s.key for s in settings.SETTINGS}


def test_a_config_file_sets_every_setting(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(FULL_CONFIG)
    options = options_of(["--config", str(path)])
    assert options == AgentOptions(
        name="web-1", bind=("127.0.0.1", 0), advertise=("127.0.0.1", 7946),
        join=(("127.0.0.1", 7947), ("127.0.0.1", 7948)), profile="local",
        tags={"role": "web", "dc": "east"}, rpc=("127.0.0.1", 7373),
        metrics=("127.0.0.1", 9100), log_json=True, rpc_auth="sesame",
        keyring_file="keys.json", label="prod", accept_plaintext=True,
        send_plaintext=False, query_responses={"version": "1.2"},
        event_handlers=(parse_handler("member-join=./join.sh"),
                        parse_handler("query:uptime=uptime")),
        event_handler_timeout_s=5.0,
        checks=(CheckSpec(kind="http", target="http://127.0.0.1:8080/health", name="web",
                          interval_s=5.0),),
    )


def test_flags_override_the_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(FULL_CONFIG)
    options = options_of([
        "--config", str(path), "--name", "web-2", "--profile", "lan",
        "--tag", "role=api", "--tag", "zone=b", "--join", "127.0.0.1:7950",
        "--event-handler", "user=./u.sh", "--query-response", "version=2.0",
        "--event-handler-timeout", "9",
    ])
    # Scalars replace the file's; repeatable flags add to its lists; a tag or answer of
    # the same key replaces the file's.
    assert (options.name, options.profile, options.event_handler_timeout_s) == (
        "web-2", "lan", 9.0)
    assert options.tags == {"role": "api", "dc": "east", "zone": "b"}
    assert options.join == (("127.0.0.1", 7947), ("127.0.0.1", 7948), ("127.0.0.1", 7950))
    assert [str(h) for h in options.event_handlers] == [
        "member-join=./join.sh", "query:uptime=uptime", "user=./u.sh"]
    assert options.query_responses == {"version": "2.0"}
    assert options.log_json is True  # from the file; the flag was not given


def test_without_a_file_the_defaults_hold() -> None:
    options = options_of(["--name", "a", "--bind", "127.0.0.1:7946"])
    assert options == AgentOptions(name="a", bind=("127.0.0.1", 7946))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('nmae = "x"', "unknown key 'nmae'; did you mean 'name'? (known keys: accept_plaintext"),
        ('[checks]\nx = "y"', "checks: must be an array of [[checks]] tables"),
        ('[[checks]]\ntcp = "a:1"\n[[checks]]\nhttp = "ftp://x"',
         "checks: entry 2: an http check needs an http:// or https:// URL"),
        ('[[checks]]\nscript = "true"\ninterval = "fast"', "checks: entry 1: interval: expected"),
        ('[[checks]]\nname = "x"', "checks: entry 1: a check needs exactly one of script, args"),
        ('[[checks]]\nhttp = "http://a/"\ntimout = 1', "unknown check setting 'timout'; did you"),
        ("join = \"127.0.0.1:1\"", "join: must be a list of strings"),
        ("join = [\"nowhere\"]", "join: expected HOST:PORT, got 'nowhere'"),
        ("log_json = \"yes\"", "log_json: must be true or false"),
        ("event_handler_timeout = 0", "event_handler_timeout: a timeout is more than 0"),
        ("[tags]\nrole = 1", "tags: must be a table of strings"),
        ('tags = {"a=b" = "c"}', "tags: a tag key must not contain '='"),
        ('event_handlers = ["nope=x"]', "event_handlers: unknown event 'nope'"),
        ('rpc = "10.0.0.1:7373"', "rpc: the RPC address must be on loopback"),
        ('query_responses = {_swim_x = "y"}', "query_responses: query names starting with"),
        ("profile = \"fast\"", "profile: a profile is one of lan, wan, local"),
        ("name = ", "is not valid TOML"),
    ],
)
def test_a_bad_config_file_is_an_error_naming_the_file_and_the_key(
    tmp_path: pathlib.Path, text: str, message: str
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text + "\n")
    with pytest.raises(settings.ConfigError) as error:
        settings.load_config(str(path))
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)


def test_the_agent_command_reports_a_bad_config_file(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('name = "a"\nbind = "127.0.0.1:7946"\nbnid = "x"\n')
    assert cli.main(["agent", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"swim agent: {path}: unknown key 'bnid'; did you mean 'bind'?")
    assert cli.main(["agent", "--config", str(tmp_path / "missing.toml")]) == 1
    assert "cannot read" in capsys.readouterr().err
    path.write_text('bind = "127.0.0.1:7946"\n')
    with pytest.raises(SystemExit) as usage:
        cli.main(["agent", "--config", str(path)])
    assert usage.value.code == 2
    assert "--name is required (or name = ... in the --config file)" in capsys.readouterr().err


# ======================================================================= members filters


MEMBERS = [
    {"name": "web-1", "status": "alive", "tags": {"role": "web", "dc": "east"}},
    {"name": "web-2", "status": "suspect", "tags": {"role": "web", "dc": "west"}},
    {"name": "db-1", "status": "dead", "tags": {"role": "db"}},
    {"name": "db-2", "status": "left", "tags": {}},
]


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        ({}, ["web-1", "web-2", "db-1", "db-2"]),
        ({"status": ["alive", "suspect"]}, ["web-1", "web-2"]),
        ({"name": "db-*"}, ["db-1", "db-2"]),
        ({"name": "web-[2-9]"}, ["web-2"]),
        ({"tags": {"role": "web", "dc": "e*"}}, ["web-1"]),
        ({"tags": {"dc": "*"}}, ["web-1", "web-2"]),  # a missing tag never matches
        ({"status": ["dead"], "tags": {"role": "db"}}, ["db-1"]),
        ({"status": ["left"], "name": "web-*"}, []),
    ],
)
def test_member_filters(filters: dict[str, Any], names: list[str]) -> None:
    keep = output.member_filter(**filters)
    assert [m["name"] for m in MEMBERS if keep(m)] == names


# ================================================================ the agent in process


@attrs.define(eq=False)
class HandlerNode(FakeNode):
    """A fake node that records answers and whose joins answer as told."""

    responses: list[tuple[str, int, bytes]] = attrs.field(factory=list)
    joins: list[list[Address]] = attrs.field(factory=list)
    answering: set[Address] = attrs.field(factory=set)
    forced: list[str] = attrs.field(factory=list)

    def respond(self, origin: str, query_id: int, payload: bytes = b"") -> None:
        self.responses.append((origin, query_id, payload))

    def join(self, seeds: Sequence[Address]) -> None:
        self.joins.append(list(seeds))
        for seed in seeds:
            ok = seed in self.answering
            self.send.send_nowait(JoinCompleted(seed=seed, ok=ok, members=3 if ok else 0, at=0))

    def members(self) -> list[MemberState]:
        return [*super().members(),
                MemberState("n3", ("127.0.0.1", 7948), 2, MemberStatus.DEAD, b"")]

    def force_leave(self, name: str) -> bool:
        if name != "n3":
            return False
        self.forced.append(name)
        return True


@attrs.define(eq=False)
class InProcess:
    agent: Agent
    node: HandlerNode
    addr: Address
    err: io.StringIO

    def logs(self) -> list[str]:
        return [json.loads(line)["log"] for line in self.err.getvalue().splitlines()]

    async def wait_log(self, predicate: Callable[[str], bool], timeout_s: float = 15.0) -> str:
        with trio.fail_after(timeout_s):
            while True:
                found = [line for line in self.logs() if predicate(line)]
                if found:
                    return found[-1]
                await trio.sleep(0.02)


async def in_process(nursery: trio.Nursery, **options: Any) -> InProcess:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    node = HandlerNode(meta=encode_tags({"role": "web", "dc": "east"}))
    agent_options = AgentOptions(
        name="n1", bind=node.addr, rpc=("127.0.0.1", port), log_json=True,
        rpc_auth_required=False, tags={"role": "web", "dc": "east"}, **options,
    )
    err = io.StringIO()
    agent = Agent(agent_options, node, out=io.StringIO(), err=err, joiner=node.join)
    nursery.start_soon(agent.run, listeners)
    state = InProcess(agent, node, ("127.0.0.1", port), err)
    await state.wait_log(lambda line: line.startswith("running"))
    return state


#: A handler that writes its variables (SWIM_*, SERF_*) and its stdin to files in $OUT,
#: the variables' file last (renamed into place), so a run is read only once complete.
RECORDER = (
    'env | grep -E "^(SWIM|SERF)_" | sort > "$OUT/.$$.env"; '
    'cat > "$OUT/$SWIM_EVENT.$$.stdin"; mv "$OUT/.$$.env" "$OUT/$SWIM_EVENT.$$.env"'
)


def recorded(out: pathlib.Path, kind: str) -> list[tuple[dict[str, str], bytes]]:
    """(variables, stdin) of each run of the recorder for `kind`."""
    runs = []
    for env_file in sorted(out.glob(f"{kind}.*.env")):
        stdin_file = env_file.with_suffix(".stdin")
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        runs.append((env, stdin_file.read_bytes()))
    return runs


async def wait_recorded(out: pathlib.Path, kind: str, count: int = 1,
                        timeout_s: float = 20.0) -> list[tuple[dict[str, str], bytes]]:
    with trio.fail_after(timeout_s):
        while len(runs := recorded(out, kind)) < count:
            await trio.sleep(0.05)
    return runs


async def test_handlers_get_serfs_variables_and_stdin(
    nursery: trio.Nursery, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setenv("SERF_TAG_STALE", "inherited")  # not this member's: dropped
    specs = (parse_handler(f"member-join,user:deploy,query:uptime={RECORDER}"),)
    running = await in_process(nursery, event_handlers=specs)
    n2 = MemberState("n2", ("10.0.0.2", 7947), 4, MemberStatus.ALIVE,
                     encode_tags({"role": "db", "zone": "a"}))
    running.node.send.send_nowait(MemberJoined(member=n2, at=0))
    running.node.send.send_nowait(UserBroadcastReceived(
        origin="n2", id=77, payload=encode_user_event(UserEvent("deploy", b"v1.2")), at=0))
    running.node.send.send_nowait(UserBroadcastReceived(  # another name: not subscribed
        origin="n2", id=78, payload=encode_user_event(UserEvent("other", b"x")), at=0))
    running.node.send.send_nowait(MemberFailed(member=n2, accuser="n1", at=0))  # neither

    (join,) = await wait_recorded(tmp_path, "member-join")
    own = {
        "SELF_NAME": "n1", "SELF_ROLE": "web", "TAG_ROLE": "web", "TAG_DC": "east",
    }
    assert join[0] == {
        **{f"{p}_{k}": v for k, v in own.items() for p in ("SWIM", "SERF")},
        "SWIM_EVENT": "member-join", "SERF_EVENT": "member-join",
        "SWIM_RPC_ADDR": format_addr(running.addr),
    }
    assert join[1] == b"n2\t10.0.0.2\tdb\trole=db,zone=a\n"
    (user,) = await wait_recorded(tmp_path, "user")
    assert {k: v for k, v in user[0].items() if "USER" in k} == {
        "SWIM_USER_EVENT": "deploy", "SERF_USER_EVENT": "deploy", "SWIM_USER_ID": "77",
        "SWIM_USER_ORIGIN": "n2",
    }
    assert user[1] == b"v1.2\n"  # a newline added, as Serf does

    deadline = trio.current_time() + 10
    running.node.send.send_nowait(QueryReceived(
        origin="n2", id=9, name="uptime", payload=b"how long?\n", deadline=deadline, at=0))
    (query,) = await wait_recorded(tmp_path, "query")
    assert {k: v for k, v in query[0].items() if "QUERY" in k} == {
        "SWIM_QUERY_NAME": "uptime", "SERF_QUERY_NAME": "uptime", "SWIM_QUERY_ID": "9",
        "SWIM_QUERY_ORIGIN": "n2",
    }
    assert query[1] == b"how long?\n"
    await running.wait_log(lambda line: "for query 'uptime': exit 0" in line)
    assert running.node.responses == []  # no output, no answer
    assert recorded(tmp_path, "member-failed") == []
    assert len(recorded(tmp_path, "user")) == 1
    info = await rpc.call(running.addr, {"cmd": "info"})
    assert info["handlers"] == {
        "configured": [str(specs[0])], "timeout_s": 30.0, "started": 3, "succeeded": 3,
        "failed": 0, "timed_out": 0, "dropped": 0, "answered": 0, "running": 0,
    }


async def test_a_query_handlers_stdout_answers_truncated_to_the_limit(
    nursery: trio.Nursery,
) -> None:
    running = await in_process(nursery, event_handlers=(
        parse_handler("query:big=head -c 3000 /dev/zero | tr '\\0' x; echo oops >&2"),
        parse_handler("query:small=cat; echo there"),
        parse_handler("query:small=sleep 0.5; echo late"),
        parse_handler("query:static=echo mine"),
        parse_handler("query:fails=echo partial; exit 3"),
    ), query_responses={"static": "from the flag"})

    def ask(name: str, query_id: int, payload: bytes = b"") -> None:
        running.node.send.send_nowait(QueryReceived(
            origin="n2", id=query_id, name=name, payload=payload,
            deadline=trio.current_time() + 10, at=0))

    ask("big", 1)
    line = await running.wait_log(lambda line: "for query 'big'" in line)
    assert ": exit 0 in " in line
    assert "(answered with 1024 bytes, truncated from 3000 bytes)" in line
    assert running.node.responses == [("n2", 1, b"x" * 1024)]  # stderr is not the answer

    ask("small", 2, b"hello")
    await running.wait_log(lambda line: "another handler answered first" in line)
    assert running.node.responses[1:] == [("n2", 2, b"hello\nthere\n")]

    ask("static", 3)
    line = await running.wait_log(lambda line: "for query 'static'" in line)
    assert "not sent: the agent's --query-response answered" in line
    ask("fails", 4)
    line = await running.wait_log(lambda line: "for query 'fails'" in line)
    assert ": exit 3 in " in line
    assert line.split(" s: ", 1)[1] == "partial"  # no stderr: the end of stdout is shown
    assert running.node.responses[2:] == [("n2", 3, b"from the flag")]


async def test_handlers_never_block_the_agent_and_are_killed_at_the_timeout(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    marker = tmp_path / "child-ran"
    running = await in_process(nursery, event_handler_timeout_s=1.0, event_handlers=(
        parse_handler(f"member-update=(sleep 1.5; touch {marker}) & sleep 30"),
        parse_handler("member-failed=echo bad input >&2; exit 4"),
        parse_handler("member-join=sleep 3 & echo started"),
    ))
    n2 = MemberState("n2", ("10.0.0.2", 7947), 4, MemberStatus.ALIVE, b"")
    from swim.core.events import MemberUpdated

    began = trio.current_time()
    running.node.send.send_nowait(MemberUpdated(member=n2, at=0))
    running.node.send.send_nowait(MemberFailed(member=n2, accuser="n1", at=0))
    running.node.send.send_nowait(MemberJoined(member=n2, at=0))
    # While the handlers run, the agent answers at once.
    with trio.fail_after(5):
        while True:
            with trio.fail_after(0.5):
                info = await rpc.call(running.addr, {"cmd": "info"})
            if info["handlers"]["running"] >= 1:
                break
            await trio.sleep(0.02)
    line = await running.wait_log(lambda line: "for member-update" in line)
    assert "killed after 1.0" in line and line.endswith("(1 s)")
    assert trio.current_time() - began < 5
    line = await running.wait_log(lambda line: "for member-failed" in line)
    assert ": exit 4 in " in line and line.endswith(" s: bad input")
    # A background child holding stdout open does not hold up the run.
    line = await running.wait_log(lambda line: "for member-join" in line)
    assert ": exit 0 in 0." in line
    info = await rpc.call(running.addr, {"cmd": "info"})
    assert {k: info["handlers"][k] for k in ("started", "succeeded", "failed", "timed_out")} == {
        "started": 3, "succeeded": 1, "failed": 1, "timed_out": 1}
    await trio.sleep(1.5)
    assert not marker.exists()  # the script's whole process group was killed


async def test_join_reports_each_seed_and_force_leave_only_a_failed_member(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await in_process(nursery)
    running.node.answering = {("127.0.0.1", 7950)}
    answer = await rpc.call(running.addr, {"cmd": "join", "addrs": [
        "127.0.0.1:7950", "localhost:7951", "nowhere", "127.0.0.1:7946", "127.0.0.1:7950"]})
    assert answer == {"ok": True, "joined": 1, "results": [
        {"addr": "127.0.0.1:7950", "resolved": "127.0.0.1:7950", "ok": True, "members": 3},
        {"addr": "localhost:7951", "resolved": "127.0.0.1:7951", "ok": False,
         "error": "no answer"},
        {"addr": "nowhere", "ok": False, "error": "expected HOST:PORT, got 'nowhere'"},
        {"addr": "127.0.0.1:7946", "resolved": "127.0.0.1:7946", "ok": False,
         "error": "that is this agent's own address"},
    ]}
    assert running.node.joins == [[("127.0.0.1", 7950), ("127.0.0.1", 7951)]]
    bad: dict[str, Any]
    for bad in ({}, {"addrs": []}, {"addrs": "127.0.0.1:1"}, {"addrs": [1]}):
        with pytest.raises(rpc.RpcError, match='"join" needs "addrs"'):
            await rpc.call(running.addr, {"cmd": "join", **bad})

    assert await rpc.call(running.addr, {"cmd": "force-leave", "node": "n3"}) == {
        "ok": True, "member": "n3", "forced": True}
    for name, message in [("n2", "'n2' is suspect, not failed"), ("n1", "is this agent"),
                          ("zz", "no member named 'zz'"), ("", "needs \"node\"")]:
        with pytest.raises(rpc.RpcError, match=message):
            await rpc.call(running.addr, {"cmd": "force-leave", "node": name})
    assert running.node.forced == ["n3"]

    members = await rpc.call(running.addr, {"cmd": "members", "status": ["dead", "suspect"],
                                            "name": "n*"})
    assert [m["name"] for m in members["members"]] == ["n2", "n3"]
    with pytest.raises(rpc.RpcError, match='"status" must be a list of'):
        await rpc.call(running.addr, {"cmd": "members", "status": ["failed"]})


# ========================================================================== real agents


@pytest.fixture
async def cluster(tmp_path: pathlib.Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster.open(tmp_path / "agents", profile="local") as c:
        yield c


async def swim(*args: str, env: dict[str, str] | None = None,
               timeout_s: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    """Run `swim ARGS...` to completion, output captured."""
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            [*agent_command(), *args], capture_stdout=True, capture_stderr=True, check=False,
            env=None if env is None else {**os.environ, **env},
        )


async def at(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await swim(*args, "--rpc", format_addr(agent.rpc))


async def json_at(agent: AgentProcess, *args: str) -> Any:
    result = await at(agent, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
async def test_join_force_leave_filters_and_json_with_real_agents(
    cluster: LocalCluster,
) -> None:
    # n1 binds by host name; n2 starts alone and is joined into n1 by `swim join`, which
    # finds n2 through SWIM_RPC_ADDR (a name too).
    n1 = cluster.define("n1", tags={"role": "web", "dc": "east"})
    n1.args += ["--bind", f"localhost:{n1.bind[1]}"]  # the later --bind wins
    n2 = cluster.define("n2", tags={"role": "db"})
    n3 = cluster.define("n3", tags={"role": "web", "dc": "west"})
    await cluster.start(n1)
    await cluster.start(n2)
    via_env = {"SWIM_RPC_ADDR": f"localhost:{n2.rpc[1]}"}
    result = await swim("join", f"localhost:{n1.bind[1]}", f"127.0.0.1:{free_port()}",
                        "--json", env=via_env)
    assert result.returncode == 0, result.stderr
    joined = json.loads(result.stdout)
    assert joined["joined"] == 1
    assert joined["results"][0] == {
        "addr": f"localhost:{n1.bind[1]}", "resolved": format_addr(n1.bind), "ok": True,
        "members": 2}
    assert joined["results"][1]["ok"] is False
    await cluster.start(n3, join=[n1.bind])
    await cluster.wait_converged(timeout_s=30.0)

    human = await swim("join", "127.0.0.1:1", env=via_env)
    assert human.returncode == 1
    assert human.stdout.decode().splitlines() == [
        "cannot join through 127.0.0.1:1: no answer",
        "Error joining the cluster: no seed answered.",
    ]

    web = await json_at(n2, "members", "--tag", "role=web")
    assert [m["name"] for m in web] == ["n1", "n3"]
    assert [m["name"] for m in await json_at(n2, "members", "--tag", "role=web",
                                             "--tag", "dc=w*")] == ["n3"]
    assert [m["name"] for m in await json_at(n2, "members", "--name", "n[12]")] == ["n1", "n2"]
    refused = await at(n1, "force-leave", "n3")
    assert refused.returncode == 1
    assert refused.stderr.decode().strip() == (
        "swim force-leave: 'n3' is alive, not failed: only a failed member can be forced "
        "to leave (a live one leaves by itself, with swim leave)")

    cluster.kill(n3, signal.SIGKILL)
    for observer in (n1, n2):
        await cluster.wait_until(observer, {"n3": "dead"}, timeout_s=45.0)
    assert [m["name"] for m in await json_at(n2, "members", "--status", "failed")] == ["n3"]
    assert await json_at(n1, "force-leave", "n3") == {"member": "n3", "forced": True}
    # Every member now holds n3 as left (not failed), and will not try to reconnect.
    for observer in (n1, n2):
        await cluster.wait_until(observer, {"n3": "left"}, timeout_s=15.0)
    assert [m["name"] for m in await json_at(n1, "members", "--status", "left")] == ["n3"]
    assert await json_at(n1, "members", "--status", "alive,suspect", "--name", "n3") == []


@pytest.mark.slow
async def test_every_client_command_speaks_json(cluster: LocalCluster) -> None:
    n1 = await cluster.start(cluster.define("n1", tags={"role": "web"}))
    assert await json_at(n1, "tags", "--set", "dc=east") == {"tags": {"dc": "east",
                                                                        "role": "web"}}
    sent = await json_at(n1, "event", "deploy", "v1")
    assert sent.keys() == {"name", "payload", "id"} and sent["name"] == "deploy"
    assert (await json_at(n1, "info"))["name"] == "n1"
    members = await json_at(n1, "members")
    assert [(m["name"], m["status"], m["tags"]) for m in members] == [
        ("n1", "alive", {"dc": "east", "role": "web"})]
    query = await json_at(n1, "query", "ping", "--ack", "--timeout", "1")
    assert query["acks"] == ["n1"] and query["responses"] == {}
    # A refused request is one line on stderr, --json or not, and nothing on stdout.
    keys = await at(n1, "keys", "--list", "--timeout", "2", "--json")
    assert (keys.returncode, keys.stdout) == (1, b"")
    assert keys.stderr.decode().startswith("swim keys: cannot run keys list: ")
    failed = await at(n1, "join", "127.0.0.1:1", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["joined"] == 0
    assert (await swim("keygen", "--json")).stdout.startswith(b'{"key": "')
    assert await json_at(n1, "leave") == {"left": True, "rpc": format_addr(n1.rpc)}
    assert await cluster.wait_exit(n1, timeout_s=20.0) == 0


@pytest.mark.slow
async def test_handlers_and_a_config_file_on_real_agents(
    cluster: LocalCluster, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "runs"
    out.mkdir()
    monkeypatch.setenv("OUT", str(out))  # the agents inherit it, and so their handlers
    n1 = cluster.define("n1")
    config = tmp_path / "n1.toml"
    config.write_text(
        f'name = "n1"\nbind = "localhost:{n1.bind[1]}"\nrpc = "127.0.0.1:{n1.rpc[1]}"\n'
        'profile = "local"\nlog_json = true\n'
        "event_handlers = [\n"
        f"  {json.dumps('member-join,member-failed,user:deploy=' + RECORDER)},\n"
        '  "query:uptime=echo up $SWIM_SELF_ROLE",\n'
        "]\n"
        '[tags]\nrole = "file"\ndc = "east"\n'
    )
    n1.args = ["agent", "--config", str(config), "--tag", "role=web"]
    await cluster.start(n1)
    info = await json_at(n1, "info")
    assert info["tags"] == {"role": "web", "dc": "east"}  # the flag overrides the file
    assert info["addr"] == format_addr(n1.bind) and info["profile"] == "local"
    assert len(info["handlers"]["configured"]) == 2
    n2 = await cluster.start(cluster.define("n2", tags={"role": "db"}), join=[n1.bind])
    await cluster.wait_converged(timeout_s=30.0)

    joins = await wait_recorded(out, "member-join")
    n2_lines = [stdin for _, stdin in joins if stdin.startswith(b"n2\t")]
    assert n2_lines == [b"n2\t127.0.0.1\tdb\trole=db\n"]
    env = joins[0][0]
    assert env["SERF_SELF_ROLE"] == env["SWIM_SELF_ROLE"] == "web"
    assert env["SWIM_RPC_ADDR"] == format_addr(n1.rpc)

    assert (await at(n2, "event", "deploy", "v2")).returncode == 0
    ((user_env, user_stdin),) = await wait_recorded(out, "user")
    assert (user_env["SERF_USER_EVENT"], user_env["SWIM_USER_ORIGIN"], user_stdin) == (
        "deploy", "n2", b"v2\n")
    answers = await json_at(n2, "query", "uptime", "--timeout", "3")
    assert answers["responses"] == {"n1": "up web\n"}

    cluster.kill(n2, signal.SIGKILL)
    ((_, failed_stdin),) = await wait_recorded(out, "member-failed", timeout_s=45.0)
    assert failed_stdin == b"n2\t127.0.0.1\tdb\trole=db\n"
    # The handler recorded its input before it exited; its exit is logged just after.
    with trio.move_on_after(20.0):
        while "for member-failed: exit 0" not in n1.log_path.read_text():
            await trio.sleep(0.1)
    log = n1.log_path.read_text()
    assert "for member-failed: exit 0" in log and "answered with 7 bytes" in log


def test_the_help_lists_the_new_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "swim.cli", "--help"], capture_output=True,
                            text=True, check=True, timeout=60)
    assert "join" in result.stdout and "force-leave" in result.stdout
