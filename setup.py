"""Optional compiled build of the protocol core (mypyc); everything else is in pyproject.toml.

A plain build (``pip install .``, ``pip wheel .``) gives the pure-Python package. With
``SWIM_COMPILE=1`` in the environment, the modules listed in `COMPILED` are compiled
with mypyc into C extensions that sit beside their sources in the wheel; Python imports
the extension in preference to the source, so the same package runs faster with no
other change. The source is the same either way (the pure-Python form is the fallback
wherever no compiled wheel is installed), and a test runs the simulator with both and
compares the traces (tests/test_compiled.py). Building it needs mypy (which ships mypyc)
and a C compiler; ``make compiled`` builds it for the benchmarks.
"""

from __future__ import annotations

import os
import pathlib
import tomllib

from setuptools import setup

#: The modules to compile, from pyproject.toml's ``[tool.swim] compiled``.
COMPILED = tomllib.loads(
    pathlib.Path(__file__).with_name("pyproject.toml").read_text(encoding="utf-8")
)["tool"]["swim"]["compiled"]


def _compiled_build() -> dict[str, object]:
    """setup() arguments of the compiled build: the extensions, and build folders of
    their own (so no extension is left where a later pure build would pack it)."""
    from mypyc.build import mypycify

    return {
        "ext_modules": mypycify(
            COMPILED, opt_level="3", multi_file=True, group_name="swim_core",
            target_dir="build/mypyc",
        ),
        "options": {
            "build": {"build_base": "build/compiled"},
            # One C file per module, compiled on every core.
            "build_ext": {"parallel": os.cpu_count() or 1},
        },
    }


setup(**(_compiled_build() if os.environ.get("SWIM_COMPILE") == "1" else {}))
