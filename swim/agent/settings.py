"""The agent's settings: the value types of its flags, its config file, and the
`AgentOptions` they make together.

Every ``swim agent`` flag has a key in the config file (``swim agent --config FILE``,
TOML, read with Python's `tomllib`)::

    name = "web-1"
    bind = "10.0.0.5:7946"
    join = ["10.0.0.1:7946", "seed.example:7946"]
    profile = "lan"
    event_handlers = ["member-join,member-failed=/etc/swim/notify.sh"]

    [tags]
    role = "web"

The keys are the flags' names with ``_`` for ``-``, except that the repeatable flags
take a list or a table: ``join`` (``--join``), ``event_handlers`` (``--event-handler``),
``tags`` (``--tag``, a table of strings), ``query_responses`` (``--query-response``,
a table NAME = TEXT) and ``checks`` (``--check``, an array of ``[[checks]]`` tables with
Consul's keys, see `swim.agent.health_checks`). A flag given on the command line
overrides the file: a scalar replaces the file's value, a repeatable flag adds to the
file's list, and a ``--tag`` or ``--query-response`` replaces the file's entry of the
same key. An unknown key, a value of the wrong type or a malformed value is an error
naming the file and the key.

Values are checked by the same functions as the flags (`address_arg`, `tag_arg`, ...),
which raise `argparse.ArgumentTypeError` with a message that reads well after either the
flag or the key. Host names are resolved once every setting is known, in
`agent_options`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from swim.agent import addresses
from swim.agent.handlers import DEFAULT_TIMEOUT_S, HandlerSpec, HandlerSpecError, parse_handler
from swim.agent.health_checks import (
    CheckSpec,
    CheckSpecError,
    check_from_table,
    name_checks,
    parse_check,
)
from swim.agent.hints import did_you_mean
from swim.agent.tags import TagError, check_key, parse_tag_assignment

if TYPE_CHECKING:
    from swim.agent.agent import AgentOptions

PROFILES = ("lan", "wan", "local")
#: Membership modes (``--mode``): SWIM + Lifeguard, or stable views (`Config.stable_views`).
MODES = ("swim", "stable")
#: Queries named so are the runtime's own (key commands).
RESERVED_QUERY_PREFIX = "_swim_"
#: Largest static answer (Serf's default, `Config.query_response_size_limit`).
MAX_ANSWER_BYTES = 1024
#: The default RPC address.
DEFAULT_RPC = "127.0.0.1:7373"
#: The environment variable client commands take the agent's RPC address from.
RPC_ADDR_ENV = "SWIM_RPC_ADDR"


class ConfigError(Exception):
    """The config file cannot be used; the message names the file (and the key)."""


# ============================================================================ value types


def _arg_error(exc: Exception) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(str(exc))


def address_arg(text: str) -> tuple[str, int]:
    """``HOST:PORT``, HOST an IP literal or a host name (resolved later)."""
    try:
        return addresses.parse_host_port(text)
    except addresses.AddressError as exc:
        raise _arg_error(exc) from None


def bind_arg(text: str) -> tuple[str, int]:
    """As `address_arg`, port 0 (any free port) allowed."""
    try:
        return addresses.parse_host_port(text, allow_port_zero=True)
    except addresses.AddressError as exc:
        raise _arg_error(exc) from None


def _loopback_error(text: str) -> str:
    return (
        f"the RPC address must be on loopback (127.0.0.1 or ::1), got {text!r}: "
        "the control protocol is not encrypted"
    )


def rpc_arg(text: str) -> tuple[str, int]:
    """An RPC address: loopback only, since the protocol's token travels in plain text
    (a host name is checked once resolved)."""
    host, port = address_arg(text)
    if addresses.is_ip(host) and not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(_loopback_error(text))
    return host, port


def resolve_rpc(host: str, port: int) -> tuple[str, int]:
    """An RPC address resolved, and refused unless on loopback; raises `AddressError`."""
    addr = addresses.resolve(host, port)
    if not ipaddress.ip_address(addr[0]).is_loopback:
        raise addresses.AddressError(
            _loopback_error(f"{host}:{port}") + f" ({host!r} is {addr[0]})"
        )
    return addr


def token_arg(text: str) -> str:
    if not text or not text.isprintable() or text != text.strip():
        raise argparse.ArgumentTypeError("an RPC token must be printable, without spaces around")
    return text


def name_arg(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("a member name must not be empty")
    return text


def profile_arg(text: str) -> str:
    if text not in PROFILES:
        raise argparse.ArgumentTypeError(f"a profile is one of {', '.join(PROFILES)}, got {text!r}")
    return text


def mode_arg(text: str) -> str:
    if text not in MODES:
        raise argparse.ArgumentTypeError(f"a mode is one of {', '.join(MODES)}, got {text!r}")
    return text


def tag_arg(text: str) -> tuple[str, str]:
    try:
        return parse_tag_assignment(text)
    except TagError as exc:
        raise _arg_error(exc) from None


def tag_pair(key: str, value: str) -> tuple[str, str]:
    try:
        check_key(key)
    except TagError as exc:
        raise _arg_error(exc) from None
    return key, value


def key_arg(text: str) -> str:
    if not text or "=" in text:
        raise argparse.ArgumentTypeError(f"expected a tag KEY, got {text!r}")
    return text


def query_response_pair(name: str, answer: str) -> tuple[str, str]:
    if not name:
        raise argparse.ArgumentTypeError("a query name must not be empty")
    if name.startswith(RESERVED_QUERY_PREFIX):
        raise argparse.ArgumentTypeError(
            f"query names starting with {RESERVED_QUERY_PREFIX!r} are reserved"
        )
    if len(answer.encode("utf-8")) > MAX_ANSWER_BYTES:
        raise argparse.ArgumentTypeError(f"an answer is at most {MAX_ANSWER_BYTES} bytes (UTF-8)")
    return name, answer


def query_response_arg(text: str) -> tuple[str, str]:
    name, sep, answer = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=TEXT, got {text!r}")
    return query_response_pair(name, answer)


def seconds_arg(text: str | float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("a timeout is more than 0 and at most 3600 seconds")
    return value


def relay_factor_arg(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 5:
        raise argparse.ArgumentTypeError(f"a relay factor is 0..5, got {text!r}")
    return int(text)


def encrypt_key_arg(text: str) -> str:
    from swim.security import KeyringError, decode_key

    try:
        decode_key(text)
    except KeyringError as exc:
        raise _arg_error(exc) from None
    return text


def label_arg(text: str) -> str:
    if len(text.encode("utf-8")) > 255:
        raise argparse.ArgumentTypeError("a cluster label is at most 255 bytes (UTF-8)")
    return text


def path_arg(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("a path must not be empty")
    return text


def handler_arg(text: str) -> HandlerSpec:
    try:
        return parse_handler(text)
    except HandlerSpecError as exc:
        raise _arg_error(exc) from None


def check_arg(text: str) -> CheckSpec:
    try:
        return parse_check(text)
    except CheckSpecError as exc:
        raise _arg_error(exc) from None


def check_entry(value: object) -> CheckSpec:
    """One entry of the config file's ``checks``: a table, or a string in flag syntax."""
    try:
        return check_from_table(value)
    except CheckSpecError as exc:
        raise _arg_error(exc) from None


