"""Shared test settings: a bounded hypothesis profile (no deadlines, modest example counts).

Set HYPOTHESIS_PROFILE=thorough for a longer fuzzing run. With SWIM_REQUIRE_COMPILED=1
(tests/test_compiled.py re-running tests against the mypyc build) the session refuses to
start unless the core it imported is the compiled one.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    print_blob=True,
)
settings.register_profile(
    "thorough", deadline=None, max_examples=5000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

if os.environ.get("SWIM_REQUIRE_COMPILED") == "1":
    from benchmarks._builds import running_build

    if running_build() != "compiled":
        raise RuntimeError("SWIM_REQUIRE_COMPILED=1, but the core imported is pure Python")
