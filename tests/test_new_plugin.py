"""`toilbox new-plugin`: the generated package installs, lists, runs, and passes its own tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

KINDS = ("check", "cleanup", "report")
VENV_BIN = Path(sys.executable).parent


@pytest.mark.parametrize("kind", KINDS)
def test_generates_a_complete_package(cli, tmp_path, kind):
    result = cli("new-plugin", f"acme-{kind}", "--kind", kind, "--dir", str(tmp_path / "pkg"))
    assert result.code == 0, result.err
    root = tmp_path / "pkg"
    module = f"toilbox_acme_{kind}"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        ".gitignore",
        "README.md",
        "example.yaml",
        "pyproject.toml",
        f"src/{module}/__init__.py",
        f"tests/test_acme_{kind}.py",
    ]
    assert "next: pip install -e" in result.out
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == f"toilbox-acme-{kind}"
    assert project["project"]["entry-points"]["toilbox"] == {f"acme-{kind}": module}
    readme = (root / "README.md").read_text()
    assert f"`{kind}.acme-{kind}`" in readme
    assert "| key | default | meaning |" in readme
    source = (root / "src" / module / "__init__.py").read_text()
    compile(source, "module", "exec")
    assert 'model_config = ConfigDict(extra="forbid")' in source
    tests = (root / "tests" / f"test_acme_{kind}.py").read_text()
    assert "toilbox_contract(" in tests
    assert "toilbox_run(" in tests
    # Named for what the author writes, not for the template's example.
    assert f"def acme_{kind}(ctx: toilbox.TaskContext, params: Params)" in source
    assert f'register("{kind}.acme-{kind}", acme_{kind}, params=Params)' in source
    assert project["project"]["description"] == f"A toilbox {kind}: the task type {kind}.acme-{kind}."
    # The example config keeps its state inside the package: git is told to ignore it.
    example = yaml.safe_load((root / "example.yaml").read_text())
    assert example["state_dir"] == "./.toilbox-state"
    assert ".toilbox-state/" in (root / ".gitignore").read_text().splitlines()


def test_the_check_is_a_skeleton_not_a_file_age_check(cli, tmp_path):
    cli("new-plugin", "queue-depth", "--kind", "check", "--dir", str(tmp_path / "pkg"))
    root = tmp_path / "pkg"
    everything = "\n".join(p.read_text() for p in root.rglob("*") if p.is_file()).lower()
    for word in ("modified", "backup", "heartbeat", "file-age"):
        assert word not in everything
    source = (root / "src" / "toilbox_queue_depth" / "__init__.py").read_text()
    assert "def measure(ctx: toilbox.TaskContext, params: Params) -> float:" in source
    assert '"queue_depth": toilbox.Metric(' in source


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("class", 'plugin name "class" is a Python keyword'),
        ("import", 'plugin name "import" is a Python keyword'),
        ("a" * 101, "plugin name is 101 characters long: at most 100"),
        ("checks", "would make the package toilbox_checks, which is toilbox's own standard plugin"),
        ("cleanups", "which is toilbox's own standard plugin: installing it would replace the"
                     " standard cleanups plugin"),
        ("reports", "toilbox_reports, which is toilbox's own standard plugin"),
    ],
)
def test_refuses_a_name_that_cannot_work_or_replaces_a_standard_plugin(cli, tmp_path, name,
                                                                       message):
    result = cli("new-plugin", name, "--kind", "check", "--dir", str(tmp_path / "pkg"))
    assert result.code == 3
    assert result.err.count("\n") == 1, "one line"
    assert message in result.err
    assert not (tmp_path / "pkg").exists()
    assert cli("new-plugin", "a" * 100, "--kind", "check", "--dir", str(tmp_path / "ok")).code == 0


@pytest.mark.parametrize("kind", KINDS)
def test_the_example_config_validates_against_the_generated_module(cli, tmp_path, kind):
    cli("new-plugin", f"ex-{kind}", "--kind", kind, "--dir", str(tmp_path / "pkg"))
    # The module works as a one-file plugin too: load it from a plugin directory.
    plugin_dir = tmp_path / "plugins.d"
    plugin_dir.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "pkg" / "src" / f"toilbox_ex_{kind}" / "__init__.py",
                plugin_dir / f"ex_{kind}.py")
    example = yaml.safe_load((tmp_path / "pkg" / "example.yaml").read_text())
    example["plugin_dirs"] = [str(plugin_dir)]
    example["state_dir"] = str(tmp_path / "state")
    config = tmp_path / "example.yaml"
    config.write_text(yaml.safe_dump(example))
    result = cli("-c", str(config), "validate")
    assert result.code == 0, result.err


def test_refuses_a_bad_name_a_bad_kind_and_a_used_directory(cli, tmp_path):
    bad = cli("new-plugin", "Acme_Thing", "--kind", "check")
    assert bad.code == 3
    assert "must be lower-case words joined by dashes" in bad.err
    kind = cli("new-plugin", "acme", "--kind", "notification")
    assert kind.code == 3
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    taken = cli("new-plugin", "acme", "--kind", "check", "--dir", str(used))
    assert taken.code == 3
    assert "already exists and is not empty" in taken.err
    assert sorted(p.name for p in used.iterdir()) == ["keep.txt"]


def test_default_directory_is_named_after_the_distribution(cli, tmp_path):
    assert cli("new-plugin", "disk-quota", "--kind", "check").code == 0
    assert (tmp_path / "toilbox-disk-quota" / "src" / "toilbox_disk_quota").is_dir()


def _run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("TOILBOX_CONFIG", None)
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
def test_generated_plugins_install_pass_their_tests_and_run(tmp_path):
    """End to end, as a newcomer: generate, pip install -e, toilbox plugins, pytest, run, daemon."""
    names = {kind: f"zz-e2e-{kind}" for kind in KINDS}
    dirs = {kind: tmp_path / f"toilbox-{name}" for kind, name in names.items()}
    for kind, name in names.items():
        made = _run("toilbox", "new-plugin", name, "--kind", kind, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    install = [f"-e{d}" for d in dirs.values()]
    done = _run(sys.executable, "-m", "pip", "install", "-q", *install, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    try:
        listed = json.loads(_run("toilbox", "plugins", "--json", cwd=tmp_path).stdout)
        by_type = {t: p for p in listed for t in p["task_types"]}
        for kind, name in names.items():
            plugin = by_type[f"{kind}.{name}"]
            assert plugin["source"] == "entry point"
            assert plugin["status"] == "ok"
            assert plugin["version"] == "0.1.0"

        # Their tests pass as generated (the toilbox fixtures come from the pytest11 plugin).
        tests = _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     *map(str, dirs.values()), cwd=tmp_path)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert "passed" in tests.stdout
        assert "failed" not in tests.stdout

        # `toilbox run` runs each through its example config.
        for kind, name in names.items():
            ran = _run("toilbox", "-c", str(dirs[kind] / "example.yaml"), "run", name, "--json",
                       "--dry-run", cwd=tmp_path)
            assert ran.returncode in (0, 1, 2), ran.stderr
            assert json.loads(ran.stdout)["error"] is None, ran.stdout

        # And the daemon runs the check on its schedule.
        config = tmp_path / "daemon.yaml"
        config.write_text(
            f"state_dir: {tmp_path / 'state'}\n"
            f"tasks:\n  fresh:\n    uses: check.{names['check']}\n"
            f"    with: {{warning: 1000000000}}\n    schedule: every 1s\n"
        )
        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
        daemon = subprocess.Popen(["toilbox", "-c", str(config), "daemon"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            runs: list[dict] = []
            while time.monotonic() < deadline and not runs:
                time.sleep(0.5)
                history = _run("toilbox", "-c", str(config), "history", "--json", cwd=tmp_path)
                runs = [r for r in json.loads(history.stdout or "[]")
                        if r["trigger"] == "schedule" and r["status"] != "running"]
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.communicate(timeout=30)
        assert runs, "the daemon ran the generated check"
        assert runs[0]["status"] == "ok"
        assert runs[0]["summary"].startswith(f"{names['check']} is ")
    finally:
        dists = [f"toilbox-{name}" for name in names.values()]
        _run(sys.executable, "-m", "pip", "uninstall", "-q", "-y", *dists, cwd=tmp_path)
