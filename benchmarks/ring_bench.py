"""Placement ring (swim.ring): balance, movement and lookup speed.

    .venv/bin/python -m benchmarks.ring_bench

1,000,000 random 16-byte keys (from ``random.Random(SEED)``) over 100 equal members
(``node-000`` .. ``node-099``), 256 points each (the default):

* load: max/mean and min/mean keys per member, plain consistent hashing and bounded loads
  (eps = 0.25: cap ``ceil(1.25 * mean)``);
* movement: the fraction of keys whose owner changes when one member (chosen by the seed)
  fails, and when a 101st member joins, against the ideal (the failed member's own keys;
  the joiner's keys), plain and bounded;
* lookups per second: ``owner(key)``, ``owners(key, 3)`` without zones and across three
  zones (best of three batches of 100,000 keys); a pure-Python weighted rendezvous (HRW)
  lookup beside them, on 10,000 keys, to show why the ring is not HRW;
* the spread of the members' shares of the hash space for other point counts.

The machine is shared (2 cores), so times vary by tens of percent between runs; counts
and fractions are exact for the seed.
"""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from hashlib import blake2b
from typing import TypeVar

from swim.core.messages import MemberState, MemberStatus
from swim.core.tags import encode_tags
from swim.ring import Assignment, Ring, RingDiff, RingOptions, RingTracker

SEED = 20_260_509
KEYS = 1_000_000
MEMBERS = 100
EPS = (0.25, 0.05)
LOOKUP_BATCH = 100_000
HRW_KEYS = 10_000


def members(count: int, *, zones: int = 0) -> list[MemberState]:
    out = []
    for i in range(count):
        meta = encode_tags({"zone": f"zone-{i % zones}"}) if zones else b""
        addr = ("10.0.0.1", 7000 + i)
        out.append(MemberState(f"node-{i:03d}", addr, 1, MemberStatus.ALIVE, meta))
    return out


T = TypeVar("T")


