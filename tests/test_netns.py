"""Real `swim agent` processes on hosts of their own: one Linux network namespace per agent,
every namespace wired by a veth pair to one bridge that lives in a namespace of its own,
addresses in 10.213.0.0/24. That subnet exists only inside these namespaces (the root
namespace has no route to it), so no test packet leaves them.

How links are cut. This kernel has no netem, and nftables/iptables may be missing, so a
link is cut on the wire: a permanent neighbour (ARP) entry in the sender's namespace
points the receiver's address at a MAC that no interface has. The sender's frames go to
the bridge, which floods them to ports whose interfaces drop them, so the datagrams and TCP
segments vanish silently and ``sendto`` reports no error, as on a broken link. Deleting the
entry heals the link (ARP resolves the real MAC again). A partition puts such entries on
both sides of every cut pair; a one-way ingress block of X puts one in every other
namespace, for X's address only, so X still sends but hears nothing.

How the agents are driven. Each agent serves RPC on its own namespace's loopback
(127.0.0.1:7373 everywhere, one shared `--rpc-auth` token; its token file goes to a
per-agent XDG_RUNTIME_DIR under tmp_path). The outcome checks run ``swim members --json``
and ``swim info`` inside the namespace (``ip netns exec``). The polls between them use the
same RPC from this process over a socket created inside the namespace: a CLI process per
agent per poll costs ~0.4 s of CPU, and on a small machine that starves the agents into
false suspicions.

Skips (module-level): not Linux, not root, no `ip`, or `ip netns` unable to build a
namespace with a bridge and a veth pair here. Teardown always kills the agents this file
started (by pid: SIGTERM, then SIGKILL) and deletes the namespaces it made, which removes
their links. Every wait is bounded and polls for a state.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import itertools
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import attrs
import pytest
import trio

from swim.agent import rpc
from swim.core import codec
from swim.core.config import Config
from swim.core.messages import Alive, MemberState
from swim.core.timing import suspicion_timeout_min_s
from swim.security import SecurityConfig

# ========================================================================== environment

#: Where `ip netns` keeps its namespaces (iproute2's NETNS_RUN_DIR).
NETNS_DIR = pathlib.Path("/var/run/netns")
#: setns(2) flag for a network namespace.
CLONE_NEWNET = 0x40000000
#: Bound on any one `ip` command.
IP_TIMEOUT_S = 10.0


def _run_ip_sync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )


def _netns_unavailable() -> str | None:
    """Why this machine cannot run these tests, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (run as root)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is not installed"
    if not hasattr(ctypes.CDLL(None), "setns"):
        return "libc has no setns(2)"
    probe = f"swimt-{os.getpid()}-probe"
    try:
        for args in (
            ("netns", "add", probe),
            ("-n", probe, "link", "add", "br0", "type", "bridge"),
            ("-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"),
        ):
            result = _run_ip_sync(*args)
            if result.returncode != 0:
                return f"`ip {' '.join(args)}` failed here: {result.stderr.strip()}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` is unusable here: {exc}"
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _run_ip_sync("netns", "del", probe)
    return None


_reason = _netns_unavailable()
if _reason is not None:
    pytest.skip(_reason, allow_module_level=True)

pytestmark = [pytest.mark.netns, pytest.mark.slow]

# ================================================================================ timing

#: The LAN profile, memberlist's default. Not `local`: there a suspicion not confirmed in
#: time runs to 18 s, longer than the 15 s a dead member stays in the table, so by the time
#: the last member of a side declares the other side dead, the first may have forgotten
#: them, and the heal waits for a push-pull or reconnect attempt (every 15 s and 30 s;
#: seen taking 20 s). With `lan`, a dead
#: member stays 30 s and the longest suspicion is 24 s: when the partition heals, every
#: side still gossips to the dead, who hear it and refute at once.
PROFILE = "lan"
CONFIG = Config.profile(PROFILE)
#: Every agent's gossip port and RPC address (each in its own namespace).
GOSSIP_PORT = 7946
RPC_HOST, RPC_PORT = "127.0.0.1", 7373
TOKEN = "netns-test-token"
#: A MAC no interface of the test network has (each host's eth0 is 02:13:00:00:00:<i>).
NOWHERE_MAC = "02:13:00:00:00:00"
SUBNET = "10.213.0"

