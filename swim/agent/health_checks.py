"""The agent's health checks, as Consul users know them: ``swim agent --check ...``.

Three kinds, each with a name, an interval and a timeout:

* **script**: a shell command (``/bin/sh -c``; ``args = [...]`` in the config file runs
  a program without a shell). Exit 0 is passing, exit 1 warning, anything else
  critical (Consul's rule). Its output (stdout and stderr together, the last lines) is
  the note of a result that is not passing. It runs in its own session with the agent's
  environment plus this member's ``SWIM_SELF_NAME``, ``SWIM_TAG_*`` and
  ``SWIM_RPC_ADDR`` (as event handlers get them); at the timeout its whole process
  group is killed.
* **http**: a GET of an ``http://`` or ``https://`` URL (the standard library's
  urllib, redirects followed, no proxy: checks target local services). A 2xx answer is
  passing, 429 (Too Many Requests) warning, any other status or no answer critical.
* **tcp**: a TCP connection to ``HOST:PORT``: passing if it opens (it is closed at
  once), critical if not.

Each check is a health source of the agent's node (`swim.runtime.checks`, through
``Node.start_health_check``): the first run starts at once, then one every interval; a
run past its timeout is critical (``check timed out after 2 s``). The member's health is
the worst of its checks, published cluster-wide in its metadata (`swim.runtime.health`):
a critical member leaves placement rings but stays alive; checks never make it failed.
Nothing here blocks the agent's trio loop: scripts are trio processes, TCP connects are
trio sockets, and an HTTP GET runs in a worker thread (at most one per check). This
module parses checks; `swim.agent.check_runs` runs them, and is imported only by an
agent that has checks.

Flag syntax (options first, the kind last; the kind's text runs to the end, so a
script may contain commas)::

    --check 'script=/usr/local/bin/check-disk'
    --check 'name=web,interval=5s,timeout=1s,http=http://127.0.0.1:8080/health'
    --check 'interval=10s,tcp=127.0.0.1:5432'

Config-file form, an array of tables (Consul's keys)::

    [[checks]]
    name = "web"
    http = "http://127.0.0.1:8080/health"
    interval = "5s"
    timeout = "1s"

    [[checks]]
    args = ["/usr/local/bin/check-disk", "--min-free", "10%"]

Durations are seconds (``2``, ``0.5``) or with a unit (``500ms``, ``10s``, ``1m``).
Defaults: interval 10 s, timeout 10 s (Consul's), name the kind (``http``, then
``http-2``, ... when there are several).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from swim.agent import addresses
from swim.agent.hints import did_you_mean

if TYPE_CHECKING:
    from swim.runtime.checks import HealthCheck

#: The kinds of check, by the key that names the target.
KINDS: Final = ("script", "http", "tcp")
#: A check's settings besides its kind.
OPTIONS: Final = ("name", "interval", "timeout")
DEFAULT_INTERVAL_S: Final = 10.0
DEFAULT_TIMEOUT_S: Final = 10.0
#: Bounds on intervals and timeouts (a shorter interval would be a busy loop).
MIN_INTERVAL_S: Final = 0.1
MAX_SECONDS: Final = 3600.0
#: Output of a script kept for its note (the note itself is shorter, see health.py).
MAX_OUTPUT_BYTES: Final = 4096
#: Bytes of an HTTP answer's body read (then the connection is closed).
MAX_BODY_BYTES: Final = 4096
#: The User-Agent of HTTP checks.
USER_AGENT: Final = "swim-health-check"

_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?")
_OPTION_IN_TARGET = re.compile(r",\s*(name|interval|timeout)\s*=")


class CheckSpecError(ValueError):
    """A check's settings are malformed; the message says why."""


@attrs.frozen(kw_only=True)
class CheckSpec:
    """One health check the agent runs."""

    #: ``script``, ``http`` or ``tcp``.
    kind: str
    #: The script (shell text), the URL, or ``HOST:PORT``; for a script given as
    #: `args`, their shell-quoted join (for display).
    target: str
    #: A script check's program and arguments, run without a shell (empty: `target` runs
    #: with ``/bin/sh -c``).
    args: tuple[str, ...] = ()
    #: The check's name (None until `name_checks` gives it its default).
    name: str | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S

    def argv(self) -> list[str]:
        """What a script check runs."""
        return list(self.args) if self.args else ["/bin/sh", "-c", self.target]

    def __str__(self) -> str:
        """The check in flag syntax (a script given as args shows them shell-quoted)."""
        parts = [] if self.name is None else [f"name={self.name}"]
        parts += [f"interval={self.interval_s:g}s", f"timeout={self.timeout_s:g}s"]
        return ",".join([*parts, f"{self.kind}={self.target}"])


# ============================================================================ parsing


def parse_duration(value: object, what: str) -> float:
    """Seconds from ``2``, ``0.5``, ``"500ms"``, ``"10s"``, ``"1m"``; raises
    `CheckSpecError` naming `what` (``interval``, ``timeout``)."""
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.fullmatch(value.strip())):
        seconds = float(found[1]) * _UNITS[found[2] or "s"]
    else:
        seconds = None
    if seconds is None:
        raise CheckSpecError(
            f"{what}: expected a duration such as 10s, 500ms, 1m or a number of seconds, "
            f"got {value!r}"
        )
    if what == "interval":
        ok, bound = MIN_INTERVAL_S <= seconds <= MAX_SECONDS, f"at least {MIN_INTERVAL_S:g} s"
    else:
        ok, bound = 0 < seconds <= MAX_SECONDS, "more than 0 s"
    if not ok:
        raise CheckSpecError(
            f"{what}: must be {bound} and at most {MAX_SECONDS:g} s, got {value!r}"
        )
    return seconds


