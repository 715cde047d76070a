"""Execute the research notebooks in a real Jupyter kernel (nbclient, not nbmake).

``python -m tests.notebook_runner [--scale full] [NOTEBOOK ...]`` (``make notebooks``)
runs each notebook (all of ``notebooks/`` by default) at the given size
(``SWIM_NOTEBOOK_SCALE``, given to the kernel only), drops the per-cell execution
timestamps, refuses to write outputs that name a path on this machine, and writes the
executed notebook back in place, so the committed notebooks carry their figures.
`tests/test_notebooks.py` calls `execute` at the reduced size and keeps the result in
a temporary folder, never over the committed file.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys
import tempfile
import time
from typing import Any

import nbclient
import nbformat

from simulations.experiments import SCALE_ENV

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"

# Absolute paths that would tie an output to this machine (or leak a home folder).
_MACHINE_PATH = re.compile(r"(/work/|/tmp/|/root/|/home/|/Users/|/var/folders/)")


def notebooks() -> list[pathlib.Path]:
    """Every notebook in ``notebooks/``, sorted by name."""
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def execute(path: pathlib.Path, *, scale: str, timeout_s: int = 1200) -> Any:
    """Run `path` top to bottom in a fresh ``python3`` kernel whose environment has
    ``SWIM_NOTEBOOK_SCALE=scale`` and whose working folder is the notebook's; return
    the executed notebook (the file is not touched). Raises
    `nbclient.exceptions.CellExecutionError` at the first failing cell."""
    # nbformat ships py.typed but leaves read() unannotated.
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = nbclient.NotebookClient(
        notebook, timeout=timeout_s, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env={**os.environ, SCALE_ENV: scale})
    return notebook


def outputs(notebook: Any) -> list[dict[str, Any]]:
    """Every output of every code cell, in order."""
    return [out for cell in notebook.cells if cell.cell_type == "code"
            for out in cell.get("outputs", [])]


def machine_paths(notebook: Any) -> list[str]:
    """The absolute local paths (see `_MACHINE_PATH`) the outputs mention."""
    found: list[str] = []
    for out in outputs(notebook):
        text = json.dumps({k: v for k, v in out.items() if k != "data"} | {
            "data": {mime: v for mime, v in out.get("data", {}).items()
                     if not mime.startswith("image/")}})
        found += [m.group(0) + text[m.end():m.end() + 40]
                  for m in _MACHINE_PATH.finditer(text)]
        if str(ROOT) in text:
            found.append(str(ROOT))
    return found


def figure_cells(notebook: Any) -> list[Any]:
    """The code cells tagged ``figure`` (each must render an image)."""
    return [cell for cell in notebook.cells
            if cell.cell_type == "code" and "figure" in cell.metadata.get("tags", [])]


def has_image(cell: Any) -> bool:
    """The cell has a PNG among its outputs."""
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def summary(notebook: Any) -> dict[str, Any]:
    """The notebook's headline numbers: the ``application/json`` output of its last
    cell that has one."""
    for out in reversed(outputs(notebook)):
        data = out.get("data", {})
        if "application/json" in data:
            value = data["application/json"]
            if not isinstance(value, dict):
                raise TypeError("a notebook summary is a JSON object")
            return value
    raise LookupError("the notebook displayed no JSON summary")


def scrub(notebook: Any) -> None:
    """Drop what changes on every run without meaning anything (execution timestamps)."""
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("ci", "full"), default="full")
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path)
    args = parser.parse_args(argv)
    for path in args.notebooks or notebooks():
        began = time.perf_counter()
        notebook = execute(path, scale=args.scale)
        scrub(notebook)
        leaks = machine_paths(notebook)
        if leaks:
            print(f"{path}: outputs name local paths, not written: {leaks[:5]}", file=sys.stderr)
            return 1
        missing = [i for i, cell in enumerate(figure_cells(notebook)) if not has_image(cell)]
        if missing:
            print(f"{path}: figure cells {missing} rendered no image, not written",
                  file=sys.stderr)
            return 1
        # Write next to the target, then rename: an interrupted run leaves the old file.
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".ipynb",
                                         delete=False, encoding="utf-8") as tmp:
            nbformat.write(notebook, tmp)  # type: ignore[no-untyped-call]
        os.replace(tmp.name, path)
        print(f"{path.name}: executed at scale {args.scale} in "
              f"{time.perf_counter() - began:.0f} s, written", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