# ============================================================================== settings


@attrs.frozen
class Setting:
    """One agent setting: its config-file key, its flag and the argparse dest, its kind
    and the check of one value (for a table, of one key and value)."""

    key: str
    flag: str
    #: ``text``, ``bool``, ``seconds``, ``list`` (of text), ``table`` (text to text) or
    #: ``checks`` (a list of tables).
    kind: str
    convert: Callable[..., Any] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


#: Every ``swim agent`` setting (``--config`` itself excepted).
SETTINGS: tuple[Setting, ...] = (
    Setting("name", "--name", "text", name_arg),
    Setting("bind", "--bind", "text", bind_arg),
    Setting("advertise", "--advertise", "text", address_arg),
    Setting("join", "--join", "list", address_arg),
    Setting("profile", "--profile", "text", profile_arg),
    Setting("mode", "--mode", "text", mode_arg),
    Setting("tags", "--tag", "table", tag_pair),
    Setting("rpc", "--rpc", "text", rpc_arg),
    Setting("rpc_auth", "--rpc-auth", "text", token_arg),
    Setting("metrics", "--metrics", "text", address_arg),
    Setting("log_json", "--log-json", "bool"),
    Setting("encrypt", "--encrypt", "text", encrypt_key_arg),
    Setting("keyring_file", "--keyring-file", "text", path_arg),
    Setting("label", "--label", "text", label_arg),
    Setting("accept_plaintext", "--accept-plaintext", "bool"),
    Setting("send_plaintext", "--send-plaintext", "bool"),
    Setting("query_responses", "--query-response", "table", query_response_pair),
    Setting("event_handlers", "--event-handler", "list", handler_arg),
    Setting("event_handler_timeout", "--event-handler-timeout", "seconds", seconds_arg),
    Setting("checks", "--check", "checks", check_entry),
)
BY_KEY: Mapping[str, Setting] = {s.key: s for s in SETTINGS}

_TYPE_OF_KIND = {
    "text": "a string",
    "bool": "true or false",
    "seconds": "a number of seconds",
    "list": "a list of strings",
    "table": "a table of strings",
    "checks": "an array of [[checks]] tables",
}


def _value_from_file(setting: Setting, value: Any) -> Any:
    """A file's value, checked; raises `ValueError` with the reason."""
    kind = setting.kind
    convert = setting.convert
    wrong = ValueError(f"must be {_TYPE_OF_KIND[kind]}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        assert convert is not None
        return convert(value)
    assert convert is not None
    if kind == "text":
        if not isinstance(value, str):
            raise wrong
        return convert(value)
    if kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong
        return [convert(v) for v in value]
    if kind == "checks":
        if not isinstance(value, list):
            raise wrong
        return [_numbered(i, convert, v) for i, v in enumerate(value, 1)]
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise wrong
    return dict(convert(k, v) for k, v in value.items())


def _numbered(number: int, convert: Callable[[Any], Any], value: Any) -> Any:
    """`convert(value)`, an error saying which entry of a list it was."""
    try:
        return convert(value)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"entry {number}: {exc}") from None


