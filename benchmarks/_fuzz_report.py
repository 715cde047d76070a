"""What fuzzing one cluster showed (`benchmarks.fuzz_node`): the report, the accounting
of the target's counters against the inputs' outcomes, and the printout."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import attrs

from benchmarks._fuzz_inputs import LOST, MALFORMED, TRANSPORT, seal_outcome
from benchmarks._fuzz_probe import KEEP, REASONS
from swim import Config
from swim.core.timing import suspicion_timeout_min_s

Record = dict[str, Any]


@attrs.define(eq=False)
class VariantReport:
    """What fuzzing one cluster found (see the module docstring)."""

    variant: str
    seed: int
    members: int
    datagrams: int = 0
    streams: int = 0
    #: Seconds from the first input to the last outcome, and the process's CPU seconds.
    fuzz_s: float = 0.0
    cpu_s: float = 0.0
    #: Seconds for the whole variant (cluster start to stop), and from its start until
    #: the cluster had formed and enough traffic was captured.
    wall_s: float = 0.0
    ready_s: float = 0.0
    #: Outcomes by class: {"datagram": {class: {outcome: n}}, "stream": {...}}.
    outcomes: dict[str, dict[str, dict[str, int]]] = attrs.Factory(dict)
    #: Inputs whose outcome their class does not allow (the first `KEEP` in full).
    violations: int = 0
    violation_samples: list[str] = attrs.Factory(list)
    #: Exceptions out of a node, stream handler errors, warnings logged (a one-line
    #: summary, then the traceback if any).
    crashes: list[str] = attrs.Factory(list)
    #: Member table differences (per node), and events during the flood.
    table_changes: list[str] = attrs.Factory(list)
    events_target: list[str] = attrs.Factory(list)
    events_peers: list[str] = attrs.Factory(list)
    #: Members' own packets the target rejected (never expected).
    member_packets_rejected: dict[str, int] = attrs.Factory(dict)
    #: Where the target's counters and the inputs' outcomes disagree (see `_account`).
    accounting: list[str] = attrs.Factory(list)
    #: The target's counters over the flood (deltas), by layer and reason.
    counters: dict[str, int] = attrs.Factory(dict)
    #: The longest the nodes' event loop was held up while fuzzed (a ticker's lateness).
    max_loop_stall_s: float = 0.0
    #: The load average (1 minute) when the flood ended, and the CPUs of the machine.
    load_average: float = 0.0
    cpus: int = 0
    #: Replies the target sent back to the fuzzer's UDP socket.
    replies: int = 0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    rss_peak_kb: int = 0
    converged_after: bool = False
    #: Crash of a peer after the flood: seconds until the target suspected it and declared
    #: it failed (None: not within the bound), and that bound.
    suspected_after_s: float | None = None
    failed_after_s: float | None = None
    detection_bound_s: float = 0.0

    @property
    def inputs(self) -> int:
        return self.datagrams + self.streams

    @property
    def rate(self) -> float:
        return self.inputs / self.fuzz_s if self.fuzz_s else 0.0

    def findings(self) -> list[str]:
        """Everything that should not have happened, one line each (empty: clean)."""
        found = [f"{self.violations} inputs with an outcome their class does not allow"] \
            if self.violations else []
        found += [f"crash: {text.partition(chr(10))[0]}" for text in self.crashes]
        found += [f"table change: {text}" for text in self.table_changes]
        found += [f"event at the target: {text}" for text in self.events_target]
        found += [f"event at a peer: {text}" for text in self.events_peers]
        found += [f"member packets rejected: {k} x{v}"
                  for k, v in self.member_packets_rejected.items()]
        found += [f"accounting: {text}" for text in self.accounting]
        if not self.converged_after:
            found.append("the cluster had not converged after the flood")
        if self.suspected_after_s is None:
            found.append("a crashed peer was not suspected within the bound")
        return found

    def to_json(self) -> Record:
        record = attrs.asdict(self)
        record.update(inputs=self.inputs, rate=self.rate, findings=self.findings())
        return record


def detection_bound_s(config: Config, n: int) -> float:
    """Worst case from a crash until every live member holds it failed: a probe reaches
    it within ``2(n-1)`` periods, the longest suspicion timeout runs, and the gossip of
    the suspicion has its retransmit budget (as in tests/test_core_scenarios.py)."""
    t = config.probe_interval_s
    max_timeout = config.suspicion_max_timeout_mult * suspicion_timeout_min_s(
        config.suspicion_mult, n, t
    )
    return 2 * (n - 1) * t + max_timeout + 4 * config.retransmit_mult * config.gossip_interval_s + t


def totals(classes: dict[str, dict[str, int]]) -> collections.Counter[str]:
    total: collections.Counter[str] = collections.Counter()
    for outcomes in classes.values():
        total.update(outcomes)
    return total


def account(
    report: VariantReport,
    members: tuple[int, int, collections.Counter[str]],
) -> list[str]:
    """Where the target's counters over the flood and the outcomes of the inputs disagree.

    *members* holds the members' datagrams, streams and rejected packets that reached
    the target over the same window. Every sealer rejection and every codec refusal must
    be one input's; every datagram and connection the transport took in must be a
    member's or an input's; every stream the transport cut off must be an input whose
    outcome says so; and a datagram lost must show in a drop counter.
    """
    counters = report.counters
    datagrams = totals(report.outcomes.get("datagram", {}))
    streams = totals(report.outcomes.get("stream", {}))
    every = datagrams + streams
    problems = []
    if every.total() != report.inputs:
        problems.append(f"{every.total()} outcomes for {report.inputs} inputs")

    def expect(counter: str, inputs: int) -> None:
        counted = counters.get(counter, 0)
        if counted != inputs:
            problems.append(f"{counter} counted {counted}, inputs {inputs}")

    member_datagrams, member_streams, member_rejections = members
    for reason in REASONS:
        outcome = seal_outcome(reason)
        expect(f"seal.{reason.value}", every[outcome] + member_rejections[outcome])
    expect("core.malformed", every[MALFORMED])
    lost = datagrams[LOST]
    expect("transport.datagrams_received", report.datagrams - lost + member_datagrams)
    expect("transport.streams_accepted", report.streams + member_streams)
    expect("transport.streams_rejected", streams[TRANSPORT])
    drops = counters.get("transport.receive_overflows", 0) + counters.get("kernel.udp_drops", 0)
    if lost > drops:
        problems.append(f"{lost} datagrams lost, {drops} counted as dropped")
    return problems




def print_reports(reports: Sequence[VariantReport]) -> None:
    for r in reports:
        print(f"--- {r.variant} cluster: {r.members} nodes, seed {r.seed}")
        print(
            f"  inputs {r.inputs:,} ({r.datagrams:,} datagrams, {r.streams:,} streams) in "
            f"{r.fuzz_s:.1f} s: {r.rate:,.0f} inputs/s; CPU {r.cpu_s:.1f} s; "
            f"variant wall {r.wall_s:.1f} s (cluster ready after {r.ready_s:.1f} s)"
        )
        print(
            f"  RSS before {r.rss_before_kb / 1024:.1f} MB, after {r.rss_after_kb / 1024:.1f} MB"
            f" ({(r.rss_after_kb - r.rss_before_kb) / 1024:+.1f} MB), peak "
            f"{r.rss_peak_kb / 1024:.1f} MB"
        )
        for channel, classes in r.outcomes.items():
            print(f"  {channel} outcomes by class:")
            for kind, outcomes in classes.items():
                text = ", ".join(f"{o} {n:,}" for o, n in sorted(outcomes.items()))
                print(f"    {kind:<18} {text}")
        print("  target counters over the flood:")
        for key, value in sorted(r.counters.items()):
            print(f"    {key:<36} {value:>10,}")
        print(
            f"  replies to the fuzzer: {r.replies:,}; longest event-loop stall "
            f"{r.max_loop_stall_s * 1e3:.0f} ms; load average {r.load_average:.1f} on {r.cpus} CPUs"
        )
        suspected = "-" if r.suspected_after_s is None else f"{r.suspected_after_s:.1f} s"
        failed = "-" if r.failed_after_s is None else f"{r.failed_after_s:.1f} s"
        print(
            f"  after the flood: converged {r.converged_after}; a crashed peer suspected "
            f"after {suspected}, failed after {failed} (bound {r.detection_bound_s:.1f} s)"
        )
        found = r.findings()
        print(f"  findings: {len(found)}")
        for line in found[:KEEP]:
            print(f"    {line}")
        for line in r.violation_samples[:10]:
            print(f"    sample: {line}")
        for text in r.crashes[:3]:
            print("    " + text.replace("\n", "\n    "))
    total = sum(r.inputs for r in reports)
    fuzz_s = sum(r.fuzz_s for r in reports)
    print(
        f"total: {total:,} inputs in {fuzz_s:.1f} s of fuzzing "
        f"({total / fuzz_s if fuzz_s else 0:,.0f}/s), "
        f"{sum(len(r.findings()) for r in reports)} findings"
    )
