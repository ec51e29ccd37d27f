"""`toilbox init`: the shipped starter config (and systemd unit), written safely."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    config_home = tmp_path / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    return config_home


def test_init_writes_the_starter_where_the_config_is_looked_for(cli, home):
    made = cli("init")
    target = home / "toilbox" / "toilbox.yaml"
    assert made.code == 0, made.err
    assert f"wrote {target}" in made.out
    assert target.read_text() == (ROOT / "configs" / "toilbox.yaml").read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    examples = made.out.split("examples to copy tasks from: ")[1].split("\n")[0]
    assert sorted(p.name for p in Path(examples).glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "configs" / "examples").glob("*.yaml"))
    found = cli("validate")  # no -c: found in $XDG_CONFIG_HOME/toilbox/toilbox.yaml
    assert found.code == 0, found.err
    assert found.out.startswith(f"{target}: ok (3 tasks)")


def test_init_never_overwrites_without_force(cli, home):
    target = home / "toilbox" / "toilbox.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("tasks: {}\n# mine\n")
    refused = cli("init")
    assert refused.code == 3
    assert refused.err.strip() == f"toilbox: error: {target} exists; --force overwrites it"
    assert target.read_text() == "tasks: {}\n# mine\n"
    forced = cli("init", "--force")
    assert forced.code == 0
    assert f"replaced {target}" in forced.out
    assert "root-disk" in target.read_text()


def test_init_does_not_write_through_a_planted_symlink(cli, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    link = tmp_path / "conf" / "toilbox.yaml"
    link.parent.mkdir()
    link.symlink_to(victim)
    assert cli("init", "--path", str(link)).code == 3
    dangling = tmp_path / "conf" / "dangling.yaml"
    dangling.symlink_to(tmp_path / "would-be-created")
    assert cli("init", "--path", str(dangling)).code == 3, "a dangling link counts as there"
    assert not (tmp_path / "would-be-created").exists()
    assert cli("init", "--path", str(link), "--force").code == 0
    assert victim.read_text() == "precious\n", "the link is replaced, its target untouched"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not link.is_symlink()
    assert "root-disk" in link.read_text()
    assert [p.name for p in link.parent.iterdir() if p.name.startswith(".")] == []


def test_init_systemd_writes_a_unit_for_this_installation(cli, tmp_path):
    config = tmp_path / "etc" / "toilbox.yaml"
    unit = tmp_path / "units" / "toilbox.service"
    made = cli("init", "--systemd", "--path", str(config), "--unit", str(unit))
    assert made.code == 0, made.err
    text = unit.read_text()
    toilbox = Path(sys.executable).parent / "toilbox"
    assert f"\nExecStart={toilbox} -c {config} --log-format json daemon\n" in text
    assert text.count("ExecStart=") == 1
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "systemctl daemon-reload && systemctl enable --now toilbox" in made.out
    from toilbox.config import load

    # root's `toilbox run` and the daemon share one history, and one lock per task
    assert load(config).config.state_dir == Path("/var/lib/toilbox")
    assert "\nstate_dir:" not in (ROOT / "configs" / "toilbox.yaml").read_text(), (
        "the user's starter keeps the XDG default")
    if shutil.which("systemd-analyze"):
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                                  text=True, check=False)
        assert verified.returncode == 0, verified.stderr


def test_init_checks_every_target_before_writing_any(cli, tmp_path):
    config = tmp_path / "toilbox.yaml"
    unit = tmp_path / "toilbox.service"
    unit.write_text("[Unit]\n")
    refused = cli("init", "--systemd", "--path", str(config), "--unit", str(unit))
    assert refused.code == 3
    assert not config.exists(), "nothing written when one target is in the way"
    assert cli("init", "--unit", str(unit)).code == 3, "--unit goes with --systemd"


def test_exec_start_quotes_what_systemd_would_split_or_expand():
    from toilbox.starter import unit_text

    text = unit_text(Path("/etc/my toilbox/100%.yaml"), ["/opt/$HOME/bin/toilbox"])
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    assert line == ('ExecStart=/opt/$$HOME/bin/toilbox -c "/etc/my toilbox/100%%.yaml"'
                    " --log-format json daemon")


def test_unwritable_target_is_a_clear_error(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = cli("init", "--path", str(blocker / "toilbox.yaml"))  # works as root too
    assert result.code == 3
    assert result.err.startswith(f"toilbox: error: cannot write {blocker / 'toilbox.yaml'}: ")
    assert "Traceback" not in result.err


def test_new_plugin_advice_fits_a_pipx_install(monkeypatch, tmp_path):
    from toilbox.starter import plugin_next_steps

    plain = plugin_next_steps(Path("toilbox-x"))
    assert plain == "pip install -e 'toilbox-x[test]' && pytest toilbox-x && toilbox plugins"
    venv = tmp_path / "pipx" / "venvs" / "toilbox"
    venv.mkdir(parents=True)
    (venv / "pipx_metadata.json").write_text("{}")  # what pipx leaves in each of its venvs
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.chdir(tmp_path)
    advice = plugin_next_steps(Path("toilbox-x"))
    assert advice == (
        f"pipx inject toilbox pytest && pipx inject --editable toilbox '{tmp_path}/toilbox-x' && "
        f"{venv}/bin/python -m pytest '{tmp_path}/toilbox-x' && toilbox plugins")
