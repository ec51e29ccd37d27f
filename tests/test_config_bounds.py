"""Hostile configs: every command answers with one line naming the file and exit 3, within
2 s of CPU and 200 MB, and never hangs.

Each case runs the real `toilbox` command in a child process; CPU time and peak memory
are that child's own, from wait4(), so the bounds hold however loaded the machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TOILBOX
from toilbox import config, plugins, yamlpos
from toilbox.errors import ConfigError
from toilbox.resolve import resolve_tasks

CPU_S = 2.0
PEAK_MB = 200
HANG_S = 30  # wall clock: far above the CPU bound, for a loaded machine


@dataclass
class Measured:
    code: int
    err: str
    cpu_s: float
    peak_mb: float


# A small, fresh process starts toilbox and reports the child's own rusage: on Linux a
# child's peak RSS includes what its parent held when it forked, and pytest is large.
_MEASURE = """
import json, os, subprocess, sys
process = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime,
                  usage.ru_maxrss / 1024]))
"""


def measured(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measured:
    full_env = {**os.environ, "XDG_STATE_HOME": str(cwd / "xdg"), **(env or {})}
    helper = subprocess.Popen([sys.executable, "-c", _MEASURE, *TOILBOX, *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=cwd, env=full_env, start_new_session=True)
    try:
        out, err = helper.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        os.killpg(helper.pid, signal.SIGKILL)  # the helper and the toilbox it started
        helper.communicate()
        pytest.fail(f"toilbox {' '.join(args)} hung for {HANG_S}s")
    code, cpu_s, peak_mb = json.loads(out)
    return Measured(code, err, cpu_s, peak_mb)


def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _write(body: str | bytes) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "toilbox.yaml"
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body.replace("{tmp}", str(tmp_path)))
        return path

    return make


def _secret_file(content: bytes) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        (tmp_path / "secret").write_bytes(content)
        return _write("notify: ['json://x/${file:{tmp}/secret}']\n")(tmp_path)

    return make


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "toilbox.yaml")
    return tmp_path / "toilbox.yaml"


def _secret_fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "secret")
    return _write("notify: ['json://x/${file:{tmp}/secret}']\n")(tmp_path)


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "conf.d").mkdir()
    return tmp_path / "conf.d"


HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "recursive alias": (_write("x: &a [*a]\n"), ":1: YAML alias *a refers to a value that contains it"),
    "recursive mapping alias": (_write("tasks: &t {a: *t}\n"), ":1: YAML alias *t refers to a value"),
    "alias bomb": (_write(_billion_laughs()), "values once its aliases are expanded"),
    "deep flow nesting": (_write("x: " + "[" * 100_000 + "]" * 100_000 + "\n"), ":1: "),
    "nesting past the bound": (_write("x: " + "[" * 65 + "]" * 65 + "\n"), "nested more than 64 deep"),
    "deep block nesting": (_write("".join(f"{'  ' * i}k{i}:\n" for i in range(500)) + "  " * 500 + "v: 1\n"),
                           "nested more than 64 deep"),
    "secret from /dev/zero": (_write("notify: ['${file:/dev/zero}']\n"),
                              "cannot read secret file /dev/zero: it is a character device, not a regular file"),
    "secret from a fifo": (_secret_fifo, "it is a fifo, not a regular file"),
    "a NUL in a secret file": (_secret_file(b"tok\x00en-value\n"), "holds a NUL byte"),
    "a non-UTF-8 secret file": (_secret_file(b"tok\xffen-value\n"), "is not UTF-8 text"),
    "a huge secret file": (_secret_file(b"x" * (1 << 20)), "it is larger than 64 KiB"),
    "an integer of 5000 digits": (_write("max_concurrent: " + "9" * 5000 + "\n"),
                                  ":1: an integer of 5000 digits is too large"),
    "an integer of 4000 digits": (_write("tasks: {a: {uses: check.disk, catchup_max: " + "9" * 4000 + "}}\n"),
                                  ":1: an integer of 4000 digits is too large"),
    "an .inf duration": (_write("shutdown_grace: .inf\n"), ":1: shutdown_grace: a duration is at most 100 years"),
    "a 1.0e+999 duration": (_write("defaults: {timeout: 1.0e+999}\n"),
                            "defaults.timeout: a duration is at most"),
    "a duration of 400 digits": (_write("defaults: {timeout: " + "9" * 400 + "d}\n"), "a duration is at most"),
    "a date with year 0": (_write("state_dir: 0000-01-01\n"), ":1: cannot read this value: year 0 is out of range"),
    "a key that is a list": (_write("? [a, b]\n: 1\n"), ":1: "),
    "a NUL in the config": (_write(b"tasks: {}\n\x00\n"), "YAML error"),
    "a config over 16 MiB": (_write("# " + "x" * (16 << 20) + "\n"), "cannot read config: it is larger than 16 MiB"),
    "the config is a directory": (_directory, "cannot read config: it is a directory, not a regular file"),
    "the config is a fifo": (_fifo, "cannot read config: it is a fifo, not a regular file"),
    "the config is /dev/zero": (lambda tmp_path: Path("/dev/zero"),
                                "cannot read config: it is a character device, not a regular file"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_validate_gives_one_line_and_exit_3_within_bounds(tmp_path, case):
    make, expected = HOSTILE[case]
    path = make(tmp_path)
    result = measured(["-c", str(path), "validate"], tmp_path)
    assert result.code == 3, result.err
    assert result.err.startswith(f"toilbox: error: {path}"), result.err
    assert result.err.count("\n") == 1, result.err
    assert expected in result.err
    assert result.cpu_s < CPU_S, f"{result.cpu_s:.2f}s of CPU"
    assert result.peak_mb < PEAK_MB, f"{result.peak_mb:.0f} MB"


COMMANDS = [["list"], ["run", "a"], ["explain", "a"], ["history"], ["plugins"], ["report"],
            ["daemon"], ["reset", "a"]]


@pytest.mark.parametrize("case", ["recursive alias", "the config is a fifo"])
@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_refuses_the_same_way(tmp_path, case, command):
    make, expected = HOSTILE[case]
    path = make(tmp_path)
    result = measured(["-c", str(path), *command], tmp_path)
    assert result.code == 3, result.err
    assert result.err.startswith(f"toilbox: error: {path}"), result.err
    assert result.err.count("\n") == 1, result.err
    assert expected in result.err
    assert result.cpu_s < CPU_S and result.peak_mb < PEAK_MB


def test_aliases_within_the_bounds_still_work(write_config, plugin_dir):
    path = write_config("""
        tasks:
          a: &common {uses: check.faults, schedule: every 1h, with: {summary: shared}}
          b: *common
    """)
    tasks = resolve_tasks(config.load(path), plugins.load([plugin_dir]))
    assert tasks["b"].params.summary == "shared"  # type: ignore[attr-defined]
    assert tasks["b"].schedule == "every 1h"


def test_the_bounds_leave_room_for_a_big_fleet_config(tmp_path):
    """10,000 tasks (the daemon benchmark's size) load; the value bound is well above them."""
    body = "tasks:\n" + "".join(
        f"  t{i}: {{uses: check.disk, schedule: every 1h, with: {{path: /srv/{i}, warning: 80%}}}}\n"
        for i in range(10_000)
    )
    path = tmp_path / "big.yaml"
    path.write_text(body)
    data, positions = yamlpos.load(path)
    assert len(data["tasks"]) == 10_000
    assert positions[("tasks", "t9999", "with", "path")] == 10_001


def test_exactly_at_the_bounds_is_accepted(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("x: " + "[" * 63 + "]" * 63 + "\n")  # the mapping and 63 lists: 64 levels
    assert yamlpos.load(deep)[0]["x"]
    digits = tmp_path / "digits.yaml"
    digits.write_text("x: 18446744073709551615\n")  # 2**64 - 1: 20 digits
    assert yamlpos.load(digits)[0]["x"] == 2**64 - 1
    past = tmp_path / "past.yaml"
    past.write_text("x: " + "[" * 64 + "]" * 64 + "\n")
    with pytest.raises(ConfigError, match="nested more than 64 deep"):
        yamlpos.load(past)


def test_an_environment_secret_that_is_not_utf8_is_a_config_error(tmp_path):
    path = _write("notify: ['json://x/${TB_BYTES}']\n")(tmp_path)
    env = {**os.environ, "TB_BYTES": "x"}
    result = subprocess.run([*TOILBOX, "-c", str(path), "validate"], capture_output=True,
                            env={k.encode(): v.encode() for k, v in env.items()}
                            | {b"TB_BYTES": b"tok\xffen-value"},
                            check=False, cwd=tmp_path)
    assert result.returncode == 3
    assert result.stderr.decode().endswith("environment variable TB_BYTES is not UTF-8 text\n")
