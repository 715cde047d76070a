"""Vivaldi network coordinates, as Serf computes them (its `coordinate` package).

Every member keeps a point in an 8-dimensional Euclidean space plus a non-negative
*height* (the access link every path must cross), an error estimate and an adjustment
term. Each direct probe gives one RTT sample to the target, whose coordinate rides on
its ack; the sample pulls or pushes our point along the line to the target's, by a
force weighted with the two error estimates (Dabek et al., SIGCOMM 2004), then a weak
gravity towards the origin keeps the whole system from drifting. The estimated RTT
between two members is then the distance between their coordinates: no probe between
them is needed (`estimate_rtt_s`, Serf's `serf rtt`).

Serf's defaults: 8 dimensions, error at most 1.5, ce = cc = 0.25, an adjustment window
of 20 samples, a height of at least 10 us, the median of the last 3 samples per member
as latency filter, gravity rho 150. All arithmetic is pure and seeded (a random
direction is drawn from the member's `random.Random` only when two points coincide).
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Sequence
from itertools import repeat
from operator import add, mul, sub
from typing import Final

import attrs

DIMENSIONS: Final = 8
ERROR_MAX: Final = 1.5
CE: Final = 0.25
CC: Final = 0.25
ADJUSTMENT_WINDOW: Final = 20
HEIGHT_MIN_S: Final = 10e-6
LATENCY_FILTER: Final = 3
GRAVITY_RHO: Final = 150.0
_ZERO: Final = 1.0e-6
#: Largest member count whose latency filters are kept (oldest forgotten first).
MAX_TRACKED: Final = 4096
#: Wire form: DIMENSIONS + 3 little-endian float32 values.
_PACK: Final = struct.Struct(f"<{DIMENSIONS + 3}f")
PACKED_BYTES: Final = _PACK.size


@attrs.frozen(slots=True)
class Coordinate:
    """A point in the coordinate space (seconds), with its error estimate."""

    vec: tuple[float, ...] = (0.0,) * DIMENSIONS
    error: float = ERROR_MAX
    adjustment: float = 0.0
    height: float = HEIGHT_MIN_S

    def is_valid(self) -> bool:
        """Finite in every component, of our dimensionality, and sane."""
        # One sum: a NaN or an infinity anywhere (or opposite infinities) is not finite.
        total = sum(self.vec) + self.error + self.adjustment + self.height
        return (
            len(self.vec) == DIMENSIONS and math.isfinite(total)
            and self.error >= 0 and self.height >= 0
        )

    def pack(self) -> bytes:
        """The coordinate's compact wire form (float32s)."""
        return _PACK.pack(*self.vec, self.error, self.adjustment, self.height)

    @classmethod
    def unpack_untrusted(cls, data: bytes) -> Coordinate | None:
        """A coordinate from its wire form; None if it is not a valid one."""
        if len(data) != PACKED_BYTES:
            return None
        *vec, error, adjustment, height = _PACK.unpack(data)
        coord = cls(tuple(vec), error, adjustment, height)
        return coord if coord.is_valid() else None


def _raw_distance(a: Coordinate, b: Coordinate) -> float:
    return math.dist(a.vec, b.vec) + a.height + b.height


def estimate_rtt_s(a: Coordinate, b: Coordinate) -> float:
    """The RTT the coordinates predict between two members (Serf's DistanceTo)."""
    raw = _raw_distance(a, b)
    adjusted = raw + a.adjustment + b.adjustment
    return adjusted if adjusted > 0 else raw


