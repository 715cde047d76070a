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
        return (
            len(self.vec) == DIMENSIONS
            and all(math.isfinite(x) for x in self.vec)
            and math.isfinite(self.error) and self.error >= 0
            and math.isfinite(self.adjustment)
            and math.isfinite(self.height) and self.height >= 0
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


def _apply_force(c: Coordinate, force: float, other: Coordinate, rng: random.Random) -> Coordinate:
    diff = [x - y for x, y in zip(c.vec, other.vec, strict=True)]
    mag = math.hypot(*diff)
    if mag > _ZERO:
        unit = [d / mag for d in diff]
    else:  # the points coincide: push along a random direction
        unit = [rng.random() - 0.5 for _ in diff]
        norm = math.hypot(*unit) or 1.0
        unit = [u / norm for u in unit]
        mag = 0.0
    vec = tuple(x + u * force for x, u in zip(c.vec, unit, strict=True))
    height = c.height
    if mag > _ZERO:
        height = max((c.height + other.height) * force / mag + c.height, HEIGHT_MIN_S)
    return attrs.evolve(c, vec=vec, height=height)


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
        """Take one RTT sample to member `name` at `other`; returns our new coordinate."""
        if not other.is_valid() or not math.isfinite(rtt_s) or not 0 <= rtt_s < 10.0:
            self.rejected += 1
            return self.coordinate
        rtt = self._filtered(name, rtt_s)
        before = self.coordinate
        self._update_vivaldi(other, rtt)
        self._update_adjustment(other, rtt)
        self._update_gravity()
        if not self.coordinate.is_valid():  # numerical trouble: start over, as Serf does
            self.coordinate = attrs.evolve(before) if before.is_valid() else Coordinate()
        # Kept at its wire precision (float32), so a simulator that hands the value over
        # (object mode) and one that sends the bytes (wire mode) compute the same.
        try:
            quantized = Coordinate.unpack_untrusted(self.coordinate.pack())
        except (OverflowError, struct.error):  # beyond float32: keep the last good one
            quantized = None
        self.coordinate = quantized if quantized is not None else before
        self.updates += 1
        return self.coordinate

    def _filtered(self, name: str, rtt_s: float) -> float:
        samples = self._samples.pop(name, [])
        samples.append(rtt_s)
        if len(samples) > LATENCY_FILTER:
            del samples[0]
        self._samples[name] = samples  # most recent last (insertion order)
        if len(self._samples) > MAX_TRACKED:
            del self._samples[next(iter(self._samples))]
        return sorted(samples)[len(samples) // 2]

    def _update_vivaldi(self, other: Coordinate, rtt: float) -> None:
        c = self.coordinate
        rtt = max(rtt, _ZERO)
        dist = estimate_rtt_s(c, other)
        wrongness = abs(dist - rtt) / rtt
        total_error = max(c.error + other.error, _ZERO)
        weight = c.error / total_error
        error = min(CE * weight * wrongness + c.error * (1.0 - CE * weight), ERROR_MAX)
        c = attrs.evolve(c, error=error)
        self.coordinate = _apply_force(c, CC * weight * (rtt - dist), other, self._rng)

    def _update_adjustment(self, other: Coordinate, rtt: float) -> None:
        self._adjustments[self._adjustment_index] = rtt - _raw_distance(self.coordinate, other)
        self._adjustment_index = (self._adjustment_index + 1) % ADJUSTMENT_WINDOW
        adjustment = sum(self._adjustments) / (2.0 * ADJUSTMENT_WINDOW)
        self.coordinate = attrs.evolve(self.coordinate, adjustment=adjustment)

    def _update_gravity(self) -> None:
        dist = estimate_rtt_s(self._origin, self.coordinate)
        force = -1.0 * (dist / GRAVITY_RHO) ** 2
        self.coordinate = _apply_force(self.coordinate, force, self._origin, self._rng)


def median_relative_error(pairs: Sequence[tuple[float, float]]) -> float:
    """Median of |estimated - measured| / measured over (estimated, measured) pairs."""
    errors = sorted(abs(e - m) / m for e, m in pairs if m > 0)
    if not errors:
        return math.nan
    mid = len(errors) // 2
    return errors[mid] if len(errors) % 2 else (errors[mid - 1] + errors[mid]) / 2
