"""What ``safe-trpo review`` runs instead of ``python -m streamlit``: Streamlit's own CLI, with a
guard in front of its server that answers only requests addressed to the app's own address.

Streamlit accepts a websocket from any page whose Origin is ``localhost`` (any port) or one of
the machine's addresses, and never checks the Host header; so any local web page, or a page
that rebinds its DNS name to 127.0.0.1, could drive the app and write a sign-off. As Jupyter
does, the guard refuses every HTTP request and websocket upgrade whose ``Host`` is not the
address the app serves on, or whose ``Origin`` (when a browser sends one) is not that address.

Usage (built by ``launch.build_command``)::

    python -m safe_trpo.review.serve --allow-host 127.0.0.1:8501 [--allow-host ...] \
        run app.py [streamlit options] -- [app options]
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")  # noqa: S104 (names, not a bind)


def _hostport(name: str, port: int) -> str:
    name = name.lower()
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def allowed_hosts(host: str, port: int) -> list[str]:
    """The ``Host`` values (``name:port``) under which the app may be addressed.

    Serving on a loopback address allows the loopback names; serving on all interfaces adds
    the machine's own names; any other address allows exactly that address.
    """
    names = [host]
    if host in LOOPBACK or host in WILDCARD:
        names += LOOPBACK
    if host in WILDCARD:
        names += [socket.gethostname(), socket.getfqdn()]
    return sorted({_hostport(n, port) for n in names if n not in WILDCARD})


def refusal(host: str | None, origin: str | None, allowed: Iterable[str]) -> str | None:
    """Why a request with these headers is refused, or None if it is allowed."""
    allowed = set(allowed)
    if host is None or host.lower() not in allowed:
        return f"Host {host!r} is not this app's address"
    if origin is None:  # not a browser, or a same-origin GET: browsers send Origin on websockets
        return None
    try:
        parts = urlsplit(origin)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # e.g. a port that is not a number
        return f"Origin {origin!r} is not a valid origin"
    if parts.scheme not in ("http", "https") or not parts.hostname \
            or _hostport(parts.hostname, port) not in allowed:
        return f"Origin {origin!r} is not this app's address"
    return None


class HostOriginGuard:
    """ASGI middleware: 403 for HTTP, a refused handshake for websockets, when ``refusal``."""

    def __init__(self, app: Any, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers", [])}
            why = refusal(headers.get("host"), headers.get("origin"), self.allowed)
            if why is not None:
                if scope["type"] == "http":
                    await send({"type": "http.response.start", "status": 403,
                                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                    await send({"type": "http.response.body",
                                "body": f"403 Forbidden: {why}\n".encode()})
                else:
                    await receive()  # websocket.connect; closing before accept = HTTP 403
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)


def install(allowed: list[str]) -> None:
    """Put the guard first in Streamlit's middleware stack (outermost: it sees every request)."""
    from starlette.middleware import Middleware
    from streamlit.web.server.starlette import starlette_app

    original = starlette_app.create_streamlit_middleware

    def guarded() -> list:
        return [Middleware(HostOriginGuard, allowed=allowed), *original()]

    starlette_app.create_streamlit_middleware = guarded


def main(argv: list[str]) -> None:
    allowed = []
    while len(argv) >= 2 and argv[0] == "--allow-host":
        allowed.append(argv[1].lower())
        argv = argv[2:]
    if not allowed:
        sys.exit("safe_trpo.review.serve: at least one --allow-host HOST:PORT is required")
    install(allowed)
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *argv]
    streamlit_main()


if __name__ == "__main__":
    main(sys.argv[1:])