#: How long an agent may take to answer RPC after it was started.
START_BOUND_S = 20.0
#: Bound on one `swim` client command (its own RPC timeout is 30 s).
CLI_BOUND_S = 40.0
#: Joins and refutations spread by gossip within a few gossip rounds; push-pull repairs
#: the rest. Generous for a loaded machine.
CONVERGE_BOUND_S = 30.0


def fail_bound_s(n: int) -> float:
    """Upper bound on the time for every member to declare a cut-off member failed.

    Round-robin probing reaches each member within n-1 probe periods; the suspicion then
    starts at Lifeguard's maximum timeout (suspicion_max_timeout_mult times the minimum)
    and only shrinks with confirmations. Half as much again, plus 5 s for gossip and a
    loaded machine (lan profile, n=6: 1.5 * (5 * 1 + 24) + 5 = 48.5 s).
    """
    suspicion_min_s = suspicion_timeout_min_s(CONFIG.suspicion_mult, n, CONFIG.probe_interval_s)
    suspicion_max_s = CONFIG.suspicion_max_timeout_mult * suspicion_min_s
    return 1.5 * ((n - 1) * CONFIG.probe_interval_s + suspicion_max_s) + 5.0


#: Upper bound on a heal: the failed side learns it was declared dead from the gossip
#: still sent to the dead (gossip_to_the_dead_s) and refutes; failing that, the next
#: push-pull or reconnect attempt (reconnect_interval_s) merges the tables.
HEAL_BOUND_S = max(CONFIG.push_pull_interval_s, CONFIG.reconnect_interval_s) + 10.0

# ============================================================================ namespaces


class NetnsError(Exception):
    """An `ip` command failed, or an agent did not start."""


_labs = itertools.count(1)


async def ip(*args: str) -> None:
    """Run `ip ARGS...`; raise `NetnsError` with its stderr if it fails."""
    with trio.fail_after(IP_TIMEOUT_S):
        result = await trio.run_process(
            ["ip", *args], capture_stdout=True, capture_stderr=True, check=False
        )
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")


def socket_in(netns: str, kind: socket.SocketKind) -> socket.socket:
    """A socket that lives in network namespace `netns`.

    A short-lived thread enters the namespace, makes the socket and leaves; a socket keeps
    the namespace it was made in, and the rest of this process never moves.
    """
    made: list[socket.socket] = []
    failed: list[BaseException] = []
    libc = ctypes.CDLL(None, use_errno=True)

    def enter(fd: int) -> None:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")

    def work() -> None:
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                target = os.open(NETNS_DIR / netns, os.O_RDONLY)
                try:
                    enter(target)
                    try:
                        made.append(socket.socket(socket.AF_INET, kind))
                    finally:
                        enter(home)
                finally:
                    os.close(target)
            finally:
                os.close(home)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=work, name=f"socket-in-{netns}", daemon=True)
    thread.start()
    thread.join(5.0)
    if failed:
        raise failed[0]
    if not made:
        raise NetnsError(f"could not make a socket in {netns}")
    return made[0]


@attrs.define(eq=False)
class Host:
    """One namespace on the test network and the agent that runs in it."""

    index: int
    netns: str
    log_path: pathlib.Path
    run_dir: pathlib.Path
    process: trio.Process | None = None

    @property
    def name(self) -> str:
        return f"n{self.index}"

    @property
    def ip(self) -> str:
        return f"{SUBNET}.{self.index}"

    @property
    def mac(self) -> str:
        return f"02:13:00:00:00:{self.index:02x}"

    @property
    def gossip(self) -> str:
        return f"{self.ip}:{GOSSIP_PORT}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def records(self) -> list[dict[str, Any]]:
        """The event records the agent printed (``--log-json``)."""
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"event"' in line:
                records.append(json.loads(line))
        return records

    def failed(self) -> set[str]:
        """The members this agent has declared failed, by its log."""
        return {r["member"] for r in self.records() if r["event"] == "failed"}

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])


