"""Encryption, labels and the rolling upgrade as an operator meets them: `swim keygen` and
real `swim agent` processes on 127.0.0.1 (free ports, local profile), driven through the
command line and RPC, attacked from a raw UDP socket and a rogue transport.

Every wait is bounded and polls for a state; every process is stopped in teardown.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from swim.agent import rpc
from swim.agent.cluster import AgentProcess, LocalCluster, agent_command, free_port
from swim.agent.output import format_addr
from swim.core import codec
from swim.core.messages import Alive, Dead, MemberState, MemberStatus, PushPull, UserBroadcast
from swim.security import Keyring, Sealer, SecurityConfig, decode_key, load_keyring
from transport.base import Address, TransportError
from transport.udp import open_udp_tcp_transport

pytestmark = pytest.mark.slow

KEY = "QHOYjmYlxSCBhdfiolhtDVJ6TWY0Y3iE5xDrkbhnsBk="  # 32 bytes, base64
OTHER_KEY = "daZ2wnuw+Ql+2hCm7vQB6KhHjzsmS4LeTbAQ2HAt8Gg="
LABEL = "prod"


@pytest.fixture
async def cluster(tmp_path: pathlib.Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster.open(tmp_path / "agents", profile="local") as c:
        yield c


async def swim(*args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[bytes]:
    """Run `swim ARGS...` to completion, output captured."""
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            [*agent_command(), *args], capture_stdout=True, capture_stderr=True, check=False
        )


async def info(agent: AgentProcess) -> dict[str, Any]:
    answer: dict[str, Any] = await rpc.call(agent.rpc, {"cmd": "info"}, timeout_s=5.0)
    return answer


def logged_events(agent: AgentProcess) -> list[dict[str, Any]]:
    """The membership records an agent printed (``--log-json``), all its runs."""
    records = []
    for line in agent.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"event"' in line:
            records.append(json.loads(line))
    return records


def agent_args(name: str, *extra: str) -> list[str]:
    return ["agent", "--name", name, "--bind", f"127.0.0.1:{free_port()}",
            "--rpc", f"127.0.0.1:{free_port()}", "--profile", "local", *extra]


# ============================================================================ keygen


async def test_keygen_prints_a_key_and_writes_a_private_keyring_file(
    tmp_path: pathlib.Path,
) -> None:
    result = await swim("keygen")
    assert result.returncode == 0
    assert len(decode_key(result.stdout.decode())) == 32

    path = tmp_path / "keyring.json"
    result = await swim("keygen", "--keyring-file", str(path))
    assert result.returncode == 0, result.stderr
    assert (path.stat().st_mode & 0o777) == 0o600
    ring = load_keyring(path)
    assert len(ring) == 1 and ring.primary  # the key itself was not printed
    assert result.stdout.decode().count("\n") == 1
    assert json.loads(path.read_text())[0] not in result.stdout.decode()

    again = await swim("keygen", "--keyring-file", str(path))
    assert again.returncode == 1
    assert again.stderr.decode().strip() == (
        f"swim keygen: {path} already exists; not overwriting a keyring "
        "(remove it first, or choose another path)"
    )
    assert load_keyring(path).keys == ring.keys


# ========================================================================= bad input


async def test_a_bad_key_is_a_usage_error_that_does_not_echo_it() -> None:
    secret = "c2VjcmV0LWJ1dC10b28tc2hvcnQ="  # valid base64, 21 bytes
    for bad in (secret, "not base64!"):
        result = await swim(*agent_args("x", "--encrypt", bad))
        assert result.returncode == 2
        err = result.stderr.decode()
        assert "swim agent: error: argument --encrypt: key text" in err
        assert bad not in err
    both = await swim(*agent_args("x", "--encrypt", KEY, "--keyring-file", "/nonexistent"))
    assert both.returncode == 2 and b"not allowed with argument" in both.stderr


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (json.dumps([KEY]), 0o640, "has mode 0640, so group or others can access it"),
        (json.dumps([KEY]), 0o604, "has mode 0604, so group or others can access it"),
        ("[\"QHOY\"", 0o600, "is not JSON"),
        ("[]", 0o600, "holds no keys"),
        (json.dumps(["c2hvcnQ="]), 0o600, "item 0: key text decodes to 5 bytes"),
        (None, 0o600, "cannot open keyring file"),
    ],
    ids=["group-readable", "world-readable", "not-json", "empty", "short-key", "missing"],
)
async def test_a_bad_keyring_file_is_a_one_line_error(
    tmp_path: pathlib.Path, content: str | None, mode: int, message: str
) -> None:
    path = tmp_path / "keyring.json"
    if content is not None:
        path.write_text(content)
        os.chmod(path, mode)
    result = await swim(*agent_args("x", "--keyring-file", str(path)))
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("swim agent: --keyring-file: ")
    assert str(path) in lines[0] and message in lines[0]


async def test_plaintext_switches_without_a_key_are_refused() -> None:
    for switch in ("--accept-plaintext", "--send-plaintext"):
        result = await swim(*agent_args("x", switch))
        assert result.returncode == 1
        assert result.stderr.decode().strip() == (
            "swim agent: --accept-plaintext and --send-plaintext need a key "
            "(--encrypt or --keyring-file)"
        )


# ====================================================================== live agents


def forged_datagrams(victim: dict[str, Any], sealer: Sealer) -> list[bytes]:
    """A stranger's attempts to rewrite the view: a phantom, a death, a broadcast."""
    phantom = MemberState("phantom", ("127.0.0.1", 9), 0)
    messages: list[list[Any]] = [
        [Alive(phantom)],
        [Dead(victim["name"], victim["incarnation"] + 3, "stranger")],
        [UserBroadcast("stranger", 4242, b"forged")],
    ]
    return [sealer.seal(codec.encode(m), now=time.time()) for m in messages]


