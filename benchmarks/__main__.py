"""Run the benchmarks: ``python -m benchmarks [NAME ...]``.

Every module ``benchmarks/<name>_bench.py`` that defines ``main(argv: list[str] | None)
-> int`` is a benchmark; this runs each (all, or those named) with its defaults, in name
order, printing its figures. Adding a benchmark is adding such a file.
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import time


def discover() -> dict[str, str]:
    """{short name: module name} of every benchmark module."""
    here = pathlib.Path(__file__).parent
    return {
        path.stem.removesuffix("_bench"): f"benchmarks.{path.stem}"
        for path in sorted(here.glob("*_bench.py"))
    }


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    found = discover()
    if any(name in ("-h", "--help") for name in names):
        print(__doc__)
        print("benchmarks:", ", ".join(found) or "(none)")
        return 0
    unknown = [name for name in names if name not in found]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(found)}",
            file=sys.stderr,
        )
        return 2
    failures = 0
    for name in names or list(found):
        print(f"=== {name} ({found[name]})", flush=True)
        started = time.monotonic()
        module = importlib.import_module(found[name])
        code = int(module.main([]) or 0)
        print(f"=== {name}: exit {code} in {time.monotonic() - started:.1f} s\n", flush=True)
        failures += code != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