class Lab:
    """Namespaces on one bridge, the agents in them, and the link cuts between them."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.prefix = f"swimt-{os.getpid()}-{next(_labs)}"
        self.bridge_ns = f"{self.prefix}-br"
        #: Every namespace this lab created (deleted at close, whatever happened).
        self.namespaces: list[str] = []
        self.hosts: list[Host] = []
        #: (namespace, address) of every neighbour entry pointing at NOWHERE_MAC.
        self.cuts: set[tuple[str, str]] = set()

    async def _add_netns(self, name: str) -> None:
        await ip("netns", "add", name)
        self.namespaces.append(name)
        await ip("-n", name, "link", "set", "lo", "up")

    async def build(self, count: int) -> list[Host]:
        """`count` hosts, 10.213.0.1 .. 10.213.0.count, all on one bridge."""
        await self._add_netns(self.bridge_ns)
        await ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        await ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        for index in range(1, count + 1):
            host = Host(
                index,
                f"{self.prefix}-{index}",
                self.workdir / f"n{index}.log",
                self.workdir / f"run-n{index}",
            )
            await self._add_netns(host.netns)
            port = f"p{index}"
            # Both ends are made directly in their namespaces: nothing in the root one.
            await ip(
                "link", "add", port, "netns", self.bridge_ns, "type", "veth",
                "peer", "name", "eth0", "address", host.mac, "netns", host.netns,
            )
            await ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
            await ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            await ip("-n", host.netns, "link", "set", "eth0", "up")
            self.hosts.append(host)
        return self.hosts

    # ------------------------------------------------------------------------ link cuts

    async def _cut(self, sender: Host, receiver: Host) -> None:
        """`sender`'s packets to `receiver` go nowhere from now on."""
        await ip(
            "-n", sender.netns, "neigh", "replace", receiver.ip,
            "lladdr", NOWHERE_MAC, "dev", "eth0", "nud", "permanent",
        )
        self.cuts.add((sender.netns, receiver.ip))

    async def partition(self, left: Sequence[Host], right: Sequence[Host]) -> None:
        """Cut every link between the two groups, both ways."""
        for a in left:
            for b in right:
                await self._cut(a, b)
                await self._cut(b, a)

    async def block_ingress(self, host: Host) -> None:
        """`host` still sends to everyone, but nothing anyone sends reaches it."""
        for other in self.hosts:
            if other is not host:
                await self._cut(other, host)

    async def heal(self) -> None:
        """Remove every cut: ARP finds the real addresses again."""
        for netns, addr in sorted(self.cuts):
            await ip("-n", netns, "neigh", "del", addr, "dev", "eth0")
        self.cuts.clear()

    # -------------------------------------------------------------------------- agents

    async def start(
        self, host: Host, *, join: Iterable[Host] = (), extra: Sequence[str] = ()
    ) -> None:
        """Start `host`'s agent (joining through `join`) and wait until it answers RPC."""
        host.run_dir.mkdir(mode=0o700, exist_ok=True)
        args = [
            "agent", "--name", host.name, "--bind", host.gossip,
            "--rpc", f"{RPC_HOST}:{RPC_PORT}", "--rpc-auth", TOKEN,
            "--profile", PROFILE, "--log-json", *extra,
        ]
        for seed in join:
            args += ["--join", seed.gossip]
        env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_RUNTIME_DIR=str(host.run_dir))
        with host.log_path.open("ab") as log:
            # `ip netns exec` execs the command, so the pid is the agent's own.
            host.process = await trio.lowlevel.open_process(
                ["ip", "netns", "exec", host.netns, sys.executable, "-m", "swim.cli", *args],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )
        deadline = trio.current_time() + START_BOUND_S
        while trio.current_time() < deadline:
            if not host.running:
                raise NetnsError(f"{host.name} exited at start:\n{host.log_tail()}")
            try:
                await self.rpc(host, "info")
                return
            except (rpc.RpcError, OSError, trio.TooSlowError):
                await trio.sleep(0.1)
        raise NetnsError(f"{host.name} did not answer RPC in {START_BOUND_S:g} s")

    async def start_cluster(self, hosts: Sequence[Host], extra: Sequence[str] = ()) -> None:
        """The first host, then the rest at once, each joining through the first."""
        await self.start(hosts[0], extra=extra)
        async with trio.open_nursery() as nursery:
            for host in hosts[1:]:
                nursery.start_soon(self._start_joining, host, hosts[0], extra)

    async def _start_joining(self, host: Host, seed: Host, extra: Sequence[str]) -> None:
        await self.start(host, join=[seed], extra=extra)

    async def rpc(self, host: Host, cmd: str) -> dict[str, Any]:
        """One RPC request to `host`'s agent, over a socket inside its namespace."""
        sock = trio.socket.from_stdlib_socket(socket_in(host.netns, socket.SOCK_STREAM))
        with trio.fail_after(5.0):
            try:
                await sock.connect((RPC_HOST, RPC_PORT))
            except BaseException:
                sock.close()
                raise
            async with trio.SocketStream(sock) as stream:
                conn = rpc.RpcConnection(stream, (RPC_HOST, RPC_PORT), TOKEN)
                answer: dict[str, Any] = await conn.call({"cmd": cmd})
                return answer

    async def statuses(self, host: Host) -> dict[str, str]:
        """{member: status} in `host`'s view ({} if it does not answer)."""
        try:
            answer = await self.rpc(host, "members")
        except (rpc.RpcError, OSError, trio.TooSlowError):
            return {}
        return {m["name"]: m["status"] for m in answer["members"]}

    async def views(self, hosts: Sequence[Host]) -> dict[str, dict[str, str]]:
        """Every host's view, asked at once."""
        seen: dict[str, dict[str, str]] = {}

        async def ask(host: Host) -> None:
            seen[host.name] = await self.statuses(host)

        async with trio.open_nursery() as nursery:
            for host in hosts:
                nursery.start_soon(ask, host)
        return seen

    async def wait_views(
        self,
        expected: Mapping[str, Mapping[str, frozenset[str]]],
        timeout_s: float,
        what: str,
        poll_s: float = 0.25,
    ) -> float:
        """Poll until each named host's view gives each named member one of the wanted
        statuses (``"absent"``: not listed). Returns the seconds it took; on timeout fails
        the test with every view that was still wrong and the end of those agents' logs.
        """
        by_name = {h.name: h for h in self.hosts}
        hosts = [by_name[name] for name in expected]
        started = trio.current_time()
        wrong: dict[str, dict[str, str]] = {}
        while True:
            views = await self.views(hosts)
            wrong = {
                name: views[name]
                for name, want in expected.items()
                if any(views[name].get(m, "absent") not in ok for m, ok in want.items())
            }
            elapsed = trio.current_time() - started
            if not wrong:
                print(f"{what}: {elapsed:.1f} s")
                return elapsed
            if elapsed > timeout_s:
                break
            await trio.sleep(poll_s)
        logs = "\n".join(f"  {name}:\n{by_name[name].log_tail()}" for name in sorted(wrong))
        pytest.fail(
            f"{what}: not within {timeout_s:g} s; views still wrong: {wrong}\n{logs}",
            pytrace=False,
        )

    async def swim(self, host: Host, *args: str) -> Any:
        """``swim ARGS`` run inside `host`'s namespace; its output decoded as JSON."""
        command = [
            "ip", "netns", "exec", host.netns, sys.executable, "-m", "swim.cli", *args,
            "--rpc", f"{RPC_HOST}:{RPC_PORT}", "--rpc-auth", TOKEN,
        ]
        started = trio.current_time()
        with trio.move_on_after(CLI_BOUND_S):
            result = await trio.run_process(
                command, capture_stdout=True, capture_stderr=True, check=False
            )
            assert result.returncode == 0, (host.name, result.stderr.decode(errors="replace"))
            return json.loads(result.stdout)
        pytest.fail(
            f"`swim {' '.join(args)}` in {host.name}'s namespace did not finish within "
            f"{CLI_BOUND_S:g} s (started {trio.current_time() - started:.1f} s ago)\n"
            f"{host.log_tail()}",
            pytrace=False,
        )

    async def members_cli(self, hosts: Sequence[Host]) -> dict[str, dict[str, str]]:
        """`swim members --json` in each host's namespace: {host: {member: status}}."""
        seen: dict[str, dict[str, str]] = {}

        async def ask(host: Host) -> None:
            members = await self.swim(host, "members", "--json")
            seen[host.name] = {m["name"]: m["status"] for m in members}

        async with trio.open_nursery() as nursery:
            for host in hosts:
                nursery.start_soon(ask, host)
        return seen

    # ------------------------------------------------------------------------ teardown

    async def close(self) -> None:
        """Stop every agent this lab started (SIGTERM, then SIGKILL), then delete every
        namespace it made, which removes the bridge and the veth pairs with them."""
        running = [h.process for h in self.hosts if h.process is not None and h.running]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        with trio.move_on_after(5.0):
            for process in running:
                await process.wait()
        for process in running:
            if process.returncode is None:
                process.kill()
                with trio.move_on_after(5.0):
                    await process.wait()
        errors = []
        for netns in reversed(self.namespaces):
            try:
                await ip("netns", "del", netns)
            except (NetnsError, OSError, trio.TooSlowError) as exc:
                errors.append(str(exc))
        self.namespaces.clear()
        if errors:
            raise NetnsError("teardown: " + "; ".join(errors))


