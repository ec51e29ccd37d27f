"""What the fleet tests need: daemons with host ids, a cuttable TCP proxy, run ledgers."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.conftest import DATA, TOILBOX

# Short timings so that a failover takes seconds, not a minute (docs/fleet.md has the
# defaults): fence after 2 s without renewal, take over 0.5 s after a lease ends.
TIMINGS = "fleet: {lease: 3s, renew: 1s, takeover_grace: 0.5s, sweep: 1s}"


def wait_for(predicate: Callable[[], object], timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout:g}s")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        with Path(f"/proc/{pid}/stat").open() as stat:
            return stat.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def plugin_dir(tmp_path: Path, *names: str) -> Path:
    """tmp_path/plugins holding the marking plugin (check.mark) and the named test
    plugins from tests/data (e.g. "faults_plugin")."""
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    for name in ("fleet_plugin", *names):
        shutil.copy(DATA / f"{name}.py", plugins / f"{name}.py")
    return plugins


def fleet_config(
    tmp_path: Path, url: str, host: str, tasks: str, extra: str = ""
) -> Path:
    """A config for one host: its own state dir, the shared store, the marking plugin."""
    plugins = plugin_dir(tmp_path)
    path = tmp_path / f"{host}.yaml"
    path.write_text(
        f"state_dir: {tmp_path / ('state-' + host)}\n"
        f"plugin_dirs: [{plugins}]\n"
        f'store: {{url: "{url}"}}\n'
        f"{TIMINGS}\n"
        f"{extra}"
        f"tasks:\n{tasks}"
    )
    return path


class FleetDaemon:
    """A real `toilbox daemon` with a host id of its own."""

    def __init__(self, config: Path, host: str, tmp_path: Path, prefix: Iterable[str] = ()):
        self.config, self.host, self.tmp_path, self.prefix = config, host, tmp_path, list(prefix)
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.log_path = tmp_path / f"{host}.log"

    def start(self) -> FleetDaemon:
        self.generation += 1
        self.log_path = self.tmp_path / f"{self.host}-{self.generation}.log"
        env = {**os.environ, "TOILBOX_HOST_ID": self.host,
               "XDG_STATE_HOME": str(self.tmp_path / "xdg")}
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [*self.prefix, *TOILBOX, "-c", str(self.config), "--log-format", "json", "daemon"],
                stdout=subprocess.DEVNULL, stderr=log, env=env,
            )
        wait_for(lambda: self.events("daemon.started") or self.process.poll() is not None, 30,
                 f"{self.host} to start")
        assert self.process.poll() is None, self.log_path.read_text()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def events(self, name: str | None = None) -> list[dict]:
        found = []
        logs = sorted(self.tmp_path.glob(f"{self.host}-*.log"))
        for path in logs:
            for line in path.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if name is None or event.get("event") == name:
                    found.append(event)
        return found

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def ledger(path: Path) -> list[dict]:
    """The lines the marking plugin wrote: one per run start and one per run end."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ends_by_slot(lines: list[dict]) -> dict[str, list[dict]]:
    slots: dict[str, list[dict]] = {}
    for line in lines:
        if line["event"] == "end":
            slots.setdefault(line["slot"], []).append(line)
    return slots


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that a test can cut (every connection reset,
    new ones closed at once) and heal: a database outage without touching the server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database_url: str) -> str:
        host = f"{self.target[0]}:{self.target[1]}"
        return database_url.replace(host, f"127.0.0.1:{self.port}", 1)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _ in selector.select(1.0):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                with self._lock:
                    if pair not in self._pairs:
                        return
        except OSError:
            return
        finally:
            selector.close()
            self._drop(pair)

    def _drop(self, pair: tuple[socket.socket, socket.socket]) -> None:
        with self._lock:
            self._pairs.discard(pair)
        for sock in pair:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()
            except OSError:
                pass

    def cut(self) -> None:
        self.up = False
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair)

    def heal(self) -> None:
        self.up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()
