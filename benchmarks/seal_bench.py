"""Cost of the security layer per 1,400-byte datagram: seal and open, sealed and plaintext.

    .venv/bin/python -m benchmarks.seal_bench

AES-256-GCM with ``os.urandom`` nonces, as the runtime will run it, beside the bare
`AESGCM` calls (the floor) so the Python overhead of `Sealer` shows; then plaintext with
its CRC-32. Each figure is the best of five timed batches (the machine is shared).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from swim.security import Keyring, Sealer

SIZE = 1400
BATCH = 20_000
REPEATS = 5
NOW = 1_700_000_000.0


def best_per_op(run: Callable[[], None]) -> float:
    """Seconds per operation: the best of REPEATS batches of BATCH operations."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        best = min(best, (time.perf_counter() - started) / BATCH)
    return best


def report(name: str, seconds: float) -> None:
    print(f"  {name:<34} {1 / seconds:>11,.0f} ops/s  {seconds * 1e6:6.2f} µs/op")


def main() -> int:
    payload = os.urandom(SIZE)
    key = os.urandom(32)
    aead = AESGCM(key)
    nonce = os.urandom(12)
    aad = os.urandom(30)
    sealed_bare = aead.encrypt(nonce, payload, aad)
    print(f"security layer, {SIZE}-byte datagrams (best of {REPEATS} x {BATCH:,})")

    def bare_encrypt() -> None:
        for _ in range(BATCH):
            aead.encrypt(os.urandom(12), payload, aad)

    def bare_decrypt() -> None:
        for _ in range(BATCH):
            aead.decrypt(nonce, sealed_bare, aad)

    ring = Keyring(key)
    alice = Sealer(keyring=ring, label="bench", sender_id=os.urandom(8), random_bytes=os.urandom)
    packets: list[bytes] = []

    def seal() -> None:
        packets.clear()
        for _ in range(BATCH):
            packets.append(alice.seal(payload, now=NOW))

    def open_sealed() -> None:
        # A fresh receiver per batch: every packet is new to it, none is a replay.
        bob = Sealer(keyring=ring, label="bench", sender_id=os.urandom(8),
                     random_bytes=os.urandom)
        for packet in packets:
            bob.open_untrusted(packet, now=NOW)

    plain_alice = Sealer(keyring=None, label="bench", sender_id=os.urandom(8),
                         random_bytes=os.urandom)
    plain_bob = Sealer(keyring=None, label="bench", sender_id=os.urandom(8),
                       random_bytes=os.urandom)
    plain_packet = plain_alice.seal(payload, now=NOW)

    def seal_plain() -> None:
        for _ in range(BATCH):
            plain_alice.seal(payload, now=NOW)

    def open_plain() -> None:
        for _ in range(BATCH):
            plain_bob.open_untrusted(plain_packet, now=NOW)

    encrypt_s = best_per_op(bare_encrypt)
    decrypt_s = best_per_op(bare_decrypt)
    seal_s = best_per_op(seal)
    open_s = best_per_op(open_sealed)
    report("AESGCM.encrypt + os.urandom (floor)", encrypt_s)
    report("AESGCM.decrypt (floor)", decrypt_s)
    report("Sealer.seal, AES-256-GCM", seal_s)
    report("Sealer.open_untrusted, AES-256-GCM", open_s)
    report("Sealer.seal, plaintext + CRC-32", best_per_op(seal_plain))
    report("Sealer.open_untrusted, plaintext", best_per_op(open_plain))
    print(
        f"  Python overhead over the AES calls: seal {(seal_s - encrypt_s) * 1e6:.2f} µs, "
        f"open {(open_s - decrypt_s) * 1e6:.2f} µs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
