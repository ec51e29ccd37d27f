"""A real Icinga 2 runs `toilbox run` as its check command and graphs its perfdata.

Icinga's GraphiteWriter sends each perfdata value it parsed from toilbox's output to a
Graphite listener: here a TCP socket on 127.0.0.1 that records the lines.  Debian's
icinga2-bin provides the daemon; without it this test skips.
"""

from __future__ import annotations

import shutil
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("icinga2") is None,
                       reason="icinga2 is not installed (apt-get install icinga2-bin)"),
]


class Graphite(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.lines: list[str] = []
        lines = self.lines

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for raw in self.rfile:  # one line as it comes: the connection stays open
                    lines.append(raw.decode().strip())

        super().__init__(("127.0.0.1", 0), Handler)


ICINGA_CONFIG = """
include <itl>
object CheckerComponent "checker" {{ }}
object CheckCommand "toilbox" {{
  command = [ "{toilbox}", "-c", "{config}", "run", "$toilbox_task$" ]
  env = {{ XDG_STATE_HOME = "{state}" }}
}}
object Host "web-17" {{ check_command = "dummy" }}
object Service "perf" {{
  host_name = "web-17"
  check_command = "toilbox"
  vars.toilbox_task = "perf"
  check_interval = 1s
  retry_interval = 1s  # the check is WARNING: a SOFT problem is retried, by default after 1m
}}
object GraphiteWriter "graphite" {{ host = "127.0.0.1"; port = {port}; enable_send_thresholds = true }}
"""


def test_icinga_runs_toilbox_and_graphs_its_perfdata(write_config, plugin_dir, tmp_path):
    (plugin_dir / "perf.py").write_text((Path(__file__).parent / "test_nagios_output.py")
                                        .read_text().split("PERF_PLUGIN = '''")[1].split("'''")[0])
    config = write_config("tasks:\n  perf: {uses: check.perf}\n")
    graphite = Graphite()
    threading.Thread(target=graphite.serve_forever, daemon=True).start()
    root = tmp_path / "icinga"
    dirs = {name: root / name for name in ("data", "log", "cache", "spool", "run")}
    for directory in dirs.values():
        directory.mkdir(parents=True)
    (root / "icinga2.conf").write_text(ICINGA_CONFIG.format(
        toilbox=Path(sys.executable).parent / "toilbox", config=config, state=tmp_path / "xdg",
        port=graphite.server_address[1]))
    user = ["-DRunAsUser=" + subprocess.run(["id", "-un"], capture_output=True, text=True,
                                            check=True).stdout.strip(),
            "-DRunAsGroup=" + subprocess.run(["id", "-gn"], capture_output=True, text=True,
                                             check=True).stdout.strip()]
    paths = [f"-D{name.capitalize()}Dir={path}" for name, path in dirs.items() if name != "run"]
    icinga = subprocess.Popen(["icinga2", "daemon", "-c", str(root / "icinga2.conf"), *user,
                               *paths, f"-DInitRunDir={dirs['run']}"],
                              stdout=(root / "icinga.log").open("w"), stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    try:
        # GraphiteWriter drops results it gets before its first connection, which can take
        # its 10 s reconnect timer: the checks that follow are sent.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not any(".used_pct.value " in x for x in graphite.lines):
            assert icinga.poll() is None, "icinga2 exited"
            time.sleep(0.2)
    finally:
        icinga.terminate()
        icinga.wait(timeout=30)
        graphite.shutdown()
    log = (root / "icinga.log").read_text()
    metrics = {line.split()[0].split(".perfdata.")[1]: float(line.split()[1])
               for line in graphite.lines if ".services.perf.toilbox.perfdata." in line}
    assert "used_pct.value" in metrics, log[-3000:]
    assert metrics["used_pct.value"] == 21.88
    assert metrics["used_pct.warn"] == 80
    assert metrics["used_pct.crit"] == 90
    assert metrics["used_pct.max"] == 100
    assert metrics["days_left.value"] == 12.5 * 86400, "in seconds, a unit Icinga knows"
    assert metrics["tiny.value"] == 0.000001
