"""``swim agent --metrics HOST:PORT``: Prometheus metrics over HTTP, served in trio.

A trio `Node` must be read from its own trio thread, so rather than prometheus-client's
threaded ``start_http_server`` this is a minimal HTTP/1.0 responder inside the agent's
trio run: ``GET /metrics`` (or ``/``) answers the text exposition of
`swim.runtime.metrics.NodeCollector`; anything else is a 404. Requests are bounded
(8 KiB of headers, 5 s to send them).
"""

from __future__ import annotations

from typing import Any

import trio

MAX_HEADER_BYTES = 8 * 1024
REQUEST_TIMEOUT_S = 5.0


def metrics_registry(node: Any) -> Any:
    """A fresh registry holding the node's collector (ImportError without the extra)."""
    from prometheus_client import CollectorRegistry

    from swim.runtime.metrics import register_metrics

    registry = CollectorRegistry()
    register_metrics(node, registry)
    return registry


async def serve_metrics(
    registry: Any,
    listeners: list[trio.SocketListener],
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer scrapes on `listeners` until cancelled."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def handle(stream: trio.SocketStream) -> None:
        try:
            async with stream:
                head = bytearray()
                with trio.move_on_after(REQUEST_TIMEOUT_S):
                    while b"\r\n\r\n" not in head and b"\n\n" not in head:
                        if len(head) > MAX_HEADER_BYTES:
                            break
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            break
                        head += chunk
                request_line = bytes(head).split(b"\n", 1)[0].split()
                if len(request_line) >= 2 and request_line[0] == b"GET" and (
                    request_line[1].split(b"?")[0] in (b"/", b"/metrics")
                ):
                    body = generate_latest(registry)
                    status, ctype = b"200 OK", CONTENT_TYPE_LATEST.encode()
                else:
                    body = b"not found; try /metrics\n"
                    status, ctype = b"404 Not Found", b"text/plain; charset=utf-8"
                with trio.move_on_after(REQUEST_TIMEOUT_S):
                    await stream.send_all(
                        b"HTTP/1.0 " + status + b"\r\nContent-Type: " + ctype
                        + b"\r\nContent-Length: " + str(len(body)).encode()
                        + b"\r\nConnection: close\r\n\r\n" + body
                    )
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    await trio.serve_listeners(handle, listeners, task_status=task_status)
