"""Starting `swim agent`: the node's security settings from the options, the listeners
(RPC, metrics), the node, then the `Agent` until it exits; start-up failures become one
line and exit code 1."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

import trio

from swim.agent import output
from swim.agent.agent import LEAVE_TIMEOUT_S, Agent, AgentOptions, StartupError
from swim.agent.tags import TagError, encode_tags
from swim.core.config import Config
from swim.core.core import ProtocolError
from swim.core.messages import Address
from swim.runtime import Node

if TYPE_CHECKING:
    from swim.security import SecurityConfig


def _os_error_in(exc: BaseException) -> OSError | None:
    """The first OSError in `exc` or in the exception groups around it."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error_in(inner)
            if found is not None:
                return found
    return None


def _describe(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _joiner(node: Node) -> Callable[[Sequence[Address]], object]:
    """How the agent joins its running node through more seeds (``swim join``)."""
    return node.join


def security_config(options: AgentOptions) -> SecurityConfig:
    """The node's security settings from the agent's options; `StartupError` (one line)
    for a bad key, an unsafe or malformed keyring file, or switches without a key.

    cryptography is imported only if a key is given."""
    from swim.security import Keyring, SecurityConfig, SecurityError, decode_key, load_keyring

    if (options.accept_plaintext or options.send_plaintext) and not options.encrypted:
        raise StartupError(
            "--accept-plaintext and --send-plaintext need a key (--encrypt or --keyring-file)"
        )
    try:
        keyring = None
        if options.keyring_file is not None:
            keyring = load_keyring(options.keyring_file)
        elif options.encrypt_key is not None:
            keyring = Keyring(decode_key(options.encrypt_key))
        return SecurityConfig(
            keyring=keyring,
            label=options.label,
            accept_plaintext=options.accept_plaintext,
            send_plaintext=options.send_plaintext,
        )
    except SecurityError as exc:
        what = "--encrypt" if options.keyring_file is None else "--keyring-file"
        raise StartupError(f"{what}: {exc}") from None


async def _start(options: AgentOptions, out: TextIO, err: TextIO) -> int:
    config = Config.profile(options.profile)
    if options.mode == "stable":
        config = Config.stable_views(config)
    security = security_config(options)
    if options.advertise is None and ipaddress.ip_address(options.bind[0]).is_unspecified:
        raise StartupError(
            f"--bind {output.format_addr(options.bind)} listens on every interface; add "
            "--advertise HOST:PORT with the address other members should reach"
        )
    try:
        meta = encode_tags(options.tags)
        node = Node(
            config,
            name=options.name,
            bind=options.bind,
            advertise=options.advertise,
            seeds=list(options.join),
            meta=meta,
            leave_timeout_s=LEAVE_TIMEOUT_S,
            security=security,
            keyring_file=options.keyring_file,
        )
    except (TagError, ValueError, ProtocolError) as exc:
        raise StartupError(str(exc)) from None
    listeners = await _listen(options.rpc, "listen for RPC on")
    metrics_listeners: list[trio.SocketListener] = []
    try:
        if options.metrics is not None:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                raise StartupError(
                    "--metrics needs prometheus-client (pip install 'swim-lifeguard[metrics]')"
                ) from None
            metrics_listeners = await _listen(options.metrics, "serve metrics on")
        return await _run_node(options, node, listeners, metrics_listeners, out=out, err=err)
    finally:
        for listener in [*listeners, *metrics_listeners]:
            await listener.aclose()


async def _listen(addr: Address, what: str) -> list[trio.SocketListener]:
    try:
        # The host as bytes: given text, the stdlib loads the idna codec (and unicodedata)
        # just to encode a numeric address.
        return await trio.open_tcp_listeners(addr[1], host=addr[0].encode("ascii"))
    except OSError as exc:
        raise StartupError(f"cannot {what} {output.format_addr(addr)}: {_describe(exc)}") from None


async def _run_node(
    options: AgentOptions,
    node: Node,
    listeners: list[trio.SocketListener],
    metrics_listeners: list[trio.SocketListener],
    *,
    out: TextIO,
    err: TextIO,
) -> int:
    started = False
    try:
        async with node:
            started = True
            agent = Agent(options, node, out=out, err=err, joiner=_joiner(node))
            return await agent.run(listeners, metrics_listeners)
    except ProtocolError as exc:
        if started:
            raise
        raise StartupError(str(exc)) from None
    except (OSError, BaseExceptionGroup) as exc:
        found = None if started else _os_error_in(exc)
        if found is None:
            raise
        raise StartupError(
            f"cannot bind {output.format_addr(options.bind)}: {_describe(found)}"
        ) from None


def run_agent(
    options: AgentOptions, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Run the agent until it leaves; the process exit code."""
    try:
        return trio.run(_start, options, out, err)
    except StartupError as exc:
        print(f"swim agent: {exc}", file=err, flush=True)
        return 1