def timed(run: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = run()
    return value, time.perf_counter() - started


def best_rate(run: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Operations per second: the best of `repeats` runs of `count` operations."""
    best = math.inf
    for _ in range(repeats):
        _, seconds = timed(run)
        best = min(best, seconds)
    return count / best


def load_line(name: str, assignment: Assignment[bytes], seconds: float) -> None:
    mean = assignment.mean_load
    low = min(assignment.loads.values())
    print(
        f"  {name:<22} max/mean {assignment.max_load / mean:6.3f}   min/mean {low / mean:6.3f}"
        f"   displaced {assignment.displaced / len(assignment):6.2%}   ({seconds:4.1f} s)"
    )


def moved(before: Assignment[bytes], after: Assignment[bytes]) -> int:
    return sum(1 for key, owner in before.owners.items() if after.owners[key] != owner)


def hrw_owner(names: Sequence[str], seeds: Sequence[int]) -> Callable[[bytes], str]:
    """A pure-Python weighted rendezvous lookup (score -w / ln u, w = 1), for comparison."""
    mask = (1 << 64) - 1

    def owner(key: bytes) -> str:
        h = int.from_bytes(blake2b(key, digest_size=8).digest())
        best, chosen = -1.0, 0
        for index, seed in enumerate(seeds):
            x = ((h ^ seed) * 0x9E3779B97F4A7C15) & mask  # splitmix64's finalizer
            x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
            x ^= x >> 31
            score = -1.0 / math.log((x + 1) / (mask + 2))
            if score > best:
                best, chosen = score, index
        return names[chosen]

    return owner


def main() -> int:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(
        f"ring benchmark: {KEYS:,} keys over {MEMBERS} members, seed {SEED}\n"
        f"  machine: {platform.machine()}, {os.cpu_count()} cores ({affinity} usable, shared),"
        f" Python {sys.version.split()[0]}"
    )
    rng = random.Random(SEED)
    keys = [rng.randbytes(16) for _ in range(KEYS)]
    view = members(MEMBERS)

    ring, build_s = timed(lambda: Ring.build(view))
    tracker = RingTracker()
    tracker.update(view)
    _, rebuild_s = timed(lambda: tracker.update(view[1:]))
    print(f"\nbuild: {len(ring)} members, {sum(e.points for e in ring.entries):,} points:"
          f" {build_s * 1e3:.0f} ms from scratch, {rebuild_s * 1e3:.0f} ms in a RingTracker"
          f" (points cached)")

    victim = rng.choice(ring.members)
    failed = Ring.build([m for m in view if m.name != victim])
    joiner = "node-100"
    joined = Ring.build([*view, *members(MEMBERS + 1)[MEMBERS:]])
    rings = {"base": ring, "fail": failed, "join": joined}

    print("\nload per member (cap = ceil((1 + eps) x mean), mean = 10,000 keys)")
    results: dict[str, dict[str, Assignment[bytes]]] = {}
    for eps in (None, *EPS):
        label = "plain" if eps is None else f"bounded, eps = {eps}"
        results[label] = {}
        for which, placed_on in rings.items():
            assignment, seconds = timed(partial(placed_on.assign, keys, load_factor=eps))
            results[label][which] = assignment
            if which == "base":
                load_line(label, assignment, seconds)
    shares = ring.shares()
    print(f"  {'hash-space shares':<22} max/mean {max(shares.values()) * len(ring):6.3f}"
          f"   min/mean {min(shares.values()) * len(ring):6.3f}")

    print(f"\nmovement (ideal: exactly the failed member's keys / the joiner's keys;"
          f" failed member {victim}, seed-chosen)")
    for label, placed in results.items():
        base = placed["base"]
        for which, ideal in (
            ("fail", base.loads[victim]),
            ("join", placed["join"].loads[joiner]),
        ):
            count = moved(base, placed[which])
            print(f"  {which} {label:<22} moved {count / KEYS:6.3%} of keys"
                  f"   ideal {ideal / KEYS:6.3%}   ratio {count / ideal:5.2f}")
    for which in ("fail", "join"):
        diff: RingDiff[bytes] = Ring.diff(ring, rings[which])
        print(f"  {which} hash space moved (exact, from Ring.diff's ranges)"
              f" {diff.moved_share:6.3%} in {len(diff.ranges)} ranges")

    print("\nlookups per second (best of 3 batches)")
    batch = keys[:LOOKUP_BATCH]
    zoned = Ring.build(members(MEMBERS, zones=3))
    figures = [
        ("owner(key)", lambda: [ring.owner(k) for k in batch]),
        ("owners(key, 3)", lambda: [ring.owners(k, 3) for k in batch]),
        ("owners(key, 3), 3 zones", lambda: [zoned.owners(k, 3) for k in batch]),
    ]
    for name, run in figures:
        print(f"  {name:<26} {best_rate(run, len(batch)):>10,.0f} /s")
    names = ring.members
    seeds = [int.from_bytes(blake2b(name.encode(), digest_size=8).digest()) for name in names]
    hrw = hrw_owner(names, seeds)
    hrw_rate = best_rate(lambda: [hrw(k) for k in keys[:HRW_KEYS]], HRW_KEYS, repeats=1)
    print(f"  {'HRW owner (reference)':<26} {hrw_rate:>10,.0f} /s"
          f"   (pure Python, {MEMBERS} members, {HRW_KEYS:,} keys)")

    print("\nspread of hash-space shares by points per member (100 members)")
    for vnodes in (64, 128, 256, 512, 1024):
        options = RingOptions(vnodes=vnodes)
        sweep, sweep_s = timed(partial(options.build, view))
        spread = list(sweep.shares().values())
        mean = 1 / len(spread)
        sd = math.sqrt(sum((s - mean) ** 2 for s in spread) / len(spread)) / mean
        print(f"  vnodes {vnodes:>5}: max/mean {max(spread) / mean:.3f}   min/mean"
              f" {min(spread) / mean:.3f}   sd {sd:5.1%}"
              f" (1/sqrt(vnodes) = {1 / math.sqrt(vnodes):5.1%})   build {sweep_s * 1e3:4.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
