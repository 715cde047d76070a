"""Running the agent's health checks (`swim.agent.health_checks` parses them): a script
as a trio process whose group is killed at the timeout, an HTTP GET in a worker thread,
a TCP connect on trio sockets.

Imported only by an agent started with ``--check``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping

import trio

from swim.agent import addresses
from swim.agent.health_checks import MAX_BODY_BYTES, MAX_OUTPUT_BYTES, USER_AGENT, CheckSpec
from swim.agent.processes import Collector, communicate, exit_text, reap, tail
from swim.runtime.checks import Check
from swim.runtime.health import HealthResult, HealthStatus


async def run_script(argv: list[str], env: Mapping[str, str]) -> HealthResult:
    """Run a script check once: exit 0 passing, 1 warning, else critical. Cancelling it
    (the check's timeout) kills its process group."""
    try:
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(env), start_new_session=True,
        )
    except OSError as exc:
        return HealthResult(HealthStatus.CRITICAL,
                            f"cannot start: {(exc.strerror or str(exc)).lower()}")
    out = Collector(MAX_OUTPUT_BYTES)
    try:
        await communicate(process, b"", out)
    finally:
        await reap(process)
    code = process.returncode
    if code == 0:
        # No note while passing: output that changes each run would be gossiped each run.
        return HealthResult(HealthStatus.PASSING)
    status = HealthStatus.WARNING if code == 1 else HealthStatus.CRITICAL
    last = tail(out.data)
    return HealthResult(status, exit_text(code) + (f": {last}" if last else ""))


def http_status(code: int) -> HealthStatus:
    """Consul's rule: 2xx passing, 429 warning, anything else critical."""
    if 200 <= code < 300:
        return HealthStatus.PASSING
    if code == 429:
        return HealthStatus.WARNING
    return HealthStatus.CRITICAL


def http_get(url: str, timeout_s: float) -> HealthResult:
    """One GET of an HTTP check (blocking: run in a worker thread).

    urllib.request (and with it http.client and email, 1.3 MiB and 20 ms of start-up)
    is imported here, by the first HTTP check, not by every agent."""
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            code, reason = int(response.status), str(response.reason)
            response.read(MAX_BODY_BYTES)
    except urllib.error.HTTPError as exc:
        code, reason = exc.code, str(exc.reason)
        exc.close()
    except urllib.error.URLError as exc:
        why = exc.reason
        text = (why.strerror or str(why)) if isinstance(why, OSError) else str(why)
        return HealthResult(HealthStatus.CRITICAL, f"GET failed: {text.lower()}")
    except (OSError, HTTPException, ValueError) as exc:
        return HealthResult(HealthStatus.CRITICAL, f"GET failed: {type(exc).__name__}: {exc}")
    status = http_status(code)
    return HealthResult(status, "" if status is HealthStatus.PASSING else f"HTTP {code} {reason}")


async def tcp_connect(host: str, port: int) -> HealthResult:
    """One TCP check: passing if a connection to ``host:port`` opens."""
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        # trio tries every address and groups the errors; the first one says why.
        inner = exc.__cause__
        first = inner.exceptions[0] if isinstance(inner, BaseExceptionGroup) else exc
        # (trio's strerror repeats the address; the errno's text is enough. A failed
        # name lookup has a negative errno and its own strerror.)
        errno = first.errno if isinstance(first, OSError) else None
        if errno and errno > 0:
            why = os.strerror(errno)
        else:
            why = (first.strerror if isinstance(first, OSError) else None) or str(first)
        return HealthResult(HealthStatus.CRITICAL, f"connect failed: {why.lower()}")
    await stream.aclose()
    return HealthResult(HealthStatus.PASSING)


def make_check(spec: CheckSpec, env: Callable[[], Mapping[str, str]]) -> Check:
    """The callable `swim.runtime.checks` polls for `spec`: a coroutine function for a
    script or TCP check (run in the loop, cancelled at the timeout), a plain function
    for an HTTP check (run in a worker thread). `env` gives a script's environment
    variables beyond the agent's own, read at each run."""
    if spec.kind == "script":
        argv = spec.argv()

        async def script() -> HealthResult:
            return await run_script(argv, {**os.environ, **env()})

        return script
    if spec.kind == "http":
        url, timeout_s = spec.target, spec.timeout_s
        return lambda: http_get(url, timeout_s)
    host, port = addresses.parse_host_port(spec.target)

    async def tcp() -> HealthResult:
        return await tcp_connect(host, port)

    return tcp
