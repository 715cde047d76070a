"""The two builds of the core a benchmark can run: pure Python and compiled (mypyc).

The pure build is this source tree. The compiled one is the wheel that setup.py builds
with ``SWIM_COMPILE=1``, installed into a folder of its own (`COMPILED_SITE` for the
benchmarks: ``make compiled`` runs ``python -m benchmarks._builds``); a child process runs
it with that folder first on its ``PYTHONPATH``. It must be newer than every source file
of the wheel, so a benchmark never reports figures of code that has changed since.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Final, Literal

ROOT: Final = pathlib.Path(__file__).resolve().parent.parent
COMPILED_SITE: Final = ROOT / "build" / "compiled-site"
Build = Literal["pure", "compiled"]
BUILDS: Final[tuple[Build, ...]] = ("pure", "compiled")


#: What the wheel is built from (copied, so nothing is written into the tree and two
#: builds at once do not share setuptools' build folders).
_SOURCES: Final = ("pyproject.toml", "setup.py", "README.md", "LICENSE")
_PACKAGES: Final = ("swim", "transport", "simulations")


class NoCompiledBuild(RuntimeError):
    """The compiled build is missing or older than the source."""


def compiled_is_current() -> bool:
    """True if `COMPILED_SITE` holds a build newer than every source file it was built
    from (the whole wheel: a benchmark runs the simulator from there too)."""
    stamp = COMPILED_SITE / ".built"
    if not stamp.exists():
        return False
    built = stamp.stat().st_mtime
    sources = [ROOT / name for name in _SOURCES]
    for name in _PACKAGES:
        sources.extend((ROOT / name).rglob("*.py"))
    return all(p.stat().st_mtime <= built for p in sources)


def child_env(build: Build) -> dict[str, str]:
    """The environment of a child process that should run `build`.

    Start the child with ``python -P`` (no working directory put first on sys.path):
    its path is then the compiled build (if asked for) and this tree, in that order, so
    `swim` comes from the build asked for and `benchmarks` from this tree.
    """
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = [p for p in paths if pathlib.Path(p).resolve() not in (COMPILED_SITE, ROOT)]
    paths.insert(0, str(ROOT))
    if build == "compiled":
        if not compiled_is_current():
            raise NoCompiledBuild(
                f"no current compiled build in {COMPILED_SITE}: run `make compiled`"
            )
        paths.insert(0, str(COMPILED_SITE))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def running_build() -> Build:
    """Which build of the core this process imported."""
    from swim.core import core

    return "compiled" if not (core.__file__ or "").endswith(".py") else "pure"


def build_compiled(site: pathlib.Path = COMPILED_SITE) -> pathlib.Path:
    """Build the compiled wheel from a copy of this tree and install it into `site`.

    Takes a few minutes (mypyc, then the C compiler on every core). Returns `site`, which
    holds the installed packages and a ``.built`` stamp.
    """
    with tempfile.TemporaryDirectory(prefix="swim-compiled-") as scratch:
        src = pathlib.Path(scratch, "src")
        src.mkdir()
        for name in _SOURCES:
            shutil.copy2(ROOT / name, src / name)
        for name in _PACKAGES:
            shutil.copytree(
                ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so")
            )
        dist = pathlib.Path(scratch, "dist")
        env = {**os.environ, "SWIM_COMPILE": "1"}
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--no-build-isolation", "-w", str(dist), str(src)],
            check=True, cwd=scratch, env=env, timeout=1800,
        )
        (wheel,) = dist.glob("swim_lifeguard-*.whl")
        shutil.rmtree(site, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(site), str(wheel)],
            check=True, cwd=scratch, timeout=600,
        )
    (site / ".built").touch()
    return site


if __name__ == "__main__":
    if compiled_is_current():
        print(f"compiled build in {COMPILED_SITE} is current")
    else:
        print(f"building the compiled core into {COMPILED_SITE} ...", flush=True)
        build_compiled()