class VivaldiClient:
    """One member's coordinate and its update rule."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.coordinate = Coordinate()
        self._origin = Coordinate()
        self._samples: dict[str, list[float]] = {}
        self._adjustments = [0.0] * ADJUSTMENT_WINDOW
        self._adjustment_index = 0
        #: Samples taken, and those refused (an invalid coordinate or RTT).
        self.updates = 0
        self.rejected = 0

    def update(self, name: str, other: Coordinate, rtt_s: float) -> Coordinate:
        """Take one RTT sample to member `name` at `other`; returns our new coordinate.

        The same arithmetic as Serf's client (Vivaldi update, adjustment window,
        gravity) on plain floats: it runs for every probe of every member, so each step
        is computed once (the gap to the other point serves both its length and the
        direction of the force; the gap to the origin is our vector), and the vector
        arithmetic runs in C (`map` over `operator`), in the same order as the loops it
        replaces, so the results are the same to the last bit.
        """
        # A NaN fails both comparisons, so this also refuses it.
        if not 0.0 <= rtt_s < 10.0 or not other.is_valid():
            self.rejected += 1
            return self.coordinate
        rtt = max(self._filtered(name, rtt_s), _ZERO)
        c = self.coordinate
        error, height = c.error, c.height
        vec: Sequence[float] = c.vec
        o_vec, o_height = other.vec, other.height
        # Vivaldi: move along the line to the other point, weighted by the errors.
        diff = list(map(sub, vec, o_vec))
        gap = math.hypot(*diff)
        raw = gap + height + o_height
        adjusted = raw + c.adjustment + other.adjustment
        dist = adjusted if adjusted > 0 else raw
        total_error = error + other.error
        weight = error / (total_error if total_error > _ZERO else _ZERO)
        error = CE * weight * abs(dist - rtt) / rtt + error * (1.0 - CE * weight)
        error = min(error, ERROR_MAX)
        force = CC * weight * (rtt - dist)
        if gap > _ZERO:
            scale = force / gap
            vec = list(map(add, vec, map(mul, diff, repeat(scale))))
            height = (height + o_height) * force / gap + height
            height = max(height, HEIGHT_MIN_S)
        else:  # the points coincide: push along a random direction
            vec = self._random_push(vec, force)
        # Adjustment: the mean error of the last samples, halved.
        adjustments = self._adjustments
        adjustments[self._adjustment_index] = rtt - (math.dist(vec, o_vec) + height + o_height)
        self._adjustment_index = (self._adjustment_index + 1) % ADJUSTMENT_WINDOW
        adjustment = sum(adjustments) / (2.0 * ADJUSTMENT_WINDOW)
        # Gravity towards the origin, so the whole system does not drift.
        gap = math.hypot(*vec)
        origin_raw = gap + height + HEIGHT_MIN_S
        origin_adjusted = origin_raw + adjustment
        origin_dist = origin_adjusted if origin_adjusted > 0 else origin_raw
        force = -1.0 * (origin_dist / GRAVITY_RHO) ** 2
        if gap > _ZERO:
            scale = force / gap
            vec = list(map(add, vec, map(mul, vec, repeat(scale))))
            height = (height + HEIGHT_MIN_S) * force / gap + height
            height = max(height, HEIGHT_MIN_S)
        else:
            vec = self._random_push(vec, force)
        # Kept at its wire precision (float32), so a simulator that hands the value over
        # (object mode) and one that sends the bytes (wire mode) compute the same; a value
        # that is not finite or beyond float32 keeps the last good coordinate (Serf
        # resets in that case).
        try:
            values = _PACK.unpack(_PACK.pack(*vec, error, adjustment, height))
        except (OverflowError, struct.error):
            values = None
        # The checks of `Coordinate.is_valid`, on the values before they are wrapped.
        if (
            values is not None and math.isfinite(sum(values))
            and values[DIMENSIONS] >= 0 and values[DIMENSIONS + 2] >= 0
        ):
            self.coordinate = Coordinate(
                values[:DIMENSIONS], values[DIMENSIONS], values[DIMENSIONS + 1],
                values[DIMENSIONS + 2],
            )
        self.updates += 1
        return self.coordinate

    def _random_push(self, vec: Sequence[float], force: float) -> list[float]:
        """Move `vec` by `force` along a random direction (the two points coincide)."""
        unit = [self._rng.random() - 0.5 for _ in vec]
        norm = math.hypot(*unit) or 1.0
        return [x + u / norm * force for x, u in zip(vec, unit, strict=True)]

    def _filtered(self, name: str, rtt_s: float) -> float:
        """The median of the last `LATENCY_FILTER` samples to `name`, this one included."""
        tracked = self._samples
        samples = tracked.pop(name, None)
        if samples is None:
            samples = [rtt_s]
        else:
            samples.append(rtt_s)
            if len(samples) > LATENCY_FILTER:
                del samples[0]
        tracked[name] = samples  # most recent last (insertion order)
        if len(tracked) > MAX_TRACKED:
            del tracked[next(iter(tracked))]
        return sorted(samples)[len(samples) // 2]


def median_relative_error(pairs: Sequence[tuple[float, float]]) -> float:
    """Median of |estimated - measured| / measured over (estimated, measured) pairs."""
    errors = sorted(abs(e - m) / m for e, m in pairs if m > 0)
    if not errors:
        return math.nan
    mid = len(errors) // 2
    return errors[mid] if len(errors) % 2 else (errors[mid - 1] + errors[mid]) / 2
