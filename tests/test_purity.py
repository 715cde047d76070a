"""The protocol core does no I/O, reads no clock and draws no unseeded randomness.

Checked on the syntax tree of every module under swim/core/ (not by grepping text), so
``import os.path``, ``from time import monotonic``, ``import socket as s``, ``__import__``
and ``random.random()`` are all caught, while ``random.Random`` (seeded, passed in) is
allowed.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

CORE = pathlib.Path(__file__).resolve().parent.parent / "swim" / "core"
MODULES = sorted(CORE.rglob("*.py"))  # subpackages too (swim/core/stable/)

#: Top-level packages the core must never import: I/O, clocks, concurrency, processes.
FORBIDDEN = frozenset({
    "trio", "anyio", "asyncio", "socket", "socketserver", "ssl", "selectors", "select",
    "threading", "_thread", "multiprocessing", "concurrent", "subprocess", "signal",
    "time", "datetime", "os", "sys", "io_uring", "shutil", "pathlib", "tempfile", "glob",
    "urllib", "http", "requests", "logging", "sched", "secrets", "uuid", "mmap", "ctypes",
    "importlib", "builtins", "fcntl", "resource", "psutil",
})
#: Module-level functions of `random` (they share one hidden, unseeded generator).
RANDOM_ALLOWED = frozenset({"Random"})
#: Builtins that do I/O or defeat the import check.
FORBIDDEN_CALLS = frozenset({"open", "print", "input", "__import__", "exec", "eval", "breakpoint"})


def violations(source: str) -> list[str]:
    tree = ast.parse(source)
    found = []
    random_aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in FORBIDDEN:
                    found.append(f"import {alias.name}")
                if alias.name == "random":
                    random_aliases.add(alias.asname or "random")
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            if node.level == 0 and top in FORBIDDEN:
                found.append(f"from {node.module} import ...")
            if node.module == "random":
                found.extend(
                    f"from random import {a.name}"
                    for a in node.names if a.name not in RANDOM_ALLOWED
                )
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(f"call {node.func.id}()")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in random_aliases
            and node.attr not in RANDOM_ALLOWED
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_there_are_core_modules() -> None:
    assert len(MODULES) >= 10 and (CORE / "core.py") in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_is_pure(path: pathlib.Path) -> None:
    assert violations(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("import time", ["import time"]),
        ("import os.path", ["import os.path"]),
        ("import socket as s", ["import socket"]),
        ("from time import monotonic", ["from time import ..."]),
        ("from concurrent.futures import Future", ["from concurrent.futures import ..."]),
        ("import trio.lowlevel", ["import trio.lowlevel"]),
        ("import random\nx = random.random()", ["random.random"]),
        ("import random as r\nr.shuffle([])", ["r.shuffle"]),
        ("from random import choice", ["from random import choice"]),
        ("__import__('os')", ["call __import__()"]),
        ("open('f')", ["call open()"]),
        ("import random\nrng = random.Random(1)\nrng.random()", []),
        ("from random import Random", []),
        ("from . import codec", []),
    ],
)
def test_the_checker_catches_what_it_should(source: str, bad: list[str]) -> None:
    assert [v.split(" as ")[0] for v in violations(source)] == bad
