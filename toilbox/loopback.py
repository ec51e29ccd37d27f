"""HTTP on 127.0.0.1 answering from a script: the server behind the ``toilbox_http`` fixture.

It runs in a forked process of its own, so a test's task runs (which fork too) never
share a process with its threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Response:
    """A scripted answer: status, body, headers, and an optional delay before it."""

    status: int = 200
    """The HTTP status code."""
    body: str | bytes = ""
    """The body (a str is sent as UTF-8)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Response headers; Content-Length is added."""
    delay: float = 0.0
    """Seconds to wait before answering (to test a timeout)."""


RouteSpec = Response | int | str | Sequence[Response | int | str]


def _responses(spec: RouteSpec) -> list[dict[str, Any]]:
    items = list(spec) if isinstance(spec, list | tuple) else [spec]
    out = []
    for item in items:
        response = (
            item
            if isinstance(item, Response)
            else Response(status=item)
            if isinstance(item, int)
            else Response(body=str(item))
        )
        body = response.body.encode() if isinstance(response.body, str) else response.body
        out.append(
            {
                "status": response.status,
                "body": body.decode("latin-1"),
                "headers": response.headers,
                "delay": response.delay,
            }
        )
    return out


class LoopbackServer:
    """HTTP on 127.0.0.1, in a process of its own, answering from a script.

    ``routes`` maps a path to a response, or to a list of them given in turn (the last one
    repeats).  A response is a ``Response``, a status code or a body.  Unknown paths get
    404.  ``script(path, ...)`` changes a route while it runs; ``requests`` lists what
    was asked (method, path, headers, body).
    """

    def __init__(self, directory: Path, routes: Mapping[str, RouteSpec]) -> None:
        self._script = directory / "http-script.json"
        self._log = directory / "http-requests.jsonl"
        self._routes: dict[str, list[dict[str, Any]]] = {}
        for path, spec in routes.items():
            self._routes[path] = _responses(spec)
        self._write_script()
        self._log.write_text("")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port: int = listener.getsockname()[1]
        """The port it listens on, on 127.0.0.1."""
        self._pid = _serve_in_child(listener, self._script, self._log)
        listener.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on this server."""
        return self.base_url + path

    def script(self, path: str, *responses: Response | int | str) -> None:
        """Answer ``path`` with these responses from now on, in turn (the last repeats)."""
        self._routes[path] = _responses(list(responses))
        self._write_script()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """What was asked so far: ``{"method", "path", "headers", "body"}`` each, in order."""
        lines = self._log.read_text().splitlines()
        return [json.loads(line) for line in lines if line]

    def close(self) -> None:
        """Stop the server (the fixture does it after the test)."""
        if self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = 0

    def _write_script(self) -> None:
        temporary = self._script.with_suffix(".tmp")
        temporary.write_text(json.dumps({"version": time.time_ns(), "routes": self._routes}))
        temporary.replace(self._script)


def _serve_in_child(listener: socket.socket, script: Path, log: Path) -> int:
    """Fork a server on ``listener``; a process of its own, so a test's runs (which fork)
    never share a process with its threads."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        return pid
    try:  # pragma: no cover - the server process
        _serve(listener, script, log)
    finally:
        os._exit(0)


def _serve(listener: socket.socket, script: Path, log: Path) -> None:  # pragma: no cover
    from socketserver import ThreadingMixIn

    served: dict[str, int] = {}
    seen_version = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with log.open("a") as out:
                out.write(
                    json.dumps(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": body.decode("utf-8", errors="replace"),
                        }
                    )
                    + "\n"
                )
            current = json.loads(script.read_text())
            if current["version"] != seen_version[0]:
                seen_version[0] = current["version"]
                served.clear()
            route = self.path.split("?", 1)[0]
            responses = current["routes"].get(self.path) or current["routes"].get(route)
            if not responses:
                answer: dict[str, Any] = {
                    "status": 404,
                    "body": "no such route",
                    "headers": {},
                    "delay": 0,
                }
            else:
                index = served.get(route, 0)
                served[route] = index + 1
                answer = responses[min(index, len(responses) - 1)]
            if answer["delay"]:
                time.sleep(answer["delay"])
            payload = answer["body"].encode("latin-1")
            self.send_response(answer["status"])
            for key, value in answer["headers"].items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingMixIn, HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    server.serve_forever()
