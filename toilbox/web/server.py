"""The daemon's HTTP listener: ``/healthz``, ``/metrics`` and the read-only status page.

Served by waitress: its I/O loop reads each request whole before a worker thread sees
it, so an idle or slow client costs a buffer, not a worker; workers are few and
bounded, idle connections are closed, and the number of connections is capped.  A page
is rendered at most once a second whatever the number of clients asking (they share the
answer), so a burst cannot crowd out ``/healthz`` or take the scheduler's CPU.

Nothing here changes anything: every route is GET (or HEAD), the page offers no button
that acts, and it reads through a store connection of its own.  Beyond loopback
(``allow_remote``) the page and its API ask for the configured token; ``/healthz``
stays open.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, unquote

import structlog

from toilbox.errors import ToilboxError, UsageError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from toilbox.app import App
    from toilbox.store import Store

log = structlog.get_logger("toilbox.http")
WORKERS = 2
CACHE_S = 1.0
REFRESH_S = 30
STATIC = Path(__file__).with_name("static")
# Nothing from anywhere but here; no script at all; no framing; forms only to here.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class StatusApp:
    """The WSGI application: routes, the token, headers, and a short answer cache."""

    def __init__(
        self,
        app_source: Callable[[], App],
        store: Store,
        registry: CollectorRegistry,
        health: Callable[[], tuple[bool, list[str]]],
        token: str | None,
    ) -> None:
        from toilbox.web.render import Pages

        self.app_source = app_source
        self.store = store
        self.registry = registry
        self.health = health
        self.token = token
        self.pages = Pages()
        self._cache: dict[tuple[str, str], tuple[float, str, bytes]] = {}
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        if path == "/healthz":
            ok, lines = self.health()
            body = "".join(f"{line}\n" for line in lines).encode()
            return _answer(start_response, 200 if ok else 503, "text/plain", body, method)
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [*_HEADERS, ("Allow", "GET, HEAD"),
                                                      ("Content-Type", "text/plain")])
            return [b"read-only: GET only\n"]
        if self.token is not None and not self._authorised(environ):
            start_response("401 Unauthorized", [
                *_HEADERS, ("Content-Type", "text/plain"),
                ("WWW-Authenticate", 'Basic realm="toilbox", charset="UTF-8"'),
            ])
            return [b"a token is needed: Authorization: Bearer TOKEN (or basic, any user)\n"]
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return _answer(start_response, 200, CONTENT_TYPE_LATEST,
                           generate_latest(self.registry), method)
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"), start_response, method)
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        try:
            status, kind, body = self._page(path, query)
        except UsageError as exc:
            status, kind, body = 404, "text/plain", f"not found: {exc}\n".encode()
        except ToilboxError as exc:
            log.warning("http.page_failed", path=path, error=str(exc))
            status, kind, body = 503, "text/plain", f"unavailable: {exc}\n".encode()
        return _answer(start_response, status, kind, body, method)

    def _authorised(self, environ: Environ) -> bool:
        given = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = given.partition(" ")
        if scheme.lower() == "bearer":
            offered = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                offered = base64.b64decode(credentials.strip()).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                return False
        else:
            return False
        assert self.token is not None  # noqa: S101 -- checked by the caller
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _page(self, path: str, query: dict[str, str]) -> tuple[int, str, bytes]:
        key = (path, json.dumps(sorted(query.items())))
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached and now - cached[0] < CACHE_S:
            return 200, cached[1], cached[2]
        with self._render_lock:  # one render at a time: a burst waits for one answer
            with self._lock:
                cached = self._cache.get(key)
            if cached and time.monotonic() - cached[0] < CACHE_S:
                return 200, cached[1], cached[2]
            kind, body = self._render(path, query)
            with self._lock:
                if len(self._cache) > 256:
                    self._cache.clear()
                self._cache[key] = (time.monotonic(), kind, body)
        return 200, kind, body

    def _render(self, path: str, query: dict[str, str]) -> tuple[str, bytes]:
        from toilbox.web import views

        app = self.app_source()
        api = path.startswith("/api/v1/")
        route = path.removeprefix("/api/v1") if api else path
        if route in ("/", "/overview"):
            name, data = "overview", views.overview(app, self.store,
                                                    views.Filters.from_query(query))
        elif route.startswith("/tasks/"):
            task = unquote(route.removeprefix("/tasks/"))
            name, data = "task", views.task_page(app, self.store, task, query.get("host", ""))
        elif route.startswith("/runs/"):
            name, data = "run", views.run_page(self.store, unquote(route.removeprefix("/runs/")))
        elif route == "/hosts":
            name, data = "hosts", views.hosts_page(app, self.store)
        else:
            raise UsageError(f"{path} (try /, /tasks/NAME, /runs/RUN_ID, /hosts, /api/v1/...)")
        if api:
            return "application/json", json.dumps(data).encode()
        return "text/html; charset=utf-8", self.pages.render(name, data, app).encode()

    def _static(self, name: str, start_response: StartResponse, method: str) -> Iterable[bytes]:
        if name != "style.css":  # the one file there is; no path is ever joined
            return _answer(start_response, 404, "text/plain", b"not found\n", method)
        body = (STATIC / "style.css").read_bytes()
        return _answer(start_response, 200, "text/css", body, method)


def _answer(
    start_response: StartResponse, status: int, kind: str, body: bytes, method: str
) -> Iterable[bytes]:
    reasons = {200: "OK", 401: "Unauthorized", 404: "Not Found", 503: "Service Unavailable"}
    start_response(
        f"{status} {reasons.get(status, '')}",
        [*_HEADERS, ("Content-Type", kind), ("Content-Length", str(len(body)))],
    )
    return [b""] if method == "HEAD" else [body]


class HttpServer:
    """waitress in a thread of its own, bound at once (a bad address fails at start)."""

    def __init__(self, listen: str, application: Callable[..., Iterable[bytes]]) -> None:
        from waitress.server import create_server

        from toilbox.config import listen_address

        address, port = listen_address(listen)
        # A single host and port: waitress's TCP server, which has effective_port.
        self.server: Any = cast(Any, create_server)(
            application,
            host=str(address),
            port=port,
            threads=WORKERS,
            connection_limit=256,
            channel_timeout=10,  # an idle connection is closed after 10 s
            cleanup_interval=5,
            asyncore_use_poll=True,  # no select() limit on descriptor numbers
            expose_tracebacks=False,
            ident="toilbox",
            max_request_header_size=16384,
            max_request_body_size=0,
        )
        host = f"[{address}]" if address.version == 6 else str(address)
        self.address = f"{host}:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, name="toilbox-http", daemon=True)

    def start(self) -> None:
        self.thread.start()
        log.info("http.listening", address=self.address)

    def stop(self) -> None:
        def close_all() -> None:
            for channel in list(self.server._map.values()):
                channel.close()

        try:
            self.server.trigger.pull_trigger(close_all)
        except OSError:
            close_all()
        self.thread.join(timeout=5)
        self.server.task_dispatcher.shutdown(timeout=5)
