"""The CLI's conventions, and docs/cli.md against the real click command tree."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
from pathlib import Path

import click
import pytest

from tests.conftest import TOILBOX
from toilbox.cli import cli as toilbox_cli

DOC = Path(__file__).parents[1] / "docs" / "cli.md"
SECTION = re.compile(r"^## toilbox(?: (\S+))?\n(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
OPTION_ROW = re.compile(r"^\| (`-(?:[^|\\]|\\\|)*?) \|", re.MULTILINE)  # \| is a pipe in a cell


def documented() -> dict[str, tuple[str, set[str]]]:
    """{command ("" for the group): (its section, the option flags in its table)}."""
    sections = {}
    for match in SECTION.finditer(DOC.read_text()):
        flags = set()
        for cell in OPTION_ROW.findall(match[2]):
            flags |= {token.split()[0] for token in re.findall(r"`([^`]+)`", cell)}
        sections[match[1] or ""] = (match[2], flags)
    return sections


def flags(command: click.Command) -> set[str]:
    return {flag for p in command.params if isinstance(p, click.Option)
            for flag in (*p.opts, *p.secondary_opts)}


def test_every_command_and_option_is_documented_and_nothing_else():
    docs = documented()
    commands = dict(toilbox_cli.commands)
    assert set(docs) == {"", *commands}, "one section per command, and the group's own"
    assert docs[""][1] == flags(toilbox_cli)
    for name, command in commands.items():
        text, documented_flags = docs[name]
        assert documented_flags == flags(command), name
        usage = text.strip().splitlines()[0]
        assert usage.startswith(f"`toilbox {name}"), name
        for argument in (p for p in command.params if isinstance(p, click.Argument)):
            assert (argument.metavar or argument.name.upper()) in usage, (name, argument.name)
        if not flags(command):
            assert "No options." in text, name


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run toilbox with stdout and stderr on a pseudo-terminal, as a person would see it."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([*TOILBOX, *args], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    process.wait(timeout=30)
    return b"".join(chunks).decode()


def test_no_color_is_honoured(write_config, tmp_path):
    config = write_config("tasks:\n  a: {uses: check.faults}\n")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    env.pop("NO_COLOR", None)
    args = ["-c", str(config), "--log-level", "info", "run", "a"]  # logs: console on a tty
    coloured = run_on_a_terminal(args, env)
    plain = run_on_a_terminal(args, {**env, "NO_COLOR": "1"})
    assert "\x1b[" in coloured, "colour on a terminal"
    assert "OK a: all good" in plain
    assert "run.finished" in plain
    assert "\x1b[" not in plain, "neither the result nor the log lines are coloured"


def test_shell_completion_offers_commands_and_task_names(write_config, tmp_path):
    config = write_config("tasks:\n  disk: {uses: check.faults}\n  daily: {uses: check.faults}\n")

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_TOILBOX_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - 1)}
        done = subprocess.run(TOILBOX, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert "plain,run" in complete("toilbox ru")
    assert complete(f"toilbox -c {config} run d") == ["plain,disk", "plain,daily"]
    assert complete("toilbox -c /nonexistent.yaml run d") == [], "no config: nothing offered"
    script = subprocess.run(TOILBOX, env={**os.environ, "_TOILBOX_COMPLETE": "bash_source"},
                            capture_output=True, text=True, check=True).stdout
    assert "complete -o nosort -F _toilbox_completion toilbox" in script


def test_validate_json(cli, write_config):
    good = write_config("tasks:\n  a: {uses: check.faults}\n")
    verdict = json.loads(cli("-c", str(good), "validate", "--json").out)
    assert verdict["ok"] is True
    assert verdict["tasks"] == 1
    assert verdict["config"] == str(good)
    assert verdict["broken_plugins"] == []
    bad = write_config("tasks:\n  a: {uses: check.faults, timeout: forever}\n", name="bad.yaml")
    result = cli("-c", str(bad), "validate", "--json")
    assert result.code == 3
    failed = json.loads(result.out)
    assert failed["ok"] is False
    assert failed["errors"][0].startswith(f"{bad}:4: tasks.a.timeout: ")
    assert result.err.startswith("toilbox: error: ")


def test_explain_json(cli, write_config):
    config = write_config("tasks:\n  a: {uses: check.faults, schedule: '@daily'}\n")
    assert cli("-c", str(config), "run", "a").code == 0
    facts = json.loads(cli("-c", str(config), "explain", "a", "--json").out)
    assert facts["task"] == "a"
    assert facts["schedule"] == "@daily"
    assert facts["next_fire"].endswith("+00:00")
    assert facts["daemon"] is None
    assert [run["status"] for run in facts["history"]] == ["ok"]
    assert "It has no schedule" not in cli("-c", str(config), "explain", "a").out


def test_plugins_exit_1_when_one_is_broken(toilbox, write_config, plugin_dir):
    config = write_config("tasks: {}\n")
    assert toilbox("-c", str(config), "plugins").code == 0
    (plugin_dir / "broken.py").write_text("raise ImportError('no sdk')\n")
    listed = toilbox("-c", str(config), "plugins")
    assert listed.code == 1
    assert "BROKEN: ImportError: no sdk" in listed.out


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_pause_and_resume_say_what_they_did(cli, write_config, command):
    config = write_config("tasks: {}\n")
    said = cli("-c", str(config), command, "--remediation")
    assert said.code == 0
    assert said.out.startswith(f"remediation {command}d")