def load_config(path: str) -> dict[str, Any]:
    """The settings of a TOML config file, by key, checked; raises `ConfigError`."""
    import tomllib

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    settings: dict[str, Any] = {}
    for key, value in data.items():
        setting = BY_KEY.get(key)
        if setting is None:
            raise ConfigError(
                f"{path}: unknown key {key!r}{did_you_mean(key, BY_KEY)} "
                f"(known keys: {', '.join(sorted(BY_KEY))})"
            )
        try:
            settings[key] = _value_from_file(setting, value)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"{path}: {key}: {exc}") from None
    return settings


def from_command_line(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (absent ones left out)."""
    settings: dict[str, Any] = {}
    for setting in SETTINGS:
        value = getattr(args, setting.dest, None)
        if value is None:
            continue
        if setting.kind == "table":
            value = dict(value)
        settings[setting.key] = value
    return settings


def merge(from_file: Mapping[str, Any], from_flags: Mapping[str, Any]) -> dict[str, Any]:
    """Flags over the file: scalars replace, lists add, tables replace per key."""
    merged = dict(from_file)
    for key, value in from_flags.items():
        kind = BY_KEY[key].kind
        if kind in ("list", "checks") and key in merged:
            merged[key] = [*merged[key], *value]
        elif kind == "table" and key in merged:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


class OptionsError(Exception):
    """The settings do not make an agent; `usage` tells a missing setting (exit 2) from
    a failed lookup (exit 1)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def _resolved(flag: str, addr: tuple[str, int]) -> tuple[str, int]:
    try:
        return addresses.resolve(*addr)
    except addresses.AddressError as exc:
        raise OptionsError(f"{flag} {addresses_text(addr)}: {exc}") from None


def addresses_text(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def agent_options(settings: Mapping[str, Any]) -> AgentOptions:
    """The agent's options from merged settings, host names resolved; raises
    `OptionsError`."""
    from swim.agent.agent import AgentOptions

    for required in ("name", "bind"):
        if required not in settings:
            flag = BY_KEY[required].flag
            raise OptionsError(
                f"{flag} is required (or {required} = ... in the --config file)", usage=True
            )
    rpc_addr = settings.get("rpc", address_arg(DEFAULT_RPC))
    try:
        rpc = resolve_rpc(*rpc_addr)
    except addresses.AddressError as exc:
        raise OptionsError(f"--rpc {addresses_text(rpc_addr)}: {exc}") from None
    advertise = settings.get("advertise")
    metrics = settings.get("metrics")
    try:
        checks = name_checks(settings.get("checks", ()))
    except CheckSpecError as exc:
        raise OptionsError(f"--check: {exc}", usage=True) from None
    return AgentOptions(
        name=settings["name"],
        bind=_resolved("--bind", settings["bind"]),
        advertise=None if advertise is None else _resolved("--advertise", advertise),
        join=tuple(_resolved("--join", addr) for addr in settings.get("join", ())),
        profile=settings.get("profile", "lan"),
        mode=settings.get("mode", "swim"),
        tags=dict(settings.get("tags", {})),
        rpc=rpc,
        metrics=None if metrics is None else _resolved("--metrics", metrics),
        log_json=settings.get("log_json", False),
        rpc_auth=settings.get("rpc_auth"),
        encrypt_key=settings.get("encrypt"),
        keyring_file=settings.get("keyring_file"),
        label=settings.get("label", ""),
        accept_plaintext=settings.get("accept_plaintext", False),
        send_plaintext=settings.get("send_plaintext", False),
        query_responses=dict(settings.get("query_responses", {})),
        event_handlers=tuple(settings.get("event_handlers", ())),
        event_handler_timeout_s=settings.get("event_handler_timeout", DEFAULT_TIMEOUT_S),
        checks=checks,
    )


def client_rpc_address(
    given: tuple[str, int] | None, environ: Mapping[str, str] = os.environ
) -> tuple[str, int]:
    """The agent a client command talks to: ``--rpc``, else ``$SWIM_RPC_ADDR``, else
    127.0.0.1:7373; resolved, loopback only. Raises `OptionsError` (usage for a
    malformed ``SWIM_RPC_ADDR``)."""
    what = "--rpc"
    if given is None:
        text = environ.get(RPC_ADDR_ENV)
        if text:
            what = RPC_ADDR_ENV
            try:
                given = rpc_arg(text)
            except argparse.ArgumentTypeError as exc:
                raise OptionsError(f"{RPC_ADDR_ENV}={text!r}: {exc}", usage=True) from None
        else:
            given = address_arg(DEFAULT_RPC)
    try:
        return resolve_rpc(*given)
    except addresses.AddressError as exc:
        raise OptionsError(f"{what} {addresses_text(given)}: {exc}") from None