@pytest.fixture
async def lab(tmp_path: pathlib.Path) -> AsyncIterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        with trio.CancelScope(shield=True):
            await lab.close()


def everyone(hosts: Iterable[Host], status: str = "alive") -> dict[str, frozenset[str]]:
    return {h.name: frozenset({status}) for h in hosts}


def all_alive(hosts: Sequence[Host]) -> dict[str, dict[str, str]]:
    """What `members_cli` shows when every host sees every host alive."""
    return {h.name: {m.name: "alive" for m in hosts} for h in hosts}


#: Declared failed: dead, or already reaped from the table (gossip_to_the_dead_s after).
FAILED = frozenset({"dead", "absent"})

# ============================================================================= scenarios


async def test_partition_3_3_each_side_fails_the_other_then_heals(lab: Lab) -> None:
    hosts = await lab.build(6)
    await lab.start_cluster(hosts)
    await lab.wait_views({h.name: everyone(hosts) for h in hosts}, CONVERGE_BOUND_S,
                         "6 agents converged")

    left, right = hosts[:3], hosts[3:]

    def across(h: Host) -> Sequence[Host]:
        return right if h in left else left

    await lab.partition(left, right)
    expected = {
        h.name: {**everyone(m for m in hosts if m not in across(h)),
                 **{m.name: FAILED for m in across(h)}}
        for h in hosts
    }
    await lab.wait_views(expected, fail_bound_s(6), "3|3: each side declared the other dead")
    for h in hosts:
        # Its own log says it declared every member across the cut failed (the entry may
        # have been reaped since).
        assert h.failed() >= {m.name for m in across(h)}, (h.name, h.failed())

    await lab.heal()
    await lab.wait_views({h.name: everyone(hosts) for h in hosts}, HEAL_BOUND_S,
                         "healed: all 6 alive everywhere")
    assert await lab.members_cli(hosts) == all_alive(hosts)
    assert all(h.running for h in hosts)


