"""The commands around `run`: list, history, schema, validate; secrets; the state dir."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOILBOX


@pytest.fixture
def config(write_config):
    return write_config("""
        tasks:
          disk: {uses: check.faults, schedule: "*/5 * * * *", with: {status: warning}}
          daily: {uses: check.faults, schedule: "@daily"}
          "off": {uses: check.faults, enabled: false}
    """)


def test_list_shows_type_schedule_and_last_status(cli, config):
    empty = json.loads(cli("-c", str(config), "list", "--json").out)
    assert [t["task"] for t in empty] == ["disk", "daily", "off"]
    assert empty[0]["type"] == "check.faults"
    assert empty[0]["schedule"] == "*/5 * * * *"
    assert empty[0]["last_status"] is None
    assert cli("-c", str(config), "run", "disk").code == 1
    listed = {t["task"]: t for t in json.loads(cli("-c", str(config), "list", "--json").out)}
    assert listed["disk"]["last_status"] == "warning"
    assert listed["off"]["enabled"] is False
    table = cli("-c", str(config), "list").out
    assert "(disabled)" in table
    assert "warning" in table


def test_history_is_newest_first_with_lineage_keys(cli, config):
    for task in ("disk", "daily", "disk"):
        cli("-c", str(config), "run", task)
    runs = json.loads(cli("-c", str(config), "history", "--json").out)
    assert [r["task"] for r in runs] == ["disk", "daily", "disk"]
    assert runs[0]["started_at"] > runs[1]["started_at"] > runs[2]["started_at"]
    assert {"started_at", "finished_at", "trigger", "scheduled_for", "parent_run_id"} <= set(runs[0])
    assert runs[0]["trigger"] == "manual"
    only = json.loads(cli("-c", str(config), "history", "disk", "--limit", "1", "--json").out)
    assert len(only) == 1
    assert only[0]["run_id"] == runs[0]["run_id"]
    assert cli("-c", str(config), "history", "nope").code == 3
    assert "disk" in cli("-c", str(config), "history").out


def test_validate_and_schema(cli, config):
    assert cli("-c", str(config), "validate").out.strip().endswith("ok (3 tasks)")
    schema = json.loads(cli("schema").out)
    assert schema["title"] == "toilbox config"
    assert "tasks" in schema["properties"]
    task = schema["$defs"]["TaskConfig"]
    assert "check.disk" in task["properties"]["uses"]["enum"]
    branch = next(b for b in task["allOf"] if b["if"]["properties"]["uses"]["const"] == "check.command")
    assert "command" in branch["then"]["properties"]["with"]["properties"]


def test_secrets_never_reach_logs_or_json(toilbox, write_config):
    secret = "hunter2-very-secret"
    config = write_config("""
        tasks:
          leak: {uses: check.faults, with: {summary: "token is ${TB_SECRET}"}}
    """)
    result = toilbox("-c", str(config), "--log-level", "debug", "run", "leak", "--json",
                     env={"TB_SECRET": secret})
    assert result.code == 0
    assert json.loads(result.out)["summary"] == "token is ***"
    assert secret not in result.out
    assert secret not in result.err
    assert '"secret_echo": "token is ***"' in result.err, "the plugin's own log line is redacted"
    history = toilbox("-c", str(config), "history", "--json", env={"TB_SECRET": secret})
    assert secret not in history.out


def test_state_dir_is_private(cli, config, tmp_path):
    cli("-c", str(config), "run", "daily")
    mode = stat.S_IMODE((tmp_path / "state").stat().st_mode)
    assert mode == 0o700


def test_read_only_state_dir_is_a_clear_error(tmp_path, plugin_dir):
    state = tmp_path / "ro-state"
    state.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(f"state_dir: {state}\nplugin_dirs: [{plugin_dir}]\n"
                      "tasks:\n  a: {uses: check.faults}\n")
    if os.geteuid() == 0:
        # root ignores permission bits: make it read-only for real with a read-only mount
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", str(state)],
                          check=False, capture_output=True).returncode != 0:
            pytest.skip("running as root and cannot mount a read-only tmpfs here")
    else:
        state.chmod(0o500)
    try:
        done = subprocess.run([*TOILBOX, "-c", str(config), "run", "a"], capture_output=True,
                              text=True, check=False)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(state)], check=False)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("toilbox: error: ")
    assert str(state) in done.stderr
    assert "read-only" in done.stderr.lower() or "permission denied" in done.stderr.lower()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tiny tmpfs as a full disk")
def test_full_state_dir_is_a_clear_error(tmp_path, plugin_dir):
    state = tmp_path / "full-state"
    state.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(state)],
                      check=False, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (state / "filler").write_bytes(b"x" * 60_000)  # leave too little for the database
        config = tmp_path / "c.yaml"
        config.write_text(f"state_dir: {state}\nplugin_dirs: [{plugin_dir}]\n"
                          "tasks:\n  a: {uses: check.faults}\n")
        done = subprocess.run([*TOILBOX, "-c", str(config), "run", "a"], capture_output=True,
                              text=True, check=False)
    finally:
        subprocess.run(["umount", str(state)], check=False)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("toilbox: error: state ")
    assert "full" in done.stderr.lower()


def test_toilbox_console_script_is_installed():
    script = Path(sys.executable).parent / "toilbox"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("toilbox, version ")


def test_a_store_from_an_older_version_is_migrated(cli, config, tmp_path):
    import sqlite3

    state = tmp_path / "state"
    state.mkdir()
    old = sqlite3.connect(state / "toilbox.db")
    old.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, task TEXT NOT NULL, task_type TEXT NOT NULL,"
        " status TEXT NOT NULL, trigger TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,"
        " scheduled_for TEXT, parent_run_id TEXT, attempts INTEGER NOT NULL DEFAULT 0,"
        " duration_s REAL, summary TEXT NOT NULL DEFAULT '', metrics TEXT NOT NULL DEFAULT '{}',"
        " data TEXT NOT NULL DEFAULT '{}', error TEXT, output TEXT NOT NULL DEFAULT '',"
        " dry_run INTEGER NOT NULL DEFAULT 0, hostname TEXT NOT NULL, pid INTEGER NOT NULL);"
        "INSERT INTO runs VALUES ('old-1', 'daily', 'check.faults', 'ok', 'manual',"
        " '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:01+00:00', NULL, NULL, 1, 1.0, 'old run',"
        " '{}', '{}', NULL, '', 0, 'host', 1);"
        "PRAGMA user_version=1;"
    )
    old.commit()
    old.close()
    assert cli("-c", str(config), "run", "daily").code == 0
    runs = json.loads(cli("-c", str(config), "history", "--json").out)
    assert [r["run_id"] for r in runs][-1] == "old-1"
    assert runs[-1]["details"] == ""
    newer = sqlite3.connect(state / "toilbox.db")
    newer.execute("PRAGMA user_version=99")
    newer.commit()
    newer.close()
    refused = cli("-c", str(config), "history")
    assert refused.code == 3
    assert "was written by a newer toilbox (schema 99)" in refused.err
