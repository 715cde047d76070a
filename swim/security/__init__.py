"""The security layer: keyrings, key files, and the sealer between codec and transport.

Sans-IO where it matters: `Keyring` and `Sealer` do no I/O, read no clock (``now`` is an
argument) and draw no randomness of their own (it is passed in), so the simulator runs
sealed clusters on virtual time. Only `load_keyring`, `save_keyring` and
`generate_key_text` touch the operating system.

A node is configured with a `SecurityConfig` (keyring or None, label, the plaintext
switches, the replay window); `swim.Node` builds its `Sealer` from it at start. The
default, ``SecurityConfig()``, is plaintext mode: checksum and empty label, no keys.

Typical use by a driver::

    ring = Keyring(decode_key(args.encrypt))           # or load_keyring(path)
    sealer = Sealer(keyring=ring, label="prod", sender_id=os.urandom(8),
                    random_bytes=os.urandom)
    wire = sealer.seal(codec_bytes, now=time.time())
    try:
        codec_bytes = sealer.open_untrusted(wire, now=time.time())
    except Rejected:
        pass                                           # dropped; counted in sealer.stats

See `swim.security.seal` for the wire formats, the overheads and the guarantees.

Errors: `Rejected` (with a `Reason`) is a peer's or the network's fault and only ever
comes from `Sealer.open_untrusted`; `SecurityError` and its subclasses `KeyringError` and
`KeyfileError` are the caller's mistakes.
"""

from swim.security.config import SecurityConfig
from swim.security.keyfile import KeyfileError, generate_key_text, load_keyring, save_keyring
from swim.security.keyring import (
    DEFAULT_KEY_SIZE,
    KEY_SIZES,
    Keyring,
    KeyringError,
    SecurityError,
    check_key,
    decode_key,
    encode_key,
    generate_key,
)
from swim.security.seal import (
    DEFAULT_MAX_SENDERS,
    DEFAULT_REPLAY_BITMAP_BITS,
    DEFAULT_REPLAY_WINDOW_S,
    LABEL_MAX_BYTES,
    PLAINTEXT_OVERHEAD,
    PLAINTEXT_V1,
    SEALED_OVERHEAD,
    SEALED_V1,
    SENDER_ID_BYTES,
    Reason,
    Rejected,
    Sealer,
    SealStats,
)

__all__ = [
    "DEFAULT_KEY_SIZE",
    "DEFAULT_MAX_SENDERS",
    "DEFAULT_REPLAY_BITMAP_BITS",
    "DEFAULT_REPLAY_WINDOW_S",
    "KEY_SIZES",
    "LABEL_MAX_BYTES",
    "PLAINTEXT_OVERHEAD",
    "PLAINTEXT_V1",
    "SEALED_OVERHEAD",
    "SEALED_V1",
    "SENDER_ID_BYTES",
    "KeyfileError",
    "Keyring",
    "KeyringError",
    "Reason",
    "Rejected",
    "SealStats",
    "Sealer",
    "SecurityConfig",
    "SecurityError",
    "check_key",
    "decode_key",
    "encode_key",
    "generate_key",
    "generate_key_text",
    "load_keyring",
    "save_keyring",
]
