"""Options that several `swim` subcommands share."""

from __future__ import annotations

import argparse

from swim.agent import settings
from swim.agent.settings import rpc_arg, token_arg


def add_rpc(
    p: argparse.ArgumentParser, text: str = "the agent's RPC address", *, serving: bool = False
) -> None:
    """``--rpc`` and ``--rpc-auth``: where the agent serves RPC (`serving`) or where a
    client finds it, and the token."""
    p.add_argument(
        "--rpc",
        type=rpc_arg,
        metavar="HOST:PORT",
        help=f"{text} (loopback; default 127.0.0.1:7373)" if serving else (
            f"{text} (loopback; default: ${settings.RPC_ADDR_ENV}, else 127.0.0.1:7373)"
        ),
    )
    p.add_argument(
        "--rpc-auth",
        type=token_arg,
        metavar="TOKEN",
        help=(
            "the token every RPC request must carry (default: a random one, written to a "
            "file only this user can read, where this user's clients find it)"
            if serving
            else "the agent's RPC token (default: $SWIM_RPC_AUTH, else the token file the "
            "agent wrote for this user)"
        ),
    )