async def send_forgeries(target: AgentProcess, victim: dict[str, Any], sealer: Sealer) -> int:
    """Datagrams over a raw UDP socket and a push-pull frame over TCP; packets sent."""
    datagrams = forged_datagrams(victim, sealer)
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        for data in datagrams:
            await sock.sendto(data, target.bind)

    async def no_streams(data: bytes, src: Address) -> bytes | None:
        return None

    state = MemberState(victim["name"], ("127.0.0.1", 9), victim["incarnation"] + 7,
                        MemberStatus.DEAD)
    frame = codec.encode([PushPull(join=True, members=(state,))])
    async with open_udp_tcp_transport(("127.0.0.1", 0), no_streams) as rogue:
        with pytest.raises(TransportError):
            await rogue.request(target.bind, sealer.seal(frame, now=time.time()), timeout_s=5.0)
    return len(datagrams) + 1


def stranger(security: SecurityConfig) -> Sealer:
    return security.sealer(sender_id=b"stranger", random_bytes=os.urandom)


async def test_an_encrypted_cluster_converges_ignores_strangers_and_detects_a_crash(
    cluster: LocalCluster,
) -> None:
    flags = ["--encrypt", KEY, "--label", LABEL]
    n1, n2, n3 = [cluster.define(f"n{i}", extra_args=flags) for i in (1, 2, 3)]
    await cluster.start(n1)
    await cluster.start(n2, join=[n1.bind])
    await cluster.start(n3, join=[n1.bind])
    await cluster.wait_converged(timeout_s=30.0)

    result = await swim("info", "--rpc", format_addr(n1.rpc))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["security"]["encrypted"] is True
    assert shown["security"]["label"] == LABEL
    assert shown["security"]["send_plaintext"] is False
    assert shown["security"]["rejected_total"] == 0
    assert shown["stats"]["security.sealed"] > 0
    assert shown["stats"]["security.sent_plaintext"] == 0
    assert "encrypted, label 'prod'" in n1.log_path.read_text()

    # A keyless stranger, one with another key and one with another label, each sending
    # forged news to n1: nothing changes, and each is counted under its reason.
    victim = next(m for m in (await cluster.members(n1)) if m["name"] == "n2")
    before = await cluster.statuses(n1)
    events_before = len(logged_events(n1))
    sent = {}
    for reason, security in (
        ("plaintext_refused", SecurityConfig(label=LABEL)),
        ("unauthenticated", SecurityConfig(keyring=Keyring(decode_key(OTHER_KEY)), label=LABEL)),
        ("wrong_label", SecurityConfig(keyring=Keyring(decode_key(KEY)), label="staging")),
    ):
        sent[reason] = await send_forgeries(n1, victim, stranger(security))
    await trio.sleep(2.0)
    rejected = (await info(n1))["security"]["rejected"]
    assert {reason: rejected[reason] for reason in sent} == sent
    assert await cluster.statuses(n1) == before
    assert len(logged_events(n1)) == events_before

    # A plaintext agent pointed at the cluster stays outside it.
    outsider = cluster.define("outsider")
    await cluster.start(outsider, join=[n1.bind])
    await trio.sleep(3.0)
    assert set(await cluster.statuses(outsider)) == {"outsider"}
    assert "outsider" not in await cluster.statuses(n1)

    cluster.kill(n3, signal.SIGKILL)
    for observer in (n1, n2):
        await cluster.wait_until(observer, {"n3": "dead"}, timeout_s=45.0)


