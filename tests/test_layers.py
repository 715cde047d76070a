"""Imports go one way, and start-up loads only what it uses.

The layer rules are checked on the syntax tree of every module of ``swim/``,
``transport/`` and ``simulations/`` (every import statement counts, inside functions and
``if TYPE_CHECKING:`` blocks too):

* `swim.core` imports the standard library, attrs (also as `attr`, its namespace that
  mypyc compiles) and cbor2, and nothing else of ours;
* `swim.security` imports the standard library, cryptography and attrs, nothing of ours;
* `transport` imports `swim.core` and `swim.security` at most;
* `swim.runtime` imports `swim.core`, `swim.security` and `transport`;
* `simulations` imports `swim.core`, `swim.security` and `transport`, and only
  `simulations.trio_mode` imports `swim.runtime`;
* `swim.ring` (placement) imports the standard library and attrs, and of ours only
  `swim.core`;
* `swim.agent` imports `swim.core`, `swim.runtime`, `swim.security`, `transport` and
  `swim.ring`.

(`swim` itself and `swim.cli` assemble the layers and are not constrained.) No import
cycle exists among all those modules, at module level or through an import inside a
function (a lazy import that closes a cycle is the same tangle, only deferred); imports
under ``TYPE_CHECKING`` never run and do not count.

Lean start-up is checked on real processes: what ``import swim`` loads, and (from
``PYTHONPROFILEIMPORTTIME``) every module a running ``swim agent`` and its clients imported.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterable, Mapping

import attrs
import pytest

from swim import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("swim", "transport", "simulations")


@attrs.frozen
class Import:
    #: The module imported (for ``from pkg import name``: ``pkg.name`` if that is one of
    #: our modules, else ``pkg``).
    target: str
    #: "module" (runs at import time), "function" (inside a def) or "typing" (only under
    #: ``if TYPE_CHECKING:``).
    when: str
    line: int


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, pathlib.Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(
    source: str, name: str, *, is_package: bool, known: Iterable[str] = ()
) -> list[Import]:
    """Every import statement in `source` (the module `name`), resolved to absolute names."""
    known = set(known)
    package = name if is_package else name.rpartition(".")[0]
    found: list[Import] = []

    def resolve(module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        base = package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join([*base, module] if module else base)

    def visit(node: ast.AST, when: str) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, when, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node.module, node.level)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(sub if sub in known else base, when, node.lineno))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                visit(stmt, "typing" if when == "module" else when)
            for stmt in node.orelse:
                visit(stmt, when)
            return
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            when = "function"
        for child in ast.iter_child_nodes(node):
            visit(child, when)

    visit(ast.parse(source), "module")
    return found


def import_graph() -> dict[str, list[Import]]:
    modules = our_modules()
    return {
        name: imports_of(
            path.read_text(encoding="utf-8"), name,
            is_package=path.name == "__init__.py", known=modules,
        )
        for name, path in modules.items()
    }


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with a cycle (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(found)


# ------------------------------------------------------------------------- layer rules

#: Our layers, most specific first; `swim` and `swim.cli` belong to none.
LAYERS = (
    "swim.core", "swim.security", "swim.runtime", "swim.agent", "swim.ring", "transport",
    "simulations",
)
#: Which of our layers each layer may import (itself included).
ALLOWED: Mapping[str, frozenset[str]] = {
    "swim.core": frozenset({"swim.core"}),
    "swim.security": frozenset({"swim.security"}),
    "transport": frozenset({"transport", "swim.core", "swim.security"}),
    "swim.runtime": frozenset({"swim.runtime", "swim.core", "swim.security", "transport"}),
    "simulations": frozenset({"simulations", "swim.core", "swim.security", "transport"}),
    "swim.agent": frozenset(
        {"swim.agent", "swim.core", "swim.runtime", "swim.security", "transport", "swim.ring"}
    ),
    "swim.ring": frozenset({"swim.ring", "swim.core"}),
}
#: Modules allowed one more layer than their own.
EXTRA: Mapping[str, frozenset[str]] = {"simulations.trio_mode": frozenset({"swim.runtime"})}
#: Third-party packages a layer may import, for the layers that are restricted.
THIRD_PARTY: Mapping[str, frozenset[str]] = {
    # `attr` is attrs' own older namespace (the same distribution): the compiled modules'
    # stateful classes use it (ARCHITECTURE.md, the compiled core).
    "swim.core": frozenset({"attrs", "attr", "cbor2"}),
    "swim.security": frozenset({"attrs", "cryptography"}),
    "swim.ring": frozenset({"attrs"}),
}
OURS = frozenset(PACKAGES)


def layer_of(module: str) -> str | None:
    """The layer `module` belongs to (`swim` and `swim.cli` belong to none)."""
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def violations(graph: Mapping[str, list[Import]]) -> list[str]:
    found = []
    for module, imports in sorted(graph.items()):
        layer = layer_of(module)
        if layer is None:
            continue
        allowed = ALLOWED[layer] | EXTRA.get(module, frozenset())
        for imp in imports:
            top = imp.target.split(".")[0]
            if top in OURS:
                target_layer = layer_of(imp.target)
                if target_layer not in allowed:
                    found.append(f"{module}:{imp.line} imports {imp.target}")
            elif (
                layer in THIRD_PARTY
                and top not in sys.stdlib_module_names
                and top not in THIRD_PARTY[layer]
            ):
                found.append(f"{module}:{imp.line} imports {imp.target}")
    return found


def test_every_package_has_modules() -> None:
    modules = our_modules()
    for layer in LAYERS:
        assert any(layer_of(m) == layer for m in modules), layer


def test_every_module_keeps_to_its_layer() -> None:
    assert violations(import_graph()) == []


@pytest.mark.parametrize("counted", [("module",), ("module", "function")])
def test_no_import_cycle(counted: tuple[str, ...]) -> None:
    # swim.agent.cli and swim.agent.demo once imported each other, each inside a function.
    graph = import_graph()
    edges = {
        module: sorted({i.target for i in imports if i.when in counted and i.target in graph})
        for module, imports in graph.items()
    }
    assert cycles(edges) == []


# ---------------------------------------------------------- the checkers, on known input


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import trio", [("trio", "module")]),
        ("import os.path as p", [("os.path", "module")]),
        ("from swim.core import config", [("swim.core.config", "module")]),
        ("from swim.core import Config", [("swim.core", "module")]),
        ("from . import codec", [("swim.core.codec", "module")]),
        ("from .codec import encode", [("swim.core.codec", "module")]),
        ("from .. import runtime", [("swim.runtime", "module")]),
        ("def f():\n    import trio", [("trio", "function")]),
        ("async def f():\n    from swim import runtime", [("swim.runtime", "function")]),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trio",
         [("typing", "module"), ("trio", "typing")]),
        ("import typing\nif typing.TYPE_CHECKING:\n    import trio\nelse:\n    import attrs",
         [("typing", "module"), ("trio", "typing"), ("attrs", "module")]),
        ("try:\n    import rich\nexcept ImportError:\n    pass", [("rich", "module")]),
    ],
)
def test_imports_are_found_and_resolved(source: str, expected: list[tuple[str, str]]) -> None:
    known = {"swim.core", "swim.core.codec", "swim.core.config", "swim.runtime"}
    found = imports_of(source, "swim.core.messages", is_package=False, known=known)
    assert [(i.target, i.when) for i in found] == expected


def test_relative_imports_in_a_package_init_resolve_to_the_package() -> None:
    found = imports_of("from .codec import encode", "swim.core", is_package=True)
    assert [i.target for i in found] == ["swim.core.codec"]


def test_the_layer_check_catches_what_it_should() -> None:
    graph = {
        "swim.core.x": [Import("trio", "typing", 1), Import("swim.runtime.node", "function", 2),
                        Import("attrs", "module", 3), Import("json", "module", 4)],
        "transport.udp": [Import("swim.agent.rpc", "module", 5), Import("swim.core", "module", 6)],
        "simulations.engine": [Import("swim.runtime", "module", 7)],
        "simulations.trio_mode": [Import("swim.runtime", "module", 8)],
        "swim.security.seal": [Import("cryptography.hazmat", "module", 9),
                               Import("cbor2", "module", 10)],
        "swim.cli": [Import("simulations.cli", "function", 11)],
    }
    assert violations(graph) == [
        "simulations.engine:7 imports swim.runtime",
        "swim.core.x:1 imports trio",
        "swim.core.x:2 imports swim.runtime.node",
        "swim.security.seal:10 imports cbor2",
        "transport.udp:5 imports swim.agent.rpc",
    ]


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d"], "e": ["a"], "f": []}
    assert cycles(edges) == [["a", "b", "c"], ["d"]]
    assert cycles({"a": ["b"], "b": []}) == []


# ------------------------------------------------------------------------ lean start-up


def _python(code: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
        timeout=60,
    )
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def test_import_swim_gives_the_sans_io_api_without_trio() -> None:
    out = _python(
        "import json, sys, swim\n"
        "heavy = ['trio', 'transport', 'rich', 'prometheus_client', 'swim.runtime',"
        " 'simulations', 'swim.agent']\n"
        "before = [m for m in heavy if m in sys.modules]\n"
        "core = [swim.Config.lan().probe_interval_s, swim.Core.__module__]\n"
        "node = swim.Node.__module__\n"
        "print(json.dumps({'before': before, 'core': core, 'node': node,"
        " 'trio_after': 'trio' in sys.modules, 'in_dir': 'ThreadedNode' in dir(swim),"
        " 'all': [n for n in swim.__all__ if not hasattr(swim, n)]}))"
    )
    assert out["before"] == []
    assert out["core"] == [1.0, "swim.core.core"]
    assert out["node"] == "swim.runtime.node"
    assert out["trio_after"] is True
    assert out["in_dir"] is True
    assert out["all"] == []


@pytest.mark.parametrize(
    ("package", "name", "module"),
    [
        ("swim", "ThreadedNode", "swim.runtime.threaded"),
        ("swim.runtime", "Node", "swim.runtime.node"),
        ("transport", "open_udp_tcp_transport", "transport.udp"),
        ("transport", "MemoryNetwork", "transport.memory"),
    ],
)
def test_a_lazy_name_loads_its_module_on_first_use(package: str, name: str, module: str) -> None:
    out = _python(
        f"import json, sys, importlib\n"
        f"pkg = importlib.import_module({package!r})\n"
        f"before = {module!r} in sys.modules\n"
        f"value = getattr(pkg, {name!r})\n"
        f"print(json.dumps({{'before': before, 'after': {module!r} in sys.modules,"
        f" 'same': value is getattr(sys.modules[{module!r}], {name!r}),"
        f" 'all': [n for n in pkg.__all__ if not hasattr(pkg, n)]}}))"
    )
    assert out == {"before": False, "after": True, "same": True, "all": []}


def test_an_unknown_name_is_an_attribute_error() -> None:
    import swim
    import swim.runtime
    import transport

    for package in (swim, swim.runtime, transport):
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            package.Nope  # noqa: B018


def test_each_command_module_registers_exactly_its_commands() -> None:
    def commands(parser: object) -> set[str]:
        sub = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
        return set(sub.choices)

    assert commands(cli.build_parser()) == set(cli.COMMANDS)
    for command, module in cli.COMMANDS.items():
        assert commands(cli.build_parser(command)) == {
            c for c, m in cli.COMMANDS.items() if m == module
        }


@pytest.mark.parametrize(
    ("argv", "command"),
    [(["agent", "--name", "a"], "agent"), (["--help"], None), ([], None),
     (["-h", "sim", "--nodes", "3"], "sim")],
)
def test_the_command_is_the_first_argument_that_is_not_an_option(
    argv: list[str], command: str | None
) -> None:
    assert cli.command_of(argv) == command


def imported_modules(log: str) -> set[str]:
    """Module names from ``-X importtime`` lines in `log`."""
    names = set()
    for line in log.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


#: Modules no agent or client command needs at start.
NEVER_AT_START = ("rich", "prometheus_client", "simulations", "trio.testing", "pytest")
#: Modules an agent without HTTP checks or a bad setting never needs: the HTTP check's
#: urllib.request (with http.client and email) and the "did you mean" hint's difflib.
NOT_AT_AGENT_START = ("urllib.request", "http", "email", "difflib")


def _loaded(modules: set[str], roots: Iterable[str]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


@pytest.mark.slow
async def test_a_running_agent_and_a_json_client_load_only_what_they_use(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trio

    from swim.agent.cluster import LocalCluster, agent_command
    from swim.agent.output import format_addr

    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    async with LocalCluster.open(tmp_path, profile="local") as cluster:
        agent = await cluster.start(cluster.define("lean"))
        clients = {}
        for mode in ("--json", None):
            args = ["members", "--rpc", format_addr(agent.rpc), *([mode] if mode else [])]
            with trio.fail_after(60):
                result = await trio.run_process(
                    [*agent_command(), *args], capture_stdout=True, capture_stderr=True,
                    check=False, env=dict(os.environ),
                )
            assert result.returncode == 0, result.stderr
            clients[mode] = imported_modules(result.stderr.decode())
        await cluster.stop_all()
    agent_modules = imported_modules(agent.log_path.read_text())

    assert "swim.agent.agent" in agent_modules and "trio" in agent_modules
    assert _loaded(agent_modules, NEVER_AT_START) == []
    assert _loaded(agent_modules, NOT_AT_AGENT_START) == []
    assert _loaded(agent_modules, ["swim.agent.demo", "swim.agent.cluster"]) == []
    # `swim agent` builds only its own parser: the client commands are not imported.
    assert _loaded(agent_modules, ["swim.agent.cli", "swim.agent.client"]) == []
    # Without --event-handler, the handler runner is not imported; without a query or a
    # key command, neither are the query streams and the runtime's key operations.
    assert _loaded(
        agent_modules, ["swim.agent.handler_runner", "swim.runtime.keyops", "swim.runtime.queries"]
    ) == []
    # Without --check, neither are the check runners and the process helpers they share.
    assert _loaded(agent_modules, ["swim.agent.check_runs", "swim.agent.processes"]) == []
    # A SWIM-mode agent loads of the stable-view mode only its parameters (in Config).
    assert _loaded(agent_modules, ["swim.core.stable"]) == [
        "swim.core.stable", "swim.core.stable.params"
    ]
    assert _loaded(clients["--json"], NEVER_AT_START) == []
    # The table needs rich, which shows the import log is read right.
    assert "rich" in clients[None]


def test_the_simulator_command_does_not_load_the_agent() -> None:
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    result = subprocess.run(
        [sys.executable, "-m", "swim.cli", "sim", "--help"], capture_output=True, text=True,
        check=True, cwd=ROOT, env=env, timeout=60,
    )
    modules = imported_modules(result.stderr)
    assert "simulations.cli" in modules and "simulations.engine" in modules
    assert _loaded(modules, ["swim.agent", "rich", "prometheus_client"]) == []
