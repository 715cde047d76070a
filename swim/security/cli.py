"""``swim keygen``: print a fresh AES-256 key as base64 (for ``--encrypt`` or a keyring file)."""

from __future__ import annotations

import argparse
from typing import Any

from swim.security.keyfile import generate_key_text


def register(sub: Any) -> None:
    """Add the ``keygen`` subcommand to the ``swim`` parser's subparsers *sub*."""
    p: argparse.ArgumentParser = sub.add_parser(
        "keygen", help="print a new 32-byte (AES-256) encryption key as base64"
    )
    p.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    print(generate_key_text())
    return 0
