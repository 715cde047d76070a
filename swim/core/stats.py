"""Counters a member keeps about its own traffic and protocol activity."""

from __future__ import annotations

import collections

import attr


@attr.s(auto_attribs=True, eq=False)
class Stats:
    """Running totals since the member started. Read them; do not modify them."""

    #: Datagrams and stream frames sent/received.
    datagrams_out: int = 0
    datagrams_in: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    #: Messages sent/received by kind name ("ping", "alive", ...), piggybacked ones too.
    messages_out: collections.Counter[str] = attr.ib(factory=collections.Counter)
    messages_in: collections.Counter[str] = attr.ib(factory=collections.Counter)
    #: Bytes sent/received by the kind of the datagram's first message.
    bytes_out_by_kind: collections.Counter[str] = attr.ib(factory=collections.Counter)
    bytes_in_by_kind: collections.Counter[str] = attr.ib(factory=collections.Counter)
    #: Input that failed to decode and was dropped.
    malformed: int = 0
    #: Well-formed input that made no sense here (unknown seq, wrong target...).
    unexpected: int = 0
    #: News dropped for an implausible incarnation jump (likely hostile).
    implausible_incarnation: int = 0
    #: Alive news for a live name from a different address (name conflict).
    name_conflicts: int = 0
    #: Joins we refused because the joiner claimed a name a live member holds.
    joins_refused: int = 0
    #: New members dropped because the table was full (`Config.max_members`).
    table_full: int = 0
    #: Unknown members dropped from a push-pull over `Config.push_pull_new_max`.
    push_pull_new_capped: int = 0
    #: Ping-reqs refused: from a stranger, or for a target not known at that address.
    ping_reqs_refused: int = 0
    #: Queries delivered to our application, and answers or relays refused (from a
    #: stranger, for no query of ours, a duplicate, or too late).
    queries_received: int = 0
    query_responses_refused: int = 0
    #: Copies of our queries re-sent straight to a silent member (``reask``).
    query_reasks: int = 0
    #: Probes started, and probes that ended with no ack.
    probes: int = 0
    probe_failures: int = 0
    #: Indirect probes requested, nacks received.
    ping_reqs_sent: int = 0
    nacks_received: int = 0
    #: Members this member started suspecting (any accuser), and declared dead itself.
    suspicions: int = 0
    failures_declared: int = 0
    #: Times this member had to refute a suspicion or death about itself.
    refutes: int = 0
    #: Push-pull exchanges started and completed.
    push_pulls: int = 0
    push_pulls_failed: int = 0
    #: Streams we opened that had no outcome within ``tcp_timeout_s`` (counted failed).
    streams_timed_out: int = 0
    #: Stream outcomes that arrived after their stream had ended (ignored).
    late_stream_outcomes: int = 0
    #: The current Lifeguard local health score (0 is healthy).
    awareness: int = 0
    #: Send errors reported by the driver (e.g. a firewall's PermissionError).
    send_errors: int = 0