async def test_a_member_that_hears_nothing_is_failed_then_rejoins(lab: Lab) -> None:
    """One-way ingress block: X's datagrams and TCP segments still reach the others, but
    nothing reaches X. The others' probes of X go unanswered (X never sees them), their
    helpers' ping-reqs too, and X never hears the suspicion, so it cannot refute: every
    other member declares X dead. X's own probes get no acks or nacks either: its local
    health score rises and it suspects the others. Its suspicions do reach them, and they
    refute, but X never hears that either. Unblocked, X hears of its death and refutes."""
    hosts = await lab.build(5)
    *others, deaf = hosts
    await lab.start_cluster(hosts)
    await lab.wait_views({h.name: everyone(hosts) for h in hosts}, CONVERGE_BOUND_S,
                         "5 agents converged")

    await lab.block_ingress(deaf)
    await lab.wait_views({h.name: {deaf.name: FAILED, **everyone(others)} for h in others},
                         fail_bound_s(5), f"the others declared {deaf.name} dead")
    assert all(deaf.name in h.failed() for h in others)
    # X's own view is wrong: it never learnt it was declared dead, and it doubts
    # (suspects, or has declared dead) others who are all fine.
    view = await lab.statuses(deaf)
    assert view[deaf.name] == "alive", view
    doubted = {name for name, status in view.items() if status != "alive"}
    assert doubted, f"{deaf.name} heard nothing yet doubts nobody: {view}"
    assert doubted <= {h.name for h in others}
    info = await lab.swim(deaf, "info")
    assert info["health"] > 0, info
    print(f"{deaf.name} while deaf: doubts {sorted(doubted)}, health {info['health']}")

    await lab.heal()
    await lab.wait_views({h.name: everyone(hosts) for h in hosts}, HEAL_BOUND_S,
                         f"unblocked: {deaf.name} rejoined, all 5 alive everywhere")
    assert await lab.members_cli(hosts) == all_alive(hosts)
    # It came back by refuting its death: a higher incarnation than the one it died at.
    members = {m["name"]: m for m in await lab.swim(others[0], "members", "--json")}
    assert members[deaf.name]["incarnation"] > 0, members[deaf.name]


