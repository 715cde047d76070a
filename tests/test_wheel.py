"""The wheel as a user installs it: built from this tree, installed into a fresh venv,
its `swim` command run (issue 9's packaging check).

The fresh venv gets the dependencies from the development venv through a path entry
(no download): only the wheel's own contents, entry point and package data are new, and
the development tree is not on the path (the test runs from a temporary directory).
"""

from __future__ import annotations

import configparser
import os
import pathlib
import subprocess
import sys
import sysconfig
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The `swim` script of a fresh venv holding only the built wheel."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(dist), str(ROOT)],
        check=True, timeout=300, cwd=work,
    )
    (wheel,) = dist.glob("swim_lifeguard-*.whl")
    target = work / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    py = target / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    # Dependencies from the development venv (a plain path entry: its .pth files, the
    # editable install of this tree among them, are not processed).
    deps = sysconfig.get_paths()["purelib"]
    pathlib.Path(site, "zz_dev_dependencies.pth").write_text(deps + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
         "--target", site, str(wheel)],
        check=True, timeout=300, cwd=work,
    )
    # pip --target does not write scripts into the venv's bin: make the entry point
    # the way an installer would, from the wheel's own metadata.
    (info,) = pathlib.Path(site).glob("swim_lifeguard-*.dist-info")
    entry_points = configparser.ConfigParser()
    entry_points.read(info / "entry_points.txt")
    module, _, function = entry_points["console_scripts"]["swim"].partition(":")
    script = target / "bin" / "swim"
    script.write_text(
        f"#!{py}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
    )
    script.chmod(0o755)
    return script


def run(script: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run(
        [str(script), *args], check=False, capture_output=True, text=True, timeout=120,
        cwd=script.parent.parent, env=env,
    )


def test_the_installed_wheel_runs_every_entry(installed: pathlib.Path) -> None:
    import swim

    version = run(installed, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"swim {swim.__version__}"
    for command in ("members", "demo", "agent", "query", "keys", "sim"):
        result = run(installed, command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert "usage: swim" in result.stdout
    where = subprocess.run(
        [str(installed.parent / "python"), "-c", "import swim; print(swim.__file__)"],
        check=True, capture_output=True, text=True, timeout=60, cwd=installed.parent.parent,
    )
    assert str(ROOT) not in where.stdout  # the wheel's copy, not this tree
    assert "py.typed" in {p.name for p in pathlib.Path(where.stdout.strip()).parent.iterdir()}
