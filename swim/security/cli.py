"""``swim keygen``: print a fresh AES-256 key as base64 (for ``--encrypt`` or a keyring file),
or with ``--keyring-file PATH`` write a new keyring file holding one (created 0600).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from swim.security.keyfile import KeyfileError, generate_key_text, save_keyring
from swim.security.keyring import Keyring, decode_key


def register(sub: Any) -> None:
    """Add the ``keygen`` subcommand to the ``swim`` parser's subparsers *sub*."""
    p: argparse.ArgumentParser = sub.add_parser(
        "keygen",
        help="print a new 32-byte (AES-256) encryption key as base64",
        description=(
            "Print a new 32-byte (AES-256) key as base64, for `swim agent --encrypt`; with "
            "--keyring-file, write it to a new keyring file instead (mode 0600), for "
            "`swim agent --keyring-file`."
        ),
    )
    p.add_argument(
        "--keyring-file",
        metavar="PATH",
        help="create this keyring file holding the new key (refused if it exists)",
    )
    p.add_argument(
        "--json", action="store_true",
        help='print {"key": KEY}, or {"keyring_file": PATH} with --keyring-file',
    )
    p.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    text = generate_key_text()
    path = getattr(args, "keyring_file", None)
    as_json = getattr(args, "json", False)
    if path is None:
        print(json.dumps({"key": text}) if as_json else text)
        return 0
    if os.path.lexists(path):
        print(
            f"swim keygen: {path} already exists; not overwriting a keyring "
            "(remove it first, or choose another path)",
            file=sys.stderr,
        )
        return 1
    try:
        save_keyring(path, Keyring(decode_key(text)))
    except KeyfileError as exc:
        print(f"swim keygen: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"keyring_file": path}, ensure_ascii=False))
    else:
        print(f"wrote a new keyring with one key to {path} (mode 0600)")
    return 0
