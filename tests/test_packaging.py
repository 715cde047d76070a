"""What a wheel needs: one version, the runtime dependencies the commands import."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tomllib

import swim

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_swim_version_prints_the_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "swim.cli", "--version"], capture_output=True, text=True,
        check=True, cwd=ROOT, timeout=60,
    )
    assert result.stdout.strip() == f"swim {swim.__version__}"


def test_the_version_has_one_source() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "swim.__version__"}


def test_every_package_the_commands_import_is_a_runtime_dependency() -> None:
    # rich draws `swim members` and `swim demo`; without it a plain wheel install fails.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = {
        dep.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        for dep in project["project"]["dependencies"]
    }
    assert {"trio", "attrs", "cbor2", "rich"} <= names
