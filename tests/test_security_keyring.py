"""The keyring: keys as text, rotation rules, and the caller errors it raises."""

from __future__ import annotations

import base64
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swim.security import (
    DEFAULT_KEY_SIZE,
    Keyring,
    KeyringError,
    SecurityError,
    decode_key,
    encode_key,
    generate_key,
    generate_key_text,
)

K1 = bytes(range(32))
K2 = bytes(range(1, 33))
K3 = bytes(range(2, 18))  # AES-128


def test_primary_first_and_duplicates_dropped() -> None:
    ring = Keyring(K1, [K2, K1, K3, K2])
    assert ring.primary == K1
    assert ring.keys == (K1, K2, K3)
    assert len(ring) == 3
    assert K3 in ring and b"x" * 32 not in ring


def test_from_keys_needs_a_primary() -> None:
    assert Keyring.from_keys([K2, K1]).keys == (K2, K1)
    with pytest.raises(KeyringError, match="at least one key"):
        Keyring.from_keys([])


@pytest.mark.parametrize("size", [16, 24, 32])
def test_accepted_key_sizes(size: int) -> None:
    key = bytes(size)
    assert Keyring(key).primary == key


@pytest.mark.parametrize("size", [0, 1, 15, 17, 31, 33, 64])
def test_bad_key_sizes_refused(size: int) -> None:
    with pytest.raises(KeyringError, match=f"not {size} bytes"):
        Keyring(bytes(size))
    ring = Keyring(K1)
    with pytest.raises(KeyringError):
        ring.install(bytes(size))


def test_key_must_be_bytes() -> None:
    with pytest.raises(KeyringError, match="not str"):
        Keyring(encode_key(K1))  # type: ignore[arg-type]


def test_install_use_remove_rotation() -> None:
    ring = Keyring(K1)
    assert ring.install(K2) is True
    assert ring.install(K2) is False  # idempotent
    assert ring.keys == (K1, K2)
    ring.use(K2)
    assert ring.primary == K2
    assert ring.keys == (K2, K1)
    ring.use(K2)  # already primary: nothing changes
    assert ring.keys == (K2, K1)
    assert ring.remove(K1) is True
    assert ring.remove(K1) is False  # idempotent
    assert list(ring.keys) == [K2]


def test_remove_primary_refused() -> None:
    ring = Keyring(K1, [K2])
    with pytest.raises(KeyringError, match="cannot remove the primary key"):
        ring.remove(K1)
    assert ring.keys == (K1, K2)


def test_use_requires_install() -> None:
    ring = Keyring(K1)
    with pytest.raises(KeyringError, match="not installed"):
        ring.use(K2)
    assert ring.keys == (K1,)


def test_repr_shows_no_key_material() -> None:
    ring = Keyring(K1, [K2])
    text = repr(ring)
    assert "2 key" in text
    assert encode_key(K1) not in text and repr(K1) not in text


def test_encode_is_serf_base64() -> None:
    assert encode_key(K3) == base64.b64encode(K3).decode()
    assert decode_key("  " + encode_key(K1) + "\n") == K1


@given(st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_key_text_round_trip(key: bytes) -> None:
    assert decode_key(encode_key(key)) == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not base64!", "not valid base64"),
        ("QUJD*", "not valid base64"),
        ("AAECAwQFBgcICQoLDA0ODw", "not valid base64"),  # padding missing
        ("é", "not valid base64"),
        (base64.b64encode(bytes(20)).decode(), "decodes to 20 bytes"),
        (base64.b64encode(bytes(8)).decode(), "decodes to 8 bytes"),
    ],
)
def test_decode_key_errors(text: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        decode_key(text)


def test_decode_key_wants_text() -> None:
    with pytest.raises(KeyringError, match="not bytes"):
        decode_key(b"AAAA")  # type: ignore[arg-type]


def test_generate_uses_the_source_given() -> None:
    rng = random.Random(7)
    key = generate_key(rng.randbytes)
    assert key == random.Random(7).randbytes(DEFAULT_KEY_SIZE)
    assert len(Keyring.generate(random.Random(1).randbytes).primary) == 32
    assert len(generate_key(rng.randbytes, 16)) == 16
    with pytest.raises(KeyringError):
        generate_key(rng.randbytes, 20)


def test_generate_key_text() -> None:
    texts = {generate_key_text() for _ in range(4)}
    assert len(texts) == 4
    assert all(len(decode_key(text)) == 32 for text in texts)


def test_errors_are_caller_errors() -> None:
    assert issubclass(KeyringError, SecurityError)
    assert issubclass(SecurityError, ValueError)