def _check_target(kind: str, target: str, args: tuple[str, ...]) -> str:
    """The target checked (stripped); raises `CheckSpecError`."""
    target = target.strip()
    if kind == "script":
        if not target and not args:
            raise CheckSpecError("a script check needs a command: script=COMMAND")
        return target
    hint = _OPTION_IN_TARGET.search(target)
    if hint:
        raise CheckSpecError(
            f"{kind}={target!r}: the kind comes last and takes the rest of the text; put "
            f"{hint[1]}= before it (e.g. '{hint[1]}=...,{kind}=...')"
        )
    if kind == "http":
        parts = urllib.parse.urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CheckSpecError(
                f"an http check needs an http:// or https:// URL with a host, got {target!r}"
            )
        try:
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            raise CheckSpecError(f"an http check's URL has a bad port: {target!r}") from None
        return target
    if not target:
        raise CheckSpecError("a tcp check needs an address: tcp=HOST:PORT")
    try:
        addresses.parse_host_port(target)
    except addresses.AddressError as exc:
        raise CheckSpecError(f"tcp={target!r}: {exc}") from None
    return target


def _unknown(key: str, known: Iterable[str]) -> CheckSpecError:
    known = list(known)
    return CheckSpecError(
        f"unknown check setting {key!r}{did_you_mean(key, known)} (settings: {', '.join(known)})"
    )


def _spec(kind: str, target: str, options: Mapping[str, object],
          args: tuple[str, ...] = ()) -> CheckSpec:
    name = options.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()
                             or not name.isprintable()):
        raise CheckSpecError(f"a check's name must be printable text, got {name!r}")
    interval_s = parse_duration(options.get("interval", DEFAULT_INTERVAL_S), "interval")
    timeout_s = parse_duration(options.get("timeout", DEFAULT_TIMEOUT_S), "timeout")
    target = _check_target(kind, target, args)
    if args:
        import shlex  # only a config file's ``args = [...]`` needs it

        target = shlex.join(args)
    return CheckSpec(kind=kind, target=target, args=args,
                     name=None if name is None else name.strip(),
                     interval_s=interval_s, timeout_s=timeout_s)


def parse_check(text: str) -> CheckSpec:
    """A check from the flag syntax ``[name=N,][interval=D,][timeout=D,]KIND=TARGET``;
    raises `CheckSpecError`."""
    options: dict[str, str] = {}
    rest = text
    while True:
        key, sep, value = rest.partition("=")
        key = key.strip()
        if not sep:
            raise CheckSpecError(
                f"expected [name=N,][interval=D,][timeout=D,]KIND=TARGET with KIND one of "
                f"{', '.join(KINDS)}, got {text!r}"
            )
        if key in KINDS:
            return _spec(key, value, options)
        if key not in OPTIONS:
            raise _unknown(key, (*OPTIONS, *KINDS))
        value, comma, rest = value.partition(",")
        if not comma:
            raise CheckSpecError(
                f"{text!r} names no kind: a check needs one of "
                f"{', '.join(k + '=...' for k in KINDS)} (last)"
            )
        if key in options:
            raise CheckSpecError(f"{key} is given twice in {text!r}")
        options[key] = value.strip()


def check_from_table(table: object) -> CheckSpec:
    """A check from a config file's ``[[checks]]`` table (or a string in flag syntax);
    raises `CheckSpecError`."""
    if isinstance(table, str):
        return parse_check(table)
    if not isinstance(table, Mapping):
        raise CheckSpecError(f"a check is a table (or a string as --check takes), got {table!r}")
    keys = (*OPTIONS, *KINDS, "args")
    for key in table:
        if key not in keys:
            raise _unknown(key, keys)
    kinds = [k for k in (*KINDS, "args") if k in table]
    if len(kinds) != 1:
        raise CheckSpecError(
            "a check needs exactly one of script, args, http, tcp"
            + (f"; got {', '.join(kinds)}" if kinds else "")
        )
    (key,) = kinds
    value = table[key]
    if key == "args":
        if (not isinstance(value, list) or not value
                or not all(isinstance(a, str) and a for a in value)):
            raise CheckSpecError("args must be a non-empty list of non-empty strings")
        return _spec("script", "", table, tuple(value))
    if not isinstance(value, str):
        raise CheckSpecError(f"{key} must be a string, got {value!r}")
    return _spec(key, value, table)


def name_checks(specs: Iterable[CheckSpec]) -> tuple[CheckSpec, ...]:
    """`specs` with every name set: a check without one is named after its kind
    (``http``, then ``http-2``, ...), skipping names already taken. Raises
    `CheckSpecError` for two checks of the same name."""
    specs = list(specs)
    taken: set[str] = set()
    for spec in specs:
        if spec.name is not None:
            if spec.name in taken:
                raise CheckSpecError(f"two checks are named {spec.name!r}; names must differ")
            taken.add(spec.name)
    named = []
    for spec in specs:
        if spec.name is not None:
            named.append(spec)
            continue
        name = spec.kind
        number = 1
        while name in taken:
            number += 1
            name = f"{spec.kind}-{number}"
        taken.add(name)
        named.append(attrs.evolve(spec, name=name))
    return tuple(named)


def check_record(spec: CheckSpec, handle: HealthCheck | None) -> dict[str, Any]:
    """A check as `swim info` shows it: its settings and its latest result."""
    last = None if handle is None else handle.last
    return {
        "name": spec.name,
        "kind": spec.kind,
        "target": spec.target,
        "interval_s": spec.interval_s,
        "timeout_s": spec.timeout_s,
        "status": None if last is None else last.status.value,
        "note": "" if last is None else last.note,
        "runs": 0 if handle is None else handle.runs,
        "not_passing": 0 if handle is None else handle.not_passing,
    }
