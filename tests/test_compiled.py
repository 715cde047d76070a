"""The core compiled with mypyc behaves as the pure-Python core does (setup.py's
``SWIM_COMPILE=1`` build, which the benchmarks run).

The compiled wheel is built from this tree (or the benchmarks' build is reused when it is
newer than every source of the core) and installed into a folder that child processes
put first on their ``PYTHONPATH``. Compiled code checks declared types at run time where
Python does not, so besides identical simulator traces the tests that feed the core
hostile and malformed input run again against the compiled build.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

from benchmarks._builds import (
    COMPILED_SITE,
    ROOT,
    build_compiled,
    child_env,
    compiled_is_current,
)

pytestmark = pytest.mark.slow

#: Unit and hardening tests that exercise the compiled modules directly.
RERUN = (
    "tests/test_codec.py",
    "tests/test_wire_vectors.py",
    "tests/test_core_hardening.py",
    "tests/test_membership.py",
    "tests/test_broadcasts.py",
    "tests/test_vivaldi.py",
    "tests/test_stable_codec.py",
    "tests/test_timing.py",
    "tests/test_core_unit.py",
    "tests/test_core_properties.py",
)

#: Simulations whose traces (every datagram and event) must match: both modes, a
#: converged start and joins, a crash, loss, a stall, and the stable-view mode.
TRACES = r"""
import json, sys
import attrs
from simulations import Crash, LossWindow, Scenario, Simulation, Stall
from swim.core import Config
from swim.core import core as core_module

runs = {}
for mode in ("object", "wire"):
    for start in ("converged", "join"):
        sc = Scenario(nodes=30, duration_s=40.0, seed=3, mode=mode, start=start, trace=True,
                      faults=(Crash(member=7, at=15.0),
                              LossWindow(src=2, dst=3, at=5.0, until=30.0, loss=0.5),
                              Stall(members=(4,), at=20.0, duration_s=3.0)))
        sim = Simulation(sc); sim.run_until(40.0); r = sim.result()
        runs[f"{mode}-{start}"] = [r.trace_digest, r.sim_events, r.false_positives.total]
sc = Scenario(nodes=24, duration_s=40.0, seed=4, mode="object", start="converged",
              trace=True, config=Config.stable_views(), faults=(Crash(member=5, at=10.0),))
sim = Simulation(sc); sim.run_until(40.0); r = sim.result()
runs["stable"] = [r.trace_digest, r.sim_events]
print(json.dumps({"file": core_module.__file__, "runs": runs}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A folder holding the installed compiled build of this tree."""
    if compiled_is_current():
        return COMPILED_SITE
    return build_compiled(tmp_path_factory.mktemp("compiled") / "site")


def env_for(site: pathlib.Path | None) -> dict[str, str]:
    env = child_env("pure")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env["PYTHONPATH"]) if p)
    return env


def run_python(code: str, site: pathlib.Path | None) -> str:
    proc = subprocess.run(
        # -P: the working directory (this tree's source) is not put first on sys.path.
        [sys.executable, "-P", "-c", code], check=False, capture_output=True, text=True,
        timeout=600, cwd=ROOT, env=env_for(site),
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_hot_modules_are_compiled_and_the_rest_is_the_same_source(
    site: pathlib.Path,
) -> None:
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["swim"]["compiled"]
    names = [p.removesuffix(".py").replace("/", ".") for p in listed]
    out = run_python(
        "import importlib, json, sys\n"
        f"names = {names!r}\n"
        "print(json.dumps({n: importlib.import_module(n).__file__ for n in names}))\n",
        site,
    )
    files = json.loads(out)
    assert set(files) == set(names)
    for name, file in files.items():
        assert file.startswith(str(site)), (name, file)
        assert file.endswith(".so"), (name, file)
    # Everything not compiled is installed as the very source of this tree.
    for source in (ROOT / "swim").rglob("*.py"):
        rel = source.relative_to(ROOT)
        if str(rel) in listed:
            continue
        assert (site / rel).read_bytes() == source.read_bytes(), rel


def test_the_compiled_core_gives_the_same_traces_as_the_pure_one(site: pathlib.Path) -> None:
    pure = json.loads(run_python(TRACES, None))
    compiled = json.loads(run_python(TRACES, site))
    assert pure["file"].endswith("core.py")
    assert compiled["file"].endswith(".so")
    assert compiled["runs"] == pure["runs"]
    # The scenarios did something (a trace of thousands of datagrams and timers each).
    assert all(run[1] > 1_000 for run in pure["runs"].values())


def test_the_hardening_and_unit_tests_pass_against_the_compiled_core(
    site: pathlib.Path,
) -> None:
    env = env_for(site)
    env["SWIM_REQUIRE_COMPILED"] = "1"
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--import-mode=append", "-x", *RERUN],
        check=False, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout
