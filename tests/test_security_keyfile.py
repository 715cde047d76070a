"""Keyring files: Serf's JSON format, created 0600, refused when others may read them."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import stat

import pytest

from swim.security import (
    KeyfileError,
    Keyring,
    SecurityError,
    decode_key,
    encode_key,
    load_keyring,
    save_keyring,
)
from swim.security import cli as security_cli

K1 = bytes(range(32))
K2 = bytes(range(1, 33))
K3 = bytes(range(2, 18))

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode_of(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write(path: pathlib.Path, text: str, mode: int = 0o600) -> pathlib.Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_save_then_load_round_trip(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    save_keyring(path, Keyring(K2, [K1, K3]))
    assert load_keyring(path).keys == (K2, K1, K3)
    assert json.loads(path.read_text()) == [encode_key(K2), encode_key(K1), encode_key(K3)]


def test_created_0600_whatever_the_umask(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    old = os.umask(0)
    try:
        save_keyring(path, Keyring(K1))
    finally:
        os.umask(old)
    assert mode_of(path) == 0o600


def test_rewrite_replaces_a_wide_file_with_0600(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "keyring.json", "[]", 0o644)
    save_keyring(path, Keyring(K1))
    assert mode_of(path) == 0o600
    assert load_keyring(path).keys == (K1,)


def test_atomic_rewrite_leaves_no_temp_files(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    ring = Keyring(K1)
    save_keyring(path, ring)
    with path.open("rb") as old:
        before = old.read()
        for key in (K2, K3):
            ring.install(key)
            ring.use(key)
            save_keyring(path, ring)
        # Replaced by a rename, not rewritten in place: the old file is intact.
        old.seek(0)
        assert old.read() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json"]
    assert load_keyring(path).keys == (K3, K2, K1)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    save_keyring(path, Keyring(K1))
    # A directory where the file should go: the rename fails after the temp file is written.
    target = tmp_path / "dir"
    target.mkdir()
    (target / "inside").write_text("x")
    with pytest.raises(KeyfileError, match="cannot write keyring file"):
        save_keyring(target, Keyring(K2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "keyring.json"]
    assert load_keyring(path).keys == (K1,)


def test_save_into_missing_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(KeyfileError, match="cannot write keyring file"):
        save_keyring(tmp_path / "nope" / "keyring.json", Keyring(K1))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666, 0o610])
def test_refuses_file_open_to_group_or_others(tmp_path: pathlib.Path, mode: int) -> None:
    path = write(tmp_path / "keyring.json", json.dumps([encode_key(K1)]), mode)
    with pytest.raises(KeyfileError) as info:
        load_keyring(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert "chmod 600" in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_accepted(tmp_path: pathlib.Path, mode: int) -> None:
    path = write(tmp_path / "keyring.json", json.dumps([encode_key(K1)]), mode)
    assert load_keyring(path).keys == (K1,)


def test_0644_message_reads_well(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "k.json", json.dumps([encode_key(K1)]), 0o644)
    with pytest.raises(KeyfileError, match=r"has mode 0644, so group or others can access it"):
        load_keyring(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not JSON"),
        (b"[", "is not JSON"),
        (b"\xff", "is not JSON"),
        (b"{}", "holds a JSON object"),
        (b'"abc"', "holds a JSON string"),
        (b"[]", "holds no keys"),
        (b"[1]", "item 0 is a JSON number"),
        (json.dumps([encode_key(K1), None]).encode(), "item 1 is a JSON null"),
        (b'[["AAAA"]]', "item 0 is a JSON array"),
        (b'["not base64!"]', "item 0: key text is not valid base64"),
        (b'["AAAA"]', "item 0: key text decodes to 3 bytes"),
        (b"[" * 100_000, "nested too deeply|is not JSON"),
    ],
)
def test_malformed_files(tmp_path: pathlib.Path, content: bytes, message: str) -> None:
    path = tmp_path / "keyring.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyfileError, match=message) as info:
        load_keyring(path)
    assert str(path) in str(info.value)


def test_huge_file_refused_without_reading_it_all(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    with path.open("wb") as f:
        f.truncate(4 << 20)
    path.chmod(0o600)
    with pytest.raises(KeyfileError, match="larger than"):
        load_keyring(path)


def test_missing_file_and_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(KeyfileError, match=r"cannot open keyring file .*missing\.json"):
        load_keyring(tmp_path / "missing.json")
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(KeyfileError, match="not a regular file"):
        load_keyring(tmp_path / "d")


def test_serf_file_loads(tmp_path: pathlib.Path) -> None:
    # The layout `serf keys` writes: an indented array, primary first.
    text = '[\n  "QHOYjmYlxSCBhdfiolhtDQ==",\n  "daZ2wnuw+Ql+2hCm7vQB6A=="\n]\n'
    path = write(tmp_path / "serf.keyring", text)
    ring = load_keyring(path)
    assert ring.keys == (decode_key("QHOYjmYlxSCBhdfiolhtDQ=="),
                         decode_key("daZ2wnuw+Ql+2hCm7vQB6A=="))


def test_keyfile_error_is_a_caller_error() -> None:
    assert issubclass(KeyfileError, SecurityError)


def test_keygen_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="swim")
    security_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keygen"])
    assert args.handler(args) == 0
    line = capsys.readouterr().out
    assert line.endswith("\n") and len(decode_key(line)) == 32
