"""Fuzzing a running node through the real transport (issue 8, item 4).

    python -m benchmarks.fuzz_node [--count N] [--seed S] [--members M] [--jobs J]
        [--variant plaintext|encrypted|both] [--stream-share F] [--batch B] [--json]

The cluster: ``--members`` (4) real `swim.Node`s in one trio run, on 127.0.0.1 over real
UDP and TCP (`transport.udp`, with the limits `swim.Node` gives its default transport),
every peer joined through the *target*. The fuzzer runs in the same trio run but reaches
the target only through the kernel: datagrams from its own UDP socket, stream frames
(4-byte length prefix) over TCP connections of its own, all bound to 127.0.0.2, so its
traffic is told apart from the members' by source address. Two variants, half of the
inputs each, by default each in a process of its own running at the same time
(``--jobs``): a plaintext cluster (label and CRC-32) and an encrypted one (AES-256-GCM,
one shared key). The input classes, the outcomes each may have and how they are made
from captured traffic are in `benchmarks._fuzz_inputs`.

Every member's transport is wrapped in a pass-through tap that records what members send
each other, and the target's receive path is watched so that each single input's outcome
is known (`benchmarks._fuzz_probe`). Datagrams go out in batches of ``--batch`` (32),
each once the target has taken in the last, so the socket buffer does not overflow; one
that never arrives is counted as lost and must show in a drop counter. Stream connections
(``--stream-share``, 2 %) run alongside, 8 at a time; each closes with a reset.

Reported per variant: inputs and their outcomes by class, and every input whose outcome
its class does not allow (with its bytes); crashes (an exception out of a node, the
datagram it was handling, a stream handler raising, anything logged at warning level);
member tables of every node before and after (no member may appear or vanish, no status
or incarnation change); events on the target and on the peers while fuzzed (none
expected); the target's counters over the flood by layer and reason (sealer, codec,
transport, kernel drops), checked against the outcomes (every rejection is one input's,
every connection the transport cut off an input meant to be); RSS of the process before
and after; inputs per second. Then a peer is crashed (cancelled, no leave) and the time
until the target suspects it and declares it failed is compared with the protocol's bound.

Default: 1,000,000 inputs, 20,000 of them connections (a few minutes on two cores).
Exits 1 if anything was found. Traffic goes to 127.0.0.1 only; every task and process
started ends with the run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import pathlib
import random
import socket as stdlib_socket
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Final

import attrs
import trio

from benchmarks._fuzz_inputs import (
    HUNG,
    LABEL,
    TRANSPORT,
    Captures,
    Datagram,
    Inputs,
    Stream,
    Variant,
)
from benchmarks._fuzz_probe import FUZZ_HOST, REASONS, UNSEEN, Probe, tapped_factory
from benchmarks._fuzz_report import VariantReport, account, detection_bound_s, print_reports
from swim import Config, Event, MemberStatus, Node
from swim.core.codec import MAX_STREAM_BYTES
from swim.runtime import TransportFactory
from swim.security import Keyring, Sealer, SecurityConfig
from transport.base import Address

#: Longest wait for the cluster to form, and for a fuzzed datagram batch to arrive.
CONVERGE_BOUND_S: Final = 30.0
BATCH_BOUND_S: Final = 5.0


@attrs.frozen(kw_only=True)
class Settings:
    """What one fuzzing run does."""

    #: Inputs in total, over every variant (datagrams and stream connections).
    count: int = 1_000_000
    seed: int = 1
    #: Nodes in the cluster, the target included.
    members: int = 4
    variants: tuple[Variant, ...] = (Variant.PLAINTEXT, Variant.ENCRYPTED)
    #: Share of the inputs that are TCP connections (each costs the target some 20
    #: datagrams' worth of CPU).
    stream_share: float = 0.02
    #: Connections per variant that send nothing (each holds a slot until the
    #: transport's 1 s header deadline), spread over the run.
    silent_streams: int = 16
    #: Connections open at once.
    stream_workers: int = 8
    #: Datagrams sent before waiting for the target to take them in.
    batch: int = 32
    profile: str = "lan"
    #: After the flood, wait until the crashed peer is declared failed, not just suspected.
    wait_failed: bool = True


# ====================================================================== the cluster


@attrs.define(eq=False)
class _Member:
    name: str
    node: Node
    scope: trio.CancelScope
    events: list[Event] = attrs.Factory(list)


Table = frozenset[tuple[str, Address, MemberStatus, int, bytes]]


def _table(member: _Member) -> Table:
    return frozenset(
        (m.name, m.addr, m.status, m.incarnation, m.meta) for m in member.node.members()
    )


def _table_diff(name: str, before: Table, after: Table) -> str:
    gone = sorted(before - after, key=str)
    new = sorted(after - before, key=str)
    return f"at {name}: before {gone} now {new}"


@attrs.frozen
class _Spec:
    name: str
    config: Config
    security: SecurityConfig | Sealer
    seeds: list[Address]
    factory: TransportFactory
    seed: int


async def _run_member(spec: _Spec, *, task_status: trio.TaskStatus[_Member]) -> None:
    node = Node(
        spec.config, name=spec.name, seeds=spec.seeds, seed=spec.seed,
        transport_factory=spec.factory, join_backoff_s=0.2, join_backoff_max_s=2.0,
        security=spec.security,
    )
    with trio.CancelScope() as scope:  # cancelled: a crash (no leave)
        async with node:
            member = _Member(spec.name, node, scope)
            subscription = node.events(max_buffer=100_000)
            task_status.started(member)
            async for event in subscription:
                member.events.append(event)


async def _eventually(predicate: Callable[[], bool], bound_s: float) -> bool:
    with trio.move_on_after(bound_s):
        while not predicate():
            await trio.sleep(0.05)
        return True
    return False


def _all_alive(members: Sequence[_Member]) -> bool:
    names = {m.name for m in members}
    return all(
        {s.name for s in m.node.members() if s.status is MemberStatus.ALIVE} == names
        for m in members
    )


# ====================================================================== measurements


def _rss_kb() -> tuple[int, int]:
    """VmRSS and VmHWM of this process, in KB."""
    fields = {}
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def _kernel_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket on 127.0.0.1:*port*."""
    wanted = f"0100007F:{port:04X}"
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted:
                return int(fields[-1])
    return 0


