"""Run the benchmarks: ``python -m benchmarks [NAME ...]`` (``make bench`` runs them all).

Every module in this folder whose name does not start with an underscore is a benchmark:
a script that runs with no arguments, prints its figures and exits 0. This runs each
(all of them, or those named) as ``python -m benchmarks.<module>`` from the repository
root, in name order, one after another; the output goes straight to the terminal. Adding
a benchmark is adding such a file. A name may be given with or without its ``_bench``
suffix (``cluster`` or ``cluster_bench``).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).parent


def discover() -> list[str]:
    """Module names of every benchmark, sorted."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def resolve(name: str, modules: list[str]) -> str | None:
    """The module a command-line name means, if any."""
    for module in modules:
        if name in (module, module.removesuffix("_bench")):
            return module
    return None


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    modules = discover()
    if any(name in ("-h", "--help") for name in names):
        print(__doc__)
        print("benchmarks:", ", ".join(modules) or "(none)")
        return 0
    chosen = [resolve(name, modules) for name in names]
    unknown = [name for name, module in zip(names, chosen, strict=True) if module is None]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(modules)}",
            file=sys.stderr,
        )
        return 2
    failed = []
    for module in [m for m in chosen if m is not None] or modules:
        print(f"=== {module}", flush=True)
        started = time.monotonic()
        code = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}"], cwd=HERE.parent, check=False
        ).returncode
        print(f"=== {module}: exit {code} in {time.monotonic() - started:.1f} s\n", flush=True)
        if code != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
