"""The parts of the security layer that touch the operating system: keyring files and
fresh keys from the OS's random source. Kept apart so the sealing modules stay sans-IO.

A keyring file is Serf's format: a JSON array of base64 keys, primary first::

    [
      "QHOYjmYlxSCBhdfiolhtDQ==",
      "daZ2wnuw+Ql+2hCm7vQB6A=="
    ]

`save_keyring` writes it atomically: a temporary file in the same directory, created 0600,
written, fsynced, renamed over the target, then the directory fsynced, so a reader sees
the old file or the new one, never a torn one, and no temporary file is left behind.
`load_keyring` refuses a file that group or others may read, write or execute (any of the
bits 0o077), and a file that is not a JSON array of at least one valid key; every refusal
is a `KeyfileError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from typing import Final

from swim.security.keyring import (
    DEFAULT_KEY_SIZE,
    Keyring,
    KeyringError,
    SecurityError,
    decode_key,
    encode_key,
    generate_key,
)

#: Largest keyring file read (a ring of 10,000 keys is ~500 KB).
MAX_KEYFILE_BYTES: Final = 1 << 20
#: Permission bits a keyring file must not have: any access by group or others.
FORBIDDEN_MODE_BITS: Final = 0o077


class KeyfileError(SecurityError):
    """A keyring file that cannot be read, is unsafe, or is malformed."""


def generate_key_text(size: int = DEFAULT_KEY_SIZE) -> str:
    """A fresh key from the OS's random source, as base64 text (``swim keygen``)."""
    return encode_key(generate_key(secrets.token_bytes, size))


def load_keyring(path: str | os.PathLike[str]) -> Keyring:
    """The keyring stored in the file at *path* (primary first).

    Raises `KeyfileError` if the file cannot be read, is not a regular file, may be
    accessed by group or others, or does not hold a JSON array of base64 keys.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise KeyfileError(f"cannot open keyring file {name}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)  # the file opened, not whatever the name points to now
        if not stat.S_ISREG(info.st_mode):
            raise KeyfileError(f"keyring file {name} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & FORBIDDEN_MODE_BITS:
            raise KeyfileError(
                f"keyring file {name} has mode {mode:04o}, so group or others can access "
                f"it; refusing to use it (run: chmod 600 {name})"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_KEYFILE_BYTES + 1)
    except OSError as exc:
        raise KeyfileError(f"cannot read keyring file {name}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_KEYFILE_BYTES:
        raise KeyfileError(f"keyring file {name} is larger than {MAX_KEYFILE_BYTES} bytes")
    try:
        items = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeyfileError(
            f"keyring file {name} is not JSON (expected an array of base64 keys): {exc}"
        ) from None
    except RecursionError:
        raise KeyfileError(f"keyring file {name} is nested too deeply") from None
    if not isinstance(items, list):
        raise KeyfileError(
            f"keyring file {name} holds a JSON {_json_type(items)}, "
            "not an array of base64 keys"
        )
    if not items:
        raise KeyfileError(f"keyring file {name} holds no keys (it needs a primary key)")
    keys = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise KeyfileError(
                f"keyring file {name}: item {index} is a JSON {_json_type(item)}, "
                "not a base64 key"
            )
        try:
            keys.append(decode_key(item))
        except KeyringError as exc:
            raise KeyfileError(f"keyring file {name}: item {index}: {exc}") from None
    return Keyring.from_keys(keys)


def save_keyring(path: str | os.PathLike[str], keyring: Keyring) -> None:
    """Write *keyring* to *path* atomically, readable and writable by the owner only."""
    name = os.fspath(path)
    text = json.dumps([encode_key(key) for key in keyring.keys], indent=2) + "\n"
    directory, base = os.path.split(os.path.abspath(name))
    temp = os.path.join(directory, f".{base}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(temp, flags, 0o600)
    except OSError as exc:
        raise KeyfileError(f"cannot write keyring file {name}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # whatever the umask, never wider than 0600
            f.write(text.encode("ascii"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, name)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise KeyfileError(f"cannot write keyring file {name}: {exc.strerror}") from exc
        raise
    _fsync_directory(directory)


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
