"""`swim sim` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def swim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swim.cli", "sim", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_summary_reports_detection_and_traffic() -> None:
    proc = swim("--nodes", "20", "--duration", "40", "--seed", "3", "--kill", "2@10")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "20 members, 40 s simulated, seed 3" in out
    assert out.count(" crash at   10.00: first suspected") == 2
    assert "false positives: 0" in out
    assert "traffic per member per protocol period" in out


def test_json_output_is_one_object_with_seed_and_config() -> None:
    proc = swim("--nodes", "12", "--duration", "60", "--seed", "5", "--kill", "1@10",
                "--partition", "0-3/4-7@20:30", "--pause", "1:2:3", "--loss", "0.05",
                "--mode", "wire", "--trace", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["seed"] == 5 and data["mode"] == "wire"
    assert data["scenario"]["config"]["probe_interval_s"] == 1.0
    assert data["scenario"]["network"]["link"]["loss"] == 0.05
    kinds = sorted(f["type"] for f in data["scenario"]["faults"])
    assert kinds == ["Crash", "Partition", "Pause"]
    assert len(data["detections"]) == 1
    assert {"total", "by_healthy", "by_faulty", "about_healthy"} <= set(data["false_positives"])
    assert len(data["members"]) == 12
    assert data["trace_digest"] and len(data["trace_digest"]) == 64
    # Same command, same run.
    again = json.loads(swim("--nodes", "12", "--duration", "60", "--seed", "5", "--kill",
                            "1@10", "--partition", "0-3/4-7@20:30", "--pause", "1:2:3",
                            "--loss", "0.05", "--mode", "wire", "--trace",
                            "--json").stdout)
    assert again["trace_digest"] == data["trace_digest"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "0"], "must be >= 1"),
        (["--duration", "-5"], "positive number"),
        (["--loss", "1.5"], "within [0, 1]"),
        (["--kill", "x@y"], "expected K or K@T"),
        (["--pause", "1:2"], "expected C:D:I"),
        (["--partition", "0-3"], "expected groups"),
        (["--partition", "0-3/4-7@30:20"], "heal time must follow"),
        (["--profile", "moon"], "invalid choice"),
        (["--mode", "bytes"], "invalid choice"),
        (["--nodes", "5", "--kill", "9"], "non-seed members left"),
        (["--nodes", "5", "--partition", "0-1/2-9"], "does not exist"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_error(args: list[str], message: str) -> None:
    proc = swim(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


def test_progress_bar_goes_to_stderr_only() -> None:
    proc = swim("--nodes", "300", "--duration", "60", "--start", "converged", "--progress",
                "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["nodes"] == 300
