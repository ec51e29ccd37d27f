"""The daemon's HTTP listener: ``/healthz`` and ``/metrics``, nothing else."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import CollectorRegistry, make_wsgi_app

from toilbox.config import listen_address

log = structlog.get_logger("toilbox.http")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # every scrape would be a log line otherwise


class _Server(WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class HttpServer:
    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        health: Callable[[], tuple[bool, list[str]]],
    ) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                ok, lines = health()
                start_response(
                    "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
                )
                return ["".join(f"{line}\n" for line in lines).encode()]
            if path == "/metrics":
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /healthz or /metrics\n"]

        address, port = listen_address(listen)
        self.server = make_server(
            str(address),
            port,
            app,
            server_class=_Server6 if address.version == 6 else _Server,
            handler_class=_QuietHandler,
        )
        host = f"[{address}]" if address.version == 6 else str(address)
        self.address = f"{host}:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="toilbox-http", daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        log.info("http.listening", address=self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
