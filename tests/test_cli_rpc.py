"""The agent's tag encoding and control protocol, in process: an `Agent` over a fake node,
its RPC server on a loopback port, and raw clients that misbehave."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from swim.agent import output, rpc
from swim.agent.agent import Agent, AgentOptions
from swim.agent.tags import (
    MalformedTags,
    TagError,
    UserEvent,
    decode_tags_untrusted,
    decode_user_event_untrusted,
    encode_tags,
    encode_user_event,
    parse_tag_assignment,
    tags_of,
)
from swim.core.errors import ProtocolError
from swim.core.events import Event, MemberFailed, MemberJoined, UserBroadcastReceived
from swim.core.messages import MemberState, MemberStatus
from swim.runtime import KeyReport, QueryStream
from swim.runtime.checks import Check, HealthCheck
from swim.runtime.health import HealthChanged
from swim.security import KeyringError

# ================================================================================ tags


def test_tags_round_trip_compactly() -> None:
    tags = {"role": "web", "zone": "eu-1", "empty": "", "ünï": "cödé"}
    meta = encode_tags(tags)
    assert decode_tags_untrusted(meta) == tags
    assert len(meta) < 2 + sum(len(k.encode()) + len(v.encode()) + 2 for k, v in tags.items()) + 1
    assert encode_tags({}) == b""
    assert decode_tags_untrusted(b"") == {}


def test_tags_too_big_is_a_clear_error() -> None:
    with pytest.raises(TagError, match="at most 512"):
        encode_tags({f"k{i}": "x" * 40 for i in range(20)})


@pytest.mark.parametrize("text", ["novalue", "=v", "a=b=c"])
def test_tag_assignment_parsing(text: str) -> None:
    if text == "a=b=c":
        assert parse_tag_assignment(text) == ("a", "b=c")
    else:
        with pytest.raises(TagError):
            parse_tag_assignment(text)


@pytest.mark.parametrize("meta", [b"plain text", b'{"json": 1}', b"\xff\x01\x05ab", b"\xff"])
def test_foreign_metadata_gives_no_tags(meta: bytes) -> None:
    assert tags_of(meta) == {}
    with pytest.raises(MalformedTags):
        decode_tags_untrusted(meta)


@given(st.binary(max_size=600))
def test_decode_tags_gives_tags_or_one_error(data: bytes) -> None:
    try:
        tags = decode_tags_untrusted(data)
    except MalformedTags:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())


@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: "=" not in k and
       k.isprintable() and k == k.strip()), st.text(max_size=8), max_size=8))
def test_tags_round_trip(tags: dict[str, str]) -> None:
    assert decode_tags_untrusted(encode_tags(tags)) == tags


def test_user_events_carry_a_name_and_a_payload() -> None:
    event = UserEvent("deploy", b"v1.2")
    data = encode_user_event(event)
    assert data == b"\xff\x02\x06deploy" + b"v1.2"
    assert decode_user_event_untrusted(data) == event
    assert decode_user_event_untrusted(encode_user_event(UserEvent("x", b""))) == UserEvent(
        "x", b""
    )
    for data in (b"raw broadcast", b"\xff\x02", b"\xff\x02\x09ab", b"\xff\x02\x00x",
                 b"\xff\x02\x02\xff\xfe", b"\xff\x02\xff\xff\xff\xff\xff\x01"):
        with pytest.raises(MalformedTags):
            decode_user_event_untrusted(data)
    for name in ("", "x" * 256):
        with pytest.raises(TagError):
            encode_user_event(UserEvent(name, b""))


@given(st.binary(max_size=300))
def test_decode_user_event_gives_an_event_or_one_error(data: bytes) -> None:
    for candidate in (data, b"\xff\x02" + data):
        with contextlib.suppress(MalformedTags):
            decode_user_event_untrusted(candidate)


# ================================================================================ agent


@attrs.define(eq=False)
class FakeNode:
    """The parts of `swim.Node` the agent uses."""

    name: str = "n1"
    addr: tuple[str, int] = ("127.0.0.1", 7946)
    meta: bytes = b""
    broadcasts: list[bytes] = attrs.field(factory=list)
    left: bool = False
    send: Any = None
    receive: Any = None

    def __attrs_post_init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[Event](100)

    def members(self) -> list[MemberState]:
        return [
            MemberState(self.name, self.addr, 1, MemberStatus.ALIVE, self.meta),
            MemberState("n2", ("127.0.0.1", 7947), 3, MemberStatus.SUSPECT, b"foreign"),
        ]

    async def events(self) -> AsyncIterator[Event]:
        async for event in self.receive:
            yield event

    async def leave(self, timeout_s: float) -> None:
        self.left = True

    def update_metadata(self, meta: bytes) -> None:
        self.meta = meta

    def update_tags(self, tags: Mapping[str, str]) -> None:
        self.meta = encode_tags(tags)

    # Health checks are exercised with real agents (tests/test_cli_health.py).

    def start_health_check(self, check: Check, **settings: Any) -> HealthCheck:
        raise NotImplementedError("this fake node runs no health checks")

    def health_events(self) -> AsyncIterator[HealthChanged]:
        raise NotImplementedError("this fake node runs no health checks")

    def broadcast(self, payload: bytes) -> int:
        self.broadcasts.append(payload)
        return len(self.broadcasts)

    def stats(self) -> dict[str, Any]:
        return {"probes": 3, "ratio": 0.5, "name": "x"}

    def local_health(self) -> int:
        return 0

    def force_leave(self, name: str) -> bool:
        return False

    def estimate_rtt(self, a: str, b: str | None = None) -> float | None:
        return None

    # Queries and key commands are exercised with real agents (tests/test_cli_queries.py).

    def query(self, name: str, payload: bytes = b"", **filters: Any) -> QueryStream:
        raise ProtocolError("this fake node sends no queries")

    def respond(self, origin: str, query_id: int, payload: bytes = b"") -> None:
        raise ProtocolError("this fake node answers no queries")

    async def install_key(self, key: str, *, timeout_s: float | None = None) -> KeyReport:
        raise KeyringError("encryption is not enabled on this fake node")

    use_key = remove_key = install_key

    async def list_keys(self, *, timeout_s: float | None = None) -> KeyReport:
        raise KeyringError("encryption is not enabled on this fake node")


@attrs.define(eq=False)
class Running:
    agent: Agent
    node: FakeNode
    addr: tuple[str, int]
    out: io.StringIO
    exit_code: list[int]


@pytest.fixture
async def running(nursery: trio.Nursery) -> Running:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    node = FakeNode()
    # Without a token, so raw clients can speak; tests/test_rpc_hardening.py covers auth.
    options = AgentOptions(
        name="n1", bind=node.addr, rpc=("127.0.0.1", port), log_json=True,
        rpc_auth_required=False,
    )
    out, err = io.StringIO(), io.StringIO()
    agent = Agent(options, node, out=out, err=err)
    state = Running(agent, node, ("127.0.0.1", port), out, [])

    async def run() -> None:
        state.exit_code.append(await agent.run(listeners))

    nursery.start_soon(run)
    for _ in range(100):
        try:
            await rpc.call(state.addr, {"cmd": "info"}, timeout_s=1.0)
            break
        except rpc.RpcError:
            await trio.sleep(0.01)
    return state


async def raw_exchange(addr: tuple[str, int], data: bytes) -> list[dict[str, Any]]:
    """Send raw bytes, half-close, read every answer line until the agent closes."""
    stream = await trio.open_tcp_stream(*addr)
    async with stream:
        await stream.send_all(data)
        await stream.send_eof()
        chunks = []
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                chunks.append(chunk)
    return [json.loads(line) for line in b"".join(chunks).splitlines()]


async def test_members_and_info(running: Running) -> None:
    answer = await rpc.call(running.addr, {"cmd": "members"})
    assert answer["members"] == [
        {"name": "n1", "addr": "127.0.0.1:7946", "status": "alive", "incarnation": 1,
         "health": "passing", "health_note": "", "tags": {}},
        {"name": "n2", "addr": "127.0.0.1:7947", "status": "suspect", "incarnation": 3,
         "health": "passing", "health_note": "", "tags": {}},
    ]
    info = await rpc.call(running.addr, {"cmd": "info"})
    assert info["name"] == "n1"
    assert info["members"] == {"alive": 1, "suspect": 1}
    assert info["stats"] == {"probes": 3, "ratio": 0.5}


async def test_malformed_requests_get_errors_and_the_agent_keeps_serving(
    running: Running,
) -> None:
    answers = await raw_exchange(
        running.addr,
        b'not json\n[1, 2]\n{"cmd": 7}\n{"cmd": "bogus"}\n\xff\xfe\n\n{"cmd": "members"}\n',
    )
    assert [a["ok"] for a in answers] == [False, False, False, False, False, True]
    assert "not a JSON line" in answers[0]["error"]
    assert "expected a JSON object" in answers[1]["error"]
    assert 'missing "cmd"' in answers[2]["error"]
    assert "unknown command 'bogus'" in answers[3]["error"]
    answers = await raw_exchange(running.addr, b'{"cmd": "event", "name": 5}\n')
    assert answers == [{"ok": False, "error": '"event" needs "name" and "payload" strings'}]
    answers = await raw_exchange(running.addr, b'{"cmd": "tags", "set": {"a": 1}}\n')
    assert answers[0]["ok"] is False


async def test_an_oversized_request_is_refused_and_closed(running: Running) -> None:
    answers = await raw_exchange(running.addr, b"x" * (rpc.MAX_LINE_BYTES + 10) + b"\n")
    assert len(answers) == 1
    assert "request too large" in answers[0]["error"]
    assert (await rpc.call(running.addr, {"cmd": "info"}))["ok"]


async def test_tags_update_the_metadata(running: Running) -> None:
    answer = await rpc.call(running.addr, {"cmd": "tags", "set": {"role": "db", "x": "1"}})
    assert answer["tags"] == {"role": "db", "x": "1"}
    assert tags_of(running.node.meta) == {"role": "db", "x": "1"}
    answer = await rpc.call(running.addr, {"cmd": "tags", "delete": ["x"]})
    assert tags_of(running.node.meta) == {"role": "db"}
    with pytest.raises(rpc.RpcError, match="at most 512"):
        await rpc.call(running.addr, {"cmd": "tags", "set": {"big": "v" * 600}})
    assert tags_of(running.node.meta) == {"role": "db"}


async def test_an_event_is_broadcast_once_and_answered_with_the_cores_id(
    running: Running,
) -> None:
    answer = await rpc.call(running.addr, {"cmd": "event", "name": "deploy", "payload": "v2"})
    assert running.node.broadcasts == [encode_user_event(UserEvent("deploy", b"v2"))]
    assert answer == {"ok": True, "id": 1}  # FakeNode.broadcast's id
    answer = await rpc.call(running.addr, {"cmd": "event", "name": "x", "payload": ""})
    assert answer["id"] == 2
    await trio.sleep(2.0)  # longer than any resend the agent once made
    assert len(running.node.broadcasts) == 2
    with pytest.raises(rpc.RpcError, match="cannot send event"):
        await rpc.call(running.addr, {"cmd": "event", "name": "", "payload": "p"})
    assert len(running.node.broadcasts) == 2


async def test_events_reach_monitors_as_json_lines(running: Running) -> None:
    async with rpc.connect(running.addr) as conn:
        await conn.monitor()
        events = conn.records()
        n2 = MemberState("n2", ("127.0.0.1", 7947), 4, MemberStatus.DEAD, encode_tags({"a": "b"}))
        received = []
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:

                async def feed() -> None:
                    await trio.sleep(0.1)
                    await running.node.send.send(MemberJoined(member=n2, at=1.0))
                    await running.node.send.send(MemberFailed(member=n2, accuser="n3", at=2.0))
                    data = encode_user_event(UserEvent("deploy", b"v2"))
                    await running.node.send.send(
                        UserBroadcastReceived(origin="n2", id=77, payload=data, at=3.0)
                    )
                    await running.node.send.send(
                        UserBroadcastReceived(origin="n2", id=78, payload=b"raw", at=4.0)
                    )

                nursery.start_soon(feed)
                for _ in range(4):
                    received.append(await events.__anext__())
    assert [r["event"] for r in received] == ["joined", "failed", "user", "user"]
    assert received[1]["accuser"] == "n3"
    assert received[1]["tags"] == {"a": "b"}
    # The core's origin and id, the name and payload from the agent's encoding.
    assert received[2] == {**received[2], "member": "n2", "name": "deploy", "payload": "v2",
                           "id": 77, "incarnation": 3}
    # A broadcast from another application: unnamed, its bytes as the payload.
    assert received[3] == {**received[3], "member": "n2", "name": None, "payload": "raw",
                           "id": 78}
    # Receiving an event never makes the agent broadcast (the core spreads it).
    assert running.node.broadcasts == []
    printed = [json.loads(line) for line in running.out.getvalue().splitlines()]
    assert [p["event"] for p in printed] == ["joined", "failed", "user", "user"]
    assert all(isinstance(p["ts"], float) for p in printed)


def test_human_lines() -> None:
    record = output.event_record(
        MemberFailed(member=MemberState("n2", ("::1", 7), 4, MemberStatus.DEAD),
                     accuser="n3", at=0.0),
        ts=0.0,
    )
    assert record is not None
    line = output.human_line(record)
    assert "failed" in line and "[::1]:7" in line and "accuser=n3" in line


async def test_leave_answers_then_the_agent_exits(running: Running) -> None:
    answer = await rpc.call(running.addr, {"cmd": "leave"})
    assert answer == {"ok": True, "left": True}
    with trio.fail_after(5):
        while not running.exit_code:
            await trio.sleep(0.01)
    assert running.exit_code == [0]
    assert running.node.left


async def test_connections_beyond_the_limit_are_refused(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "MAX_CONNECTIONS", 2)
    streams = [await trio.open_tcp_stream(*running.addr) for _ in range(2)]
    try:
        await trio.sleep(0.1)  # both are being served
        async with await trio.open_tcp_stream(*running.addr) as third:
            with trio.fail_after(5):
                reader = rpc.LineReader(third, 1 << 16)
                line = await reader.read_line()
                assert line is not None
                assert json.loads(line) == {
                    "ok": False, "error": "too many connections; try again later"
                }
                assert await reader.read_line() is None
    finally:
        for stream in streams:
            await stream.aclose()
    with trio.fail_after(5):
        while True:  # the slots free up once the server sees the closes
            answers = await raw_exchange(running.addr, b'{"cmd": "info"}\n')
            if answers[0]["ok"]:
                break
            await trio.sleep(0.01)


async def test_an_idle_connection_is_closed(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "IDLE_TIMEOUT_S", 0.2)
    stream = await trio.open_tcp_stream(*running.addr)
    async with stream:
        with trio.fail_after(5):
            reader = rpc.LineReader(stream, 1 << 16)
            line = await reader.read_line()
            assert line is not None and b"idle for 0.2 s" in line
            assert await reader.read_line() is None


async def test_a_monitor_that_falls_behind_is_cut_off(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "MONITOR_BUFFER", 2)
    channel = running.agent.subscribe()
    for i in range(3):
        await running.node.send.send(
            UserBroadcastReceived(origin="n2", id=i, payload=b"raw", at=float(i))
        )
    with trio.fail_after(5):
        # The agent prints each record, then hands it to the monitors at once.
        while running.out.getvalue().count("\n") < 3:
            await trio.sleep(0.01)
        # Nobody read the channel: it holds the first two and was cut off at the third.
        assert [r["id"] async for r in channel] == [0, 1]
    running.agent.unsubscribe(channel)