async def test_agent_clusters_with_different_labels_stay_apart(cluster: LocalCluster) -> None:
    a1, a2 = (cluster.define(f"a{i}", extra_args=["--label", "alpha"]) for i in (1, 2))
    b1 = cluster.define("b1", extra_args=["--label", "beta"])
    await cluster.start(a1)
    await cluster.start(a2, join=[a1.bind])
    await cluster.start(b1, join=[a1.bind])  # pointed at the wrong cluster
    await cluster.wait_until(a2, {"a1": "alive", "a2": "alive"}, timeout_s=30.0)
    await trio.sleep(3.0)
    assert set(await cluster.statuses(a1)) == {"a1", "a2"}
    assert set(await cluster.statuses(b1)) == {"b1"}
    security = (await info(a1))["security"]
    assert security["label"] == "alpha" and security["encrypted"] is False
    assert security["rejected"]["wrong_label"] > 0


async def test_rolling_upgrade_of_live_agents_without_a_false_failure(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    """Plaintext -> keys with --accept-plaintext --send-plaintext -> --accept-plaintext ->
    strict, one agent restarted at a time; nobody is ever reported failed or suspect."""
    keyring = tmp_path / "keyring.json"
    assert (await swim("keygen", "--keyring-file", str(keyring))).returncode == 0
    agents = [cluster.define(f"n{i}") for i in (1, 2, 3)]
    base = {agent.name: list(agent.args) for agent in agents}
    await cluster.start(agents[0])
    for agent in agents[1:]:
        await cluster.start(agent, join=[agents[0].bind])
    await cluster.wait_converged(timeout_s=30.0)

    steps = [
        ["--keyring-file", str(keyring), "--accept-plaintext", "--send-plaintext"],
        ["--keyring-file", str(keyring), "--accept-plaintext"],
        ["--keyring-file", str(keyring)],
    ]
    for flags in steps:
        for agent in agents:
            cluster.kill(agent, signal.SIGTERM)  # a graceful leave
            assert await cluster.wait_exit(agent, timeout_s=20.0) == 0
            agent.args = [*base[agent.name], *flags]
            seed = next(a for a in agents if a is not agent)
            await cluster.start(agent, join=[seed.bind])
            await cluster.wait_converged(timeout_s=30.0)

    await trio.sleep(2.0)
    await cluster.wait_converged(timeout_s=30.0)
    for agent in agents:
        security = (await info(agent))["security"]
        assert security["encrypted"] and not security["accept_plaintext"]
        assert security["rejected_total"] == 0
        stats = (await info(agent))["stats"]
        assert stats["security.sent_plaintext"] == 0 and stats["security.opened_plaintext"] == 0
    for agent in agents:
        bad = [r for r in logged_events(agent) if r["event"] in ("failed", "suspect")]
        assert bad == [], (agent.name, bad)
        modes = [
            json.loads(line)["log"].split("profile local, ")[1]
            for line in agent.log_path.read_text().splitlines()
            if '"running: ' in line
        ]
        assert modes == [
            "no encryption",
            "keys loaded, sending plaintext, accepting plaintext",
            "encrypted, accepting plaintext",
            "encrypted",
        ], modes
