"""The keyring: one primary key that seals, any number of secondary keys that open.

Keys are raw AES keys of 16, 24 or 32 bytes (AES-128/192/256-GCM); fresh keys are 32
bytes (AES-256). As text they are standard base64, as Serf prints and reads them
(``serf keygen``, ``-encrypt``, the keyring file).

Rotation, as Serf does it cluster-wide: ``install`` the new key everywhere (every member
can now open it), ``use`` it everywhere (members seal with it; members that have not
switched yet still open it, and the old key still opens on every member), then ``remove``
the old key everywhere. Removing the primary key is refused: a member must always be able
to seal. ``install`` and ``remove`` are idempotent, so a retried cluster-wide operation
reports success on members that already did it.

This module does no I/O and draws no randomness of its own: `generate_key` and
`Keyring.generate` take the random source as an argument (the runtime passes
``os.urandom`` or ``secrets.token_bytes``, the simulator a seeded rng's ``randbytes``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Key sizes in bytes accepted: AES-128, AES-192 and AES-256.
KEY_SIZES: Final = frozenset({16, 24, 32})
#: Size of keys made by `generate_key` and `Keyring.generate` (AES-256).
DEFAULT_KEY_SIZE: Final = 32


class SecurityError(ValueError):
    """The caller's mistake in using the security layer (never a peer's bad input)."""


class KeyringError(SecurityError):
    """A bad key, bad key text, or a keyring operation that is not allowed."""


def check_key(key: bytes) -> bytes:
    """*key* as `bytes` if it is a usable AES key, else `KeyringError`."""
    if not isinstance(key, bytes | bytearray | memoryview):
        raise KeyringError(f"a key is bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) not in KEY_SIZES:
        raise KeyringError(
            f"a key is 16, 24 or 32 bytes (AES-128/192/256), not {len(key)} bytes"
        )
    return key


def encode_key(key: bytes) -> str:
    """*key* as standard base64 text (Serf's format)."""
    return base64.b64encode(check_key(key)).decode("ascii")


def decode_key(text: str) -> bytes:
    """The key written as base64 *text* (surrounding whitespace ignored).

    Raises `KeyringError` if the text is not base64 or does not decode to 16, 24 or 32
    bytes.
    """
    if not isinstance(text, str):
        raise KeyringError(f"key text is a str, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise KeyringError("key text is empty; make one with `swim keygen`")
    try:
        key = base64.b64decode(stripped.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise KeyringError(
            "key text is not valid base64 (make one with `swim keygen`)"
        ) from None
    if len(key) not in KEY_SIZES:
        raise KeyringError(
            f"key text decodes to {len(key)} bytes; a key is 16, 24 or 32 bytes "
            "(AES-128/192/256)"
        )
    return key


def generate_key(random_bytes: Callable[[int], bytes], size: int = DEFAULT_KEY_SIZE) -> bytes:
    """A fresh key of *size* bytes drawn from *random_bytes* (e.g. ``os.urandom``)."""
    if size not in KEY_SIZES:
        raise KeyringError(f"a key is 16, 24 or 32 bytes, not {size}")
    return check_key(random_bytes(size))


@attrs.define(eq=False, init=False)
class Keyring:
    """Keys that open, the first of which (the primary) seals.

    Changes take effect at once for every `Sealer` holding this keyring. Caller mistakes
    (a bad key, using a key not installed, removing the primary) raise `KeyringError`.
    """

    #: Primary first, then secondary keys in the order they were installed.
    _keys: list[bytes]
    #: One AES-GCM cipher per key, in the same order (built once per change).
    _aeads: tuple[AESGCM, ...]

    def __init__(self, primary: bytes, secondary: Iterable[bytes] = ()) -> None:
        keys = [check_key(primary)]
        for raw in secondary:
            key = check_key(raw)
            if key not in keys:
                keys.append(key)
        self._keys = keys
        self._aeads = ()
        self._rebuild()

    @classmethod
    def from_keys(cls, keys: Sequence[bytes]) -> Keyring:
        """A keyring of *keys*, the first one primary (duplicates are dropped)."""
        if not keys:
            raise KeyringError("a keyring needs at least one key (the primary)")
        return cls(keys[0], keys[1:])

    @classmethod
    def generate(
        cls, random_bytes: Callable[[int], bytes], size: int = DEFAULT_KEY_SIZE
    ) -> Keyring:
        """A keyring holding one fresh key drawn from *random_bytes*."""
        return cls(generate_key(random_bytes, size))

    @property
    def primary(self) -> bytes:
        """The key that seals."""
        return self._keys[0]

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every key, primary first."""
        return tuple(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def install(self, key: bytes) -> bool:
        """Add *key* as a secondary key (it opens, it does not seal).

        Returns whether the key was new; installing a key already held changes nothing.
        """
        key = check_key(key)
        if key in self._keys:
            return False
        self._keys.append(key)
        self._rebuild()
        return True

    def use(self, key: bytes) -> None:
        """Make the installed *key* the primary; the old primary stays as a secondary."""
        key = check_key(key)
        if key not in self._keys:
            raise KeyringError("cannot use a key that is not installed; install it first")
        if key == self._keys[0]:
            return
        self._keys.remove(key)
        self._keys.insert(0, key)
        self._rebuild()

    def remove(self, key: bytes) -> bool:
        """Remove the secondary *key*; removing the primary is refused.

        Returns whether the key was held; removing a key not held changes nothing.
        """
        key = check_key(key)
        if key == self._keys[0]:
            raise KeyringError(
                "cannot remove the primary key; use another key first, then remove this one"
            )
        if key not in self._keys:
            return False
        self._keys.remove(key)
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        # Imported here, not at the top: a node in plaintext mode (no keyring) never
        # loads cryptography.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aeads = tuple(AESGCM(key) for key in self._keys)

    def __repr__(self) -> str:
        # Never print key material.
        return f"<Keyring: {len(self._keys)} key(s)>"
