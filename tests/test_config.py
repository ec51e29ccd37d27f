"""Config loading: every bad input is one clear line naming file, line and key, exit 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from toilbox import config, plugins
from toilbox.errors import ConfigError
from toilbox.resolve import resolve_tasks


def load(path: Path, plugin_dir: Path) -> dict[str, config.Task]:
    loaded = config.load(path)
    return resolve_tasks(loaded, plugins.load([plugin_dir]))


def test_defaults_apply_and_tasks_override_them(write_config, plugin_dir):
    path = write_config("""
        defaults:
          timeout: 30s
          retry: {attempts: 5, backoff: 1s}
        tasks:
          plain: {uses: check.faults}
          tuned:
            uses: check.faults
            timeout: 2m
            retry: {attempts: 1}
            schedule: "*/5 * * * *"
    """)
    tasks = load(path, plugin_dir)
    assert tasks["plain"].timeout == 30
    assert tasks["plain"].retry.attempts == 5
    assert tasks["tuned"].timeout == 120
    assert tasks["tuned"].retry.attempts == 1
    assert tasks["tuned"].retry.backoff == 1  # the rest of the policy still comes from defaults
    assert tasks["tuned"].schedule == "*/5 * * * *"


def test_relative_paths_are_relative_to_the_config_file(tmp_path, plugin_dir):
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "c.yaml").write_text("state_dir: ./state\nplugin_dirs: [../plugins.d]\n")
    loaded = config.load(sub / "c.yaml")
    assert loaded.config.state_dir == sub / "state"
    assert loaded.config.plugin_dirs == [plugin_dir]


def test_default_state_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "c.yaml").write_text("tasks: {}\n")
    assert config.load(tmp_path / "c.yaml").config.state_dir == tmp_path / "xdg" / "toilbox"


def test_secrets_from_env_and_file(write_config, plugin_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TB_TOKEN", "s3cr3t-token")
    (tmp_path / "pw").write_text("file-secret\n")
    path = write_config(f"""
        tasks:
          a: {{uses: check.faults, with: {{summary: "t=${{TB_TOKEN}} f=${{file:{tmp_path}/pw}}"}}}}
          b: {{uses: check.faults, with: {{summary: "literal $${{NOT_A_SECRET}}"}}}}
    """)
    loaded = config.load(path)
    tasks = resolve_tasks(loaded, plugins.load([plugin_dir]))
    assert tasks["a"].params.summary == "t=s3cr3t-token f=file-secret"  # type: ignore[attr-defined]
    assert tasks["b"].params.summary == "literal ${NOT_A_SECRET}"  # type: ignore[attr-defined]
    assert loaded.secrets == {"s3cr3t-token", "file-secret"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("tasks:\n  a: {uses: check.faults\n", ":5: YAML syntax error: did not find expected ',' or '}' (in the flow mapping"),
        ("tasks:\n  a:\n    uses: check.faults\n    colour: red\n", ":6: tasks.a.colour: unknown key"),
        ("tasks:\n  a:\n    uses: check.nope\n", ':5: tasks.a.uses: unknown task type "check.nope"'),
        ("tasks:\n  a:\n    uses: check.faults\n    timeout: soon\n",
         ':6: tasks.a.timeout: expected a duration like 30s, 10m, 2h or 7d, got "soon"'),
        ("tasks:\n  a:\n    uses: check.faults\n    schedule: '61 * * * *'\n",
         ":6: tasks.a.schedule: cron minute field '61': '61' is not in 0-59"),
        ("tasks:\n  a:\n    uses: check.faults\n    with: {mode: 3, colour: red}\n",
         ":6: tasks.a.with.mode: Input should be a valid string, got 3"),
        ("tasks:\n  a:\n    uses: check.faults\n    with:\n      colour: red\n",
         ":7: tasks.a.with.colour: unknown key"),
        ("tasks:\n  a:\n    with: {}\n", ":4: tasks.a.uses: this key is required"),
        ("tasks:\n  a: {uses: check.faults}\n  a: {uses: check.faults}\n",
         ":5: tasks.a: duplicate key"),
        ("tasks:\n  a:\n    uses: check.faults\n    with: {summary: '${TB_MISSING_VAR}'}\n",
         ":6: tasks.a.with.summary: environment variable TB_MISSING_VAR is not set"),
        ("timezone: Mars/Olympus\n", ':3: timezone: unknown timezone "Mars/Olympus"'),
        ("defaults:\n  retry: {attempts: 0}\n",
         ":4: defaults.retry.attempts: Input should be greater than or equal to 1, got 0"),
        ("tasks:\n  'bad name!': {uses: check.faults}\n", "tasks: task name 'bad name!' may use"),
        ("- just\n- a list\n", ":1: the config must be a mapping"),
        ("tasks:\n\ta: {uses: check.faults}\n",
         ":4: YAML syntax error: found character that cannot start any token (a tab: YAML indents with spaces only)"),
        ("tasks:\n  a: {uses: check.fautls}\n",
         ':4: tasks.a.uses: unknown task type "check.fautls" (did you mean "check.faults"?)'),
        ("tasks:\n  a: {uses: check.faults, schedule: every 5 minutes}\n",
         ':4: tasks.a.schedule: "every" takes a duration like 30s, 10m or 2h, got "5 minutes"'),
        ("tasks:\n  off: {uses: check.faults}\n",
         ':4: tasks: key off is read as a bool; quote it ("off") to use it as a name'),
    ],
)
def test_bad_config_is_one_clear_line(write_config, plugin_dir, body, expected, monkeypatch):
    monkeypatch.delenv("TB_MISSING_VAR", raising=False)
    path = write_config(body) if not body.startswith("-") else _raw(path_of(write_config), body)
    with pytest.raises(ConfigError) as caught:
        load(path, plugin_dir)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert expected in message, message
    assert "Traceback" not in message


def path_of(write_config) -> Path:
    return write_config("")


def _raw(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_all_problems_are_reported_at_once(write_config, plugin_dir):
    path = write_config("""
        tasks:
          a: {uses: check.faults, with: {colour: red}}
          b: {uses: check.nope}
    """)
    with pytest.raises(ConfigError) as caught:
        load(path, plugin_dir)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert "tasks.a.with.colour" in lines[0]
    assert "tasks.b.uses" in lines[1]


def test_cli_reports_config_errors_without_traceback(cli, write_config):
    path = write_config("tasks:\n  a:\n    uses: check.faults\n    timeout: soon\n")
    result = cli("-c", str(path), "validate")
    assert result.code == 3
    assert result.err.strip() == (
        f'toilbox: error: {path}:6: tasks.a.timeout: expected a duration like 30s, 10m, 2h or 7d,'
        ' got "soon"'
    )


def test_missing_config_says_where_it_looked(cli):
    result = cli("validate")
    assert result.code == 3
    assert "no config file found" in result.err
    assert "/etc/toilbox/toilbox.yaml" in result.err


def test_unreadable_and_non_utf8_config(cli, tmp_path):
    (tmp_path / "latin1.yaml").write_bytes(b"tasks: {}\n# caf\xe9\n")
    assert "not UTF-8" in cli("-c", str(tmp_path / "latin1.yaml"), "validate").err
    missing = cli("-c", str(tmp_path / "nope.yaml"), "validate")
    assert missing.code == 3
    assert "nope.yaml: cannot read config: No such file or directory" in missing.err


def test_every_shipped_config_validates(cli, monkeypatch):
    import re

    root = Path(__file__).parent.parent / "configs"
    shipped = sorted(root.rglob("*.yaml"))
    assert shipped, "configs/ holds example configs"
    for path in shipped:
        for name in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", path.read_text()):
            monkeypatch.setenv(name, f"json://127.0.0.1:9/{name.lower()}")  # examples' secrets
        result = cli("-c", str(path), "validate")
        assert result.code == 0, f"{path}: {result.err}"
