"""Driver policy: how a member joins, leaves and bounds its streams, for every driver.

The trio runtime, the simulator and the test router all run the same `Core`, and the
decisions that are not protocol rules but still shape a run (how often and how fast to
retry a join, how long a leave may take, when a stream counts as failed, how far a
driver's timer must move on) are made here, once, as pure code. The core applies the
join, leave and stream rules itself on its own timer; drivers only use `wake_at`.
"""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class DriverPolicy:
    """Join retry, leave and timer rules shared by every driver of a `Core`."""

    #: First delay between join rounds when no seed answered (jittered down to half).
    join_backoff_s: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    #: Largest delay between join rounds (the delay doubles after each failed round).
    join_backoff_max_s: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    #: Longest a graceful leave waits for its departure to be sent its full count.
    leave_timeout_s: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))
    #: Smallest step a driver's timer advances by past the time it last ran the core,
    #: should the core ever return a deadline that is not after it (a spin guard).
    min_timer_step_s: float = attrs.field(default=0.001, validator=attrs.validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if self.join_backoff_max_s < self.join_backoff_s:
            raise ValueError("need join_backoff_s <= join_backoff_max_s")

    def join_retry_delay_s(self, backoff_s: float, u: float) -> float:
        """The pause before the next join round: `backoff_s` jittered by ``u`` in [0, 1).

        Uniform in ``[backoff/2, backoff)``, so members that failed together do not
        retry in lock step.
        """
        return backoff_s * (0.5 + 0.5 * u)

    def next_backoff_s(self, backoff_s: float) -> float:
        """The backoff after a failed round: doubled, capped at ``join_backoff_max_s``."""
        return min(2.0 * backoff_s, self.join_backoff_max_s)

    def wake_at(self, deadline: float, handled_at: float) -> float:
        """When a driver should next run the core's timer, given its `deadline` and the
        time the driver last ran it: the deadline, but never at or before `handled_at`."""
        if deadline <= handled_at:
            return handled_at + self.min_timer_step_s
        return deadline