async def agent_help() -> str:
    with trio.fail_after(CLI_BOUND_S):
        result = await trio.run_process(
            [sys.executable, "-m", "swim.cli", "agent", "--help"],
            capture_stdout=True, capture_stderr=True, check=False,
        )
    return result.stdout.decode(errors="replace")


async def refused_plaintext(lab: Lab, hosts: Sequence[Host]) -> dict[str, int]:
    """{host: packets and frames its agent refused as plaintext}, over RPC."""
    counts = {}
    for h in hosts:
        security = (await lab.rpc(h, "info"))["security"]
        # Nothing is refused for another reason: the stranger shares the (empty) label.
        assert security["rejected_total"] == security["rejected"]["plaintext_refused"], security
        counts[h.name] = int(security["rejected_total"])
    return counts


async def test_a_plaintext_stranger_never_enters_an_encrypted_cluster(lab: Lab) -> None:
    if "--encrypt" not in await agent_help():
        pytest.skip("`swim agent` has no --encrypt flag yet (issue 8, item 1)")
    hosts = await lab.build(4)
    *members, stranger = hosts
    key = base64.b64encode(os.urandom(32)).decode()
    await lab.start_cluster(members, extra=["--encrypt", key])
    await lab.wait_views({h.name: everyone(members) for h in members}, CONVERGE_BOUND_S,
                         "3 encrypted agents converged")
    assert await refused_plaintext(lab, members) == {h.name: 0 for h in members}

    # The stranger: a real agent without the key, joining through every member (a TCP
    # push-pull each, retried with backoff), and plaintext gossip from its address: an
    # Alive about a member of its own, over UDP to every member's gossip port, sealed as
    # a keyless member seals it (checksum, no key).
    await lab.start(stranger, join=members)
    sealer = SecurityConfig().sealer(sender_id=b"stranger", random_bytes=os.urandom)
    phantom = MemberState("phantom", (stranger.ip, GOSSIP_PORT + 1), 0)
    rounds = 5
    udp = trio.socket.from_stdlib_socket(socket_in(stranger.netns, socket.SOCK_DGRAM))
    with udp:
        for _ in range(rounds):
            for member in members:
                datagram = sealer.seal(codec.encode([Alive(phantom)]), now=time.time())
                await udp.sendto(datagram, (member.ip, GOSSIP_PORT))
            await trio.sleep(0.2)

    # Every member refuses all of the gossip, and the join attempts that reach it, while
    # the stranger and its phantom appear in no table.
    refused: dict[str, int] = {}
    deadline = trio.current_time() + 10.0
    while trio.current_time() < deadline:
        views = await lab.views(members)
        assert views == all_alive(members), views
        refused = await refused_plaintext(lab, members)
        # More than the gossip alone: at least one join attempt was refused too.
        if min(refused.values()) >= rounds and sum(refused.values()) > rounds * len(members):
            break
        await trio.sleep(0.25)
    print(f"plaintext refused per member: {refused}")
    assert min(refused.values()) >= rounds, refused
    assert sum(refused.values()) > rounds * len(members), refused

    # The stranger is still running, retrying, alone in its own table; its log says why.
    assert stranger.running
    assert set(await lab.statuses(stranger)) == {stranger.name}
    assert "join through" in stranger.log_path.read_text(), stranger.log_tail()
    # And the cluster is healthy, as `swim members` shows in every member's namespace.
    assert await lab.members_cli(members) == all_alive(members)
    shown = await lab.swim(members[0], "info")
    assert shown["security"]["encrypted"] is True
    assert shown["security"]["rejected"]["plaintext_refused"] >= refused[members[0].name]
