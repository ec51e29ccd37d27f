"""500 `check.http` tasks due in the same instant, through the daemon (max_concurrent 32),
against a plain Python loop doing the same 500 requests with httpx and 32 threads (issue 5).

Both hit the same local HTTP server, which runs in its own process.  Reported: wall time
from the first fire to the last finish, and the scheduler's lag to dispatch (p50/p99).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import percentile
from bench_daemon import workspace

TASKS = int(os.environ.get("BENCH_TASKS", "500"))
SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"ok\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer.request_queue_size = 1024
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def plain_loop(url: str) -> float:
    import httpx

    def get(_: int) -> int:
        return httpx.get(url, timeout=30).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(get, range(TASKS)))
    assert all(code == 200 for code in codes)
    return time.perf_counter() - started


def through_daemon(url: str) -> tuple[float, list[float], int]:
    from apscheduler.triggers.date import DateTrigger

    from toilbox import log
    from toilbox.daemon import Daemon, _never_called

    tasks = "".join(f"  h{i}: {{uses: check.http, schedule: '@yearly', with: {{url: '{url}'}}}}\n"
                    for i in range(TASKS))
    root, config = workspace(tasks, "max_concurrent: 32\ndefaults: {retry: {attempts: 1}}\n")
    log_path = root / "daemon.log"
    with log_path.open("w") as log_file:
        log.configure("json", "info", log_file)
        saved = os.dup(2)
        os.dup2(log_file.fileno(), 2)
        daemon = Daemon(str(config))
        daemon.start()
        when = datetime.fromtimestamp(time.time() + 2, UTC)
        for i in range(TASKS):
            daemon.scheduler.add_job(_never_called, DateTrigger(when), id=f"h{i}",
                                     replace_existing=True)
        time.sleep(2.5)
        deadline = time.monotonic() + 120
        while daemon.running and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon.shutdown(grace=5)
        os.dup2(saved, 2)
    fired, finished, lags, ok = [], [], [], 0
    for line in log_path.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "task.fired":
            fired.append(datetime.fromisoformat(event["timestamp"]))
            lags.append(event["dispatch_lag_ms"])
        elif event["event"] == "run.finished":
            finished.append(datetime.fromisoformat(event["timestamp"]))
            ok += event["status"] == "ok"
    wall = (max(finished) - min(fired)).total_seconds()
    return wall, lags, ok


def main() -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/health"
        plain = plain_loop(url)
        wall, lags, ok = through_daemon(url)
    finally:
        server.terminate()
        server.wait()
    print(f"{TASKS} check.http tasks due at once, max_concurrent 32")
    print(f"  plain loop, httpx, 32 threads:      {plain:6.2f} s  ({TASKS / plain:.0f} req/s)")
    print(f"  toilbox daemon, first fire to last finish: {wall:6.2f} s  ({TASKS / wall:.0f} runs/s),"
          f" {ok} OK")
    print(f"  scheduler lag to dispatch: p50 {percentile(lags, 50):.1f} ms,"
          f" p99 {percentile(lags, 99):.1f} ms, max {max(lags):.1f} ms")


if __name__ == "__main__":
    main()