def _counters(node: Node) -> dict[str, int]:
    stats = node.stats()
    out = {f"seal.{r.value}": stats.security.count(r) for r in REASONS}
    out["seal.opened"] = stats.security.opened
    for name in ("malformed", "unexpected", "ping_reqs_refused", "datagrams_in"):
        out[f"core.{name}"] = getattr(stats.core, name)
    for name in (
        "datagrams_received", "receive_overflows", "oversized", "receive_errors",
        "streams_accepted", "streams_rejected", "stream_header_timeouts",
        "streams_over_buffer_budget", "streams_over_source_limit",
    ):
        out[f"transport.{name}"] = getattr(stats.transport, name)
    out["kernel.udp_drops"] = _kernel_drops(node.addr[1])
    return out


class _Warnings(logging.Handler):
    """Collects every warning or error logged while a variant runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


# ====================================================================== fuzzing


@attrs.define(eq=False)
class _Run:
    settings: Settings
    variant: Variant
    report: VariantReport
    probe: Probe
    inputs: Inputs
    target: _Member
    peers: list[_Member]
    baseline: dict[str, Table]
    events_seen: dict[str, int]
    batches: int = 0

    def check(self, recent: Sequence[Datagram | Stream], *, everyone: bool) -> None:
        """Tables and events since the last check; a change is reported with the inputs
        sent just before it."""
        members = [self.target, *self.peers] if everyone else [self.target]
        context = "; last inputs: " + ", ".join(
            f"{item.kind}:{item.data[:48].hex()}" for item in recent[-4:]
        )
        for member in members:
            table = _table(member)
            if table != self.baseline[member.name]:
                self.report.table_changes.append(
                    _table_diff(member.name, self.baseline[member.name], table) + context
                )
                self.baseline[member.name] = table
            seen = self.events_seen[member.name]
            if len(member.events) > seen:
                into = self.report.events_target if member is self.target else (
                    self.report.events_peers
                )
                into.extend(f"{member.name}: {e!r}{context}" for e in member.events[seen:])
                self.events_seen[member.name] = len(member.events)


async def _send_datagrams(run: _Run, count: int) -> None:
    """Send *count* datagrams in batches, each once the target has taken in the last."""
    probe = run.probe
    target = run.target.node.addr
    raw = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM)
    raw.setblocking(False)
    raw.bind((FUZZ_HOST, 0))
    # The batch goes out in one go from the plain socket (trio's wrapper would cost more
    # than the target's handling); trio's view of the same socket reads the replies.
    with raw, trio.socket.from_stdlib_socket(raw) as replies:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_count_replies, run, replies)
            sent = 0
            while sent < count:
                size = min(run.settings.batch, count - sent)
                batch = [run.inputs.datagram() for _ in range(size)]
                probe.caught_up = trio.Event()
                probe.pending.extend(batch)
                for item in batch:
                    await _send_one(run, raw, item, target)
                if probe.pending:
                    with trio.move_on_after(BATCH_BOUND_S):
                        await probe.caught_up.wait()
                    probe.give_up()
                sent += len(batch)
                run.batches += 1
                run.check(batch, everyone=run.batches % 16 == 0)
            nursery.cancel_scope.cancel()


async def _send_one(
    run: _Run, raw: stdlib_socket.socket, item: Datagram, target: Address
) -> None:
    for _ in range(1000):
        try:
            raw.sendto(item.data, target)
            return
        except BlockingIOError:
            await trio.sleep(0.001)
        except OSError as exc:
            run.report.crashes.append(f"fuzzer could not send a datagram: {exc!r}")
            break
    run.probe.pending.remove(item)


async def _count_replies(run: _Run, sock: trio.socket.SocketType) -> None:
    while True:
        await sock.recv(65_536)
        run.report.replies += 1


async def _stream_worker(run: _Run, take: Callable[[], Stream | None]) -> None:
    bound_s = run.target.node.config.tcp_timeout_s + 5.0
    while (item := take()) is not None:
        outcome = await _one_stream(run, item, bound_s)
        run.probe.record("stream", item.kind, outcome, item.data)


async def _one_stream(run: _Run, item: Stream, bound_s: float) -> str:
    sock = trio.socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    # The port is chosen at connect time, and a close resets the connection, so tens of
    # thousands of connections leave no TIME_WAIT behind to run out of ports.
    sock.setsockopt(stdlib_socket.IPPROTO_IP, stdlib_socket.IP_BIND_ADDRESS_NO_PORT, 1)
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream: trio.SocketStream | None = None
    hung = False
    try:
        await sock.bind((FUZZ_HOST, 0))
        await sock.connect(run.target.node.addr)
        port = sock.getsockname()[1]
        stream = trio.SocketStream(sock)
        with trio.move_on_after(bound_s) as scope:
            with contextlib.suppress(trio.BrokenResourceError):
                if not item.silent:
                    await stream.send_all(item.data)
                    await stream.send_eof()
                while await stream.receive_some(65_536):
                    pass
        hung = scope.cancelled_caught
    except OSError as exc:
        run.report.crashes.append(f"fuzzer could not open a stream: {exc!r}")
        return UNSEEN
    finally:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        else:
            sock.close()
    outcome = run.probe.stream_outcomes.pop(port, TRANSPORT)
    return HUNG if hung else outcome


async def _watch_loop(report: VariantReport) -> None:
    """Record the longest the event loop (every node's, the target's included) went
    without running a 10 ms ticker: how long any one input kept the nodes from work."""
    last = time.monotonic()
    while True:
        await trio.sleep(0.01)
        now = time.monotonic()
        report.max_loop_stall_s = max(report.max_loop_stall_s, now - last - 0.01)
        last = now


async def _fuzz(run: _Run, datagrams: int, streams: int) -> None:
    silent = min(run.settings.silent_streams, streams)
    every = streams // silent if silent else 0
    taken = 0

    def take() -> Stream | None:
        nonlocal taken
        if taken >= streams:
            return None
        taken += 1
        if every and taken % every == 0 and taken // every <= silent:
            return run.inputs.silent()
        return run.inputs.stream()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_send_datagrams, run, datagrams)
        for _ in range(run.settings.stream_workers if streams else 0):
            nursery.start_soon(_stream_worker, run, take)


async def fuzz_variant(settings: Settings, variant: Variant, count: int) -> VariantReport:
    """Start a cluster, fuzz its target with *count* inputs, check it, stop it."""
    report = VariantReport(variant=variant.value, seed=settings.seed, members=settings.members)
    streams = round(count * settings.stream_share)
    report.datagrams, report.streams = count - streams, streams
    rng = random.Random(f"{settings.seed}/{variant.value}")
    config = Config.profile(settings.profile)
    keyring = Keyring(rng.randbytes(32)) if variant is Variant.ENCRYPTED else None

    def security() -> SecurityConfig:
        # Each member its own keyring object holding the same key, as separate processes.
        ring = None if keyring is None else Keyring(keyring.primary)
        return SecurityConfig(keyring=ring, label=LABEL)

    captures = Captures()
    target_config = security()
    target_sealer = target_config.sealer(
        sender_id=os.urandom(8), random_bytes=os.urandom, not_before=time.time()
    )
    probe = Probe(variant, target_sealer, captures)
    overhead = target_config.overhead
    inputs = Inputs(
        variant, rng, captures, keyring=keyring, wall_clock=time.time,
        max_frame_bytes=MAX_STREAM_BYTES + overhead,
    )
    warnings = _Warnings()
    logging.getLogger().addHandler(warnings)
    started = time.monotonic()
    try:
        async with trio.open_nursery() as nursery:
            target: _Member = await nursery.start(
                _run_member,
                _Spec("target", config, target_sealer, [],
                      tapped_factory(config, overhead, captures, probe), 1),
            )
            probe.core = target.node.core
            peers: list[_Member] = [
                await nursery.start(
                    _run_member,
                    _Spec(f"peer-{i}", config, security(), [target.node.addr],
                          tapped_factory(config, overhead, captures, None), 1 + i),
                )
                for i in range(1, settings.members)
            ]
            everyone = [target, *peers]
            if not await _eventually(lambda: _all_alive(everyone), CONVERGE_BOUND_S):
                raise RuntimeError("the cluster did not form")
            # Real traffic to mutate and replay: probe rounds, and user messages (events
            # of their own, all in before the flood begins).
            for sender in everyone:
                for receiver in everyone:
                    if sender is not receiver:
                        for i in range(4):
                            await sender.node.send(receiver.node.addr, b"m%d" % i)
            await _eventually(
                lambda: len(captures.datagrams) >= 64 and len(captures.accepted) >= 16
                and len(captures.frames) >= 2,
                CONVERGE_BOUND_S,
            )
            ready_s = time.monotonic() - started
            inputs.prepare(security().sealer(sender_id=os.urandom(8), random_bytes=os.urandom))
            run = _Run(
                settings, variant, report, probe, inputs, target, peers,
                baseline={m.name: _table(m) for m in everyone},
                events_seen={m.name: len(m.events) for m in everyone},
            )
            await _quiesce(probe)
            members_before = probe.members_seen()
            before = _counters(target.node)
            gc.collect()
            report.rss_before_kb, _ = _rss_kb()
            cpu = time.process_time()
            fuzz_started = trio.current_time()
            async with trio.open_nursery() as watch:
                watch.start_soon(_watch_loop, report)
                await _fuzz(run, report.datagrams, report.streams)
                watch.cancel_scope.cancel()
            report.fuzz_s = trio.current_time() - fuzz_started
            report.cpu_s = time.process_time() - cpu
            report.load_average, report.cpus = os.getloadavg()[0], os.cpu_count() or 0
            # Let a few probe and gossip rounds show any delayed effect.
            await trio.sleep(2 * config.probe_interval_s)
            run.check([], everyone=True)
            await _quiesce(probe)
            members_after = probe.members_seen()
            after = _counters(target.node)
            report.counters = {k: after[k] - before[k] for k in after if after[k] != before[k]}
            rejected = members_after[2] - members_before[2]
            report.member_packets_rejected = dict(rejected)
            _fill_outcomes(report, probe)
            report.accounting = account(report, (
                members_after[0] - members_before[0], members_after[1] - members_before[1],
                rejected,
            ))
            gc.collect()
            report.rss_after_kb, report.rss_peak_kb = _rss_kb()
            report.converged_after = _all_alive(everyone)
            report.ready_s = ready_s
            await _crash_one(report, config, target, peers, settings.wait_failed)
            nursery.cancel_scope.cancel()
    except Exception as exc:  # a node crashed (or the harness did): report it in full
        leaves = "; ".join(f"{type(e).__name__}: {e}" for e in _leaves(exc))
        where = probe.in_flight()
        report.crashes.append(
            f"{leaves}{' while ' + where if where else ''}\n"
            + "".join(traceback.format_exception(exc))
        )
    finally:
        logging.getLogger().removeHandler(warnings)
        report.wall_s = time.monotonic() - started
    report.crashes += probe.handler_errors + warnings.records
    if probe.late:
        report.crashes.append(f"{probe.late} datagrams arrived after being counted lost")
    _fill_outcomes(report, probe)
    return report


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _fill_outcomes(report: VariantReport, probe: Probe) -> None:
    report.violations = probe.violations
    report.violation_samples = list(probe.violation_samples)
    report.outcomes = {}
    for (channel, kind, outcome), n in sorted(probe.outcomes.items()):
        report.outcomes.setdefault(channel, {}).setdefault(kind, {})[outcome] = n


async def _quiesce(probe: Probe) -> None:
    """Wait (briefly) until the node has read every datagram queued for it."""
    with trio.move_on_after(1.0):
        while probe.queued():
            await trio.sleep(0)
    await trio.sleep(0)


async def _crash_one(
    report: VariantReport, config: Config, target: _Member, peers: list[_Member], wait_failed: bool
) -> None:
    """Crash the last peer and time its detection at the target."""
    victim = peers[-1]
    report.detection_bound_s = bound_s = detection_bound_s(config, 1 + len(peers))
    victim.scope.cancel()
    crashed_at = trio.current_time()

    def status() -> MemberStatus:
        state = target.node.member(victim.name)
        return MemberStatus.DEAD if state is None else state.status

    if await _eventually(lambda: status() is not MemberStatus.ALIVE, bound_s):
        report.suspected_after_s = trio.current_time() - crashed_at
    if wait_failed:
        left = bound_s - (trio.current_time() - crashed_at)
        if await _eventually(lambda: status() is MemberStatus.DEAD, max(0.0, left)):
            report.failed_after_s = trio.current_time() - crashed_at
    names = {m.name for m in (target, *peers)}
    strangers = {m.name for m in target.node.members()} - names
    if strangers:
        report.table_changes.append(f"at target after the crash: unknown members {strangers}")


async def fuzz(settings: Settings) -> list[VariantReport]:
    """Every variant of *settings*, one after another, the count split between them."""
    share, extra = divmod(settings.count, len(settings.variants))
    return [
        await fuzz_variant(settings, variant, share + (extra if i == 0 else 0))
        for i, variant in enumerate(settings.variants)
    ]


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=defaults.count,
                        help="inputs in total, split between the variants (1,000,000)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--members", type=int, default=defaults.members,
                        help="nodes in the cluster, the target included (4)")
    parser.add_argument("--variant", choices=["plaintext", "encrypted", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=2,
                        help="variants fuzzed at once, each in a process of its own (2)")
    parser.add_argument("--stream-share", type=float, default=defaults.stream_share)
    parser.add_argument("--batch", type=int, default=defaults.batch,
                        help="datagrams sent before waiting for the target (32)")
    parser.add_argument("--profile", choices=["lan", "local", "wan"], default=defaults.profile)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.count < 1 or args.members < 3 or not 0 <= args.stream_share <= 1 or args.batch < 1:
        parser.error("need --count >= 1, --members >= 3, 0 <= --stream-share <= 1, --batch >= 1")
    variants = tuple(Variant) if args.variant == "both" else (Variant(args.variant),)
    settings = Settings(
        count=args.count, seed=args.seed, members=args.members, variants=variants,
        stream_share=args.stream_share, profile=args.profile, batch=args.batch,
    )
    started = time.monotonic()
    if args.jobs > 1 and len(variants) > 1:
        reports = _in_processes(settings, args.jobs)
    else:
        reports = trio.run(fuzz, settings)
    wall_s = time.monotonic() - started
    if args.json:
        print(json.dumps({
            "count": settings.count, "seed": settings.seed, "wall_s": wall_s,
            "variants": [r.to_json() for r in reports],
        }, indent=2, default=str))
    else:
        print_reports(reports)
        print(f"wall time {wall_s:.1f} s (seed {settings.seed})")
    return 1 if any(r.findings() for r in reports) else 0


def _in_processes(settings: Settings, jobs: int) -> list[VariantReport]:
    """Each variant in a process of its own (``--variant V --json``), *jobs* at a time."""
    share, extra = divmod(settings.count, len(settings.variants))
    commands = [
        [
            sys.executable, "-m", "benchmarks.fuzz_node", "--json", "--jobs", "1",
            "--variant", variant.value, "--count", str(share + (extra if i == 0 else 0)),
            "--seed", str(settings.seed), "--members", str(settings.members),
            "--stream-share", str(settings.stream_share), "--batch", str(settings.batch),
            "--profile", settings.profile,
        ]
        for i, variant in enumerate(settings.variants)
    ]
    root = pathlib.Path(__file__).resolve().parent.parent
    reports = []
    for start in range(0, len(commands), jobs):
        running = [
            subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
            for command in commands[start : start + jobs]
        ]
        for process in running:
            out, _ = process.communicate()
            if not out.strip():
                raise RuntimeError(f"a variant's process exited {process.returncode} silently")
            names = {field.name for field in attrs.fields(VariantReport)}
            for record in json.loads(out)["variants"]:
                reports.append(VariantReport(**{k: v for k, v in record.items() if k in names}))
    return reports


if __name__ == "__main__":
    sys.exit(main())
