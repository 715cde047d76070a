"""`SecurityConfig`: how a node seals its traffic, as one frozen value a driver turns into a
`Sealer` when the node starts.

The default, ``SecurityConfig()``, is plaintext mode with the empty label: no keys, but
every packet still carries the format byte, the label and a CRC-32, so a corrupted
datagram is dropped instead of decoded and two clusters with different labels never
merge. Give it a `Keyring` to seal with AES-GCM.

This module imports no cryptography: a `Keyring` does, and only once one is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from swim.security.keyring import SecurityError
from swim.security.seal import (
    DEFAULT_REPLAY_WINDOW_S,
    LABEL_MAX_BYTES,
    PLAINTEXT_OVERHEAD,
    SEALED_OVERHEAD,
    Sealer,
)

if TYPE_CHECKING:
    from swim.security.keyring import Keyring


def _label(value: object) -> str:
    if not isinstance(value, str):
        raise SecurityError(f"a label is a str, not {type(value).__name__}")
    size = len(value.encode("utf-8"))
    if size > LABEL_MAX_BYTES:
        raise SecurityError(f"a label is at most {LABEL_MAX_BYTES} bytes (UTF-8), not {size}")
    return value


def _window(_: object, __: object, value: float) -> None:
    if not value > 0 or math.isinf(value):
        raise SecurityError(f"replay_window_s must be positive and finite, not {value!r}")


@attrs.frozen(kw_only=True)
class SecurityConfig:
    """The security settings of one node (see `swim.security.seal` for what each buys).

    *keyring* ``None`` is plaintext mode (checksum and label, no authentication); with a
    keyring every packet is sealed with its primary key and opened with any of its keys.
    The keyring is shared, not copied: `Keyring.install` / `use` / `remove` on it take
    effect at once in the running node (key rotation without a restart).

    *accept_plaintext* and *send_plaintext* matter only with a keyring; they are the
    rolling upgrade from a plaintext cluster: restart every member with the keyring and
    both switches on, then turn *send_plaintext* off everywhere, then *accept_plaintext*.
    """

    #: Keys that seal (the primary) and open (all); None: plaintext mode.
    keyring: Keyring | None = None
    #: The cluster label, sent with every packet (authenticated when sealed). Packets of
    #: another label are dropped and counted, keys or not.
    label: str = attrs.field(default="", converter=_label)
    #: With a keyring: also accept plaintext packets (rolling upgrade).
    accept_plaintext: bool = False
    #: With a keyring: send plaintext anyway (the first step of a rolling upgrade).
    send_plaintext: bool = False
    #: A sealed packet is accepted only if its timestamp is within this many seconds of
    #: the receiver's wall clock, and at most once in that window.
    replay_window_s: float = attrs.field(default=DEFAULT_REPLAY_WINDOW_S, validator=_window)

    @property
    def encrypted(self) -> bool:
        """Whether this node holds keys (it may still send plaintext, see the switches)."""
        return self.keyring is not None

    @property
    def label_bytes(self) -> bytes:
        return self.label.encode("utf-8")

    @property
    def overhead(self) -> int:
        """The most bytes sealing adds to one packet for a node with these settings.

        With a keyring it is the sealed overhead even while *send_plaintext* is on, so a
        packet budget computed once still holds after the switch is turned off.
        """
        base = SEALED_OVERHEAD if self.keyring is not None else PLAINTEXT_OVERHEAD
        return base + len(self.label_bytes)

    def sealer(
        self,
        *,
        sender_id: bytes,
        random_bytes: Callable[[int], bytes],
        not_before: float = -math.inf,
    ) -> Sealer:
        """A `Sealer` with these settings (one per process run: *sender_id* is fresh)."""
        return Sealer(
            keyring=self.keyring,
            sender_id=sender_id,
            random_bytes=random_bytes,
            label=self.label_bytes,
            accept_plaintext=self.accept_plaintext,
            send_plaintext=self.send_plaintext,
            replay_window_s=self.replay_window_s,
            not_before=not_before,
        )


def sealer_overhead(sealer: Sealer) -> int:
    """The most bytes *sealer* may add to a packet: the sealed overhead if it has keys
    (the plaintext switches may be turned off later), the plaintext overhead if not."""
    base = SEALED_OVERHEAD if sealer.keyring is not None else PLAINTEXT_OVERHEAD
    return base + len(sealer.label)
