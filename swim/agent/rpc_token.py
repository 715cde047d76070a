"""Who may drive an agent: the RPC token and the per-user file that carries it.

Every RPC request must carry the agent's token (`swim.agent.rpc`). The agent takes it from
``--rpc-auth TOKEN`` or makes a random one, and writes it to a file only its own user can
read, named for the RPC address::

    $XDG_RUNTIME_DIR/swim/rpc-127.0.0.1-7373.token      (when XDG_RUNTIME_DIR is set)
    /tmp/swim-<uid>/rpc-127.0.0.1-7373.token            (otherwise: the system temp dir)

The directory is created 0700 and refused unless it is a real directory owned by this user
and closed to everyone else (another user could otherwise create it first and read the
tokens); the file is written 0600 and atomically replaced. Clients look in their own
user's directory, so the agent's user just works and any other user finds no token and is
refused; ``--rpc-auth TOKEN`` or ``SWIM_RPC_AUTH`` overrides the file. The file is
removed when the agent exits (a killed agent leaves a stale one, overwritten by the next
agent on that address).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import pathlib
import secrets
import stat
import tempfile

from swim.core.messages import Address

#: The environment variable a client takes its token from when ``--rpc-auth`` is not given.
TOKEN_ENV = "SWIM_RPC_AUTH"


class TokenFileError(Exception):
    """The token file cannot be written safely; the message says why."""


def _uid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0


def runtime_dir() -> pathlib.Path:
    """This user's directory for token files."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return pathlib.Path(xdg) / "swim"
    return pathlib.Path(tempfile.gettempdir()) / f"swim-{_uid()}"


def token_path(addr: Address) -> pathlib.Path:
    """Where the token of the agent whose RPC address is `addr` is kept."""
    host, port = addr
    return runtime_dir() / f"rpc-{host.replace(':', '_')}-{port}.token"


def new_token() -> str:
    """A random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def tokens_match(given: object, token: str) -> bool:
    """Whether `given` (from a request) is `token`, compared in constant time."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def _private_dir() -> pathlib.Path:
    directory = runtime_dir()
    directory.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise TokenFileError(f"{directory} is not a directory")
    if info.st_uid != _uid() or info.st_mode & 0o077:
        raise TokenFileError(
            f"{directory} is not private to this user (owner uid {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):04o}); remove it or set XDG_RUNTIME_DIR"
        )
    return directory


def write_token(addr: Address, token: str) -> pathlib.Path:
    """Write `token` for the agent at `addr` (0600, atomically); returns the file's path.

    Raises `TokenFileError` (an unsafe directory, or an OS error) with a clear message."""
    try:
        directory = _private_dir()
        path = token_path(addr)
        temporary = directory / f".{path.name}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                os.fchmod(file.fileno(), 0o600)
                file.write(token + "\n")
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise TokenFileError(
            f"cannot write the RPC token file in {runtime_dir()}: "
            f"{(exc.strerror or str(exc)).lower()}"
        ) from None
    return path


def read_token(addr: Address) -> str | None:
    """The token this user's file holds for `addr`; None if there is none to read."""
    try:
        text = token_path(addr).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def remove_token(addr: Address, token: str) -> None:
    """Remove the file for `addr` if it still holds `token` (not a later agent's)."""
    if read_token(addr) == token:
        with contextlib.suppress(OSError):
            token_path(addr).unlink()


def client_token(addr: Address) -> str | None:
    """The token a client sends when none is given: ``SWIM_RPC_AUTH``, else the file."""
    return os.environ.get(TOKEN_ENV) or read_token(addr)
