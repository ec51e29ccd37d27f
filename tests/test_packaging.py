"""What a release carries: declared dependencies, metadata, and a wheel and an sdist that
work away from this tree."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OUR_MODULES = {"toilbox", "toilbox_checks", "toilbox_cleanups", "toilbox_notify", "toilbox_reports"}
# Imported by toilbox/testing.py only, which pytest itself loads (a pytest11 plugin).
PYTEST_ONLY = {"pytest"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, set[str]]:
    """Top-level modules imported by toilbox/ and plugins/, and the files importing each."""
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "toilbox").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared():
    """In the dependencies, or in the extra of the feature that imports it (postgresql)."""
    requirements = [*PROJECT["project"]["dependencies"]]
    for extra, listed in PROJECT["project"]["optional-dependencies"].items():
        if extra != "test":
            requirements += listed
    declared = {_normalise(re.split(r"[<>=!~ ;\[]", d)[0]) for d in requirements}
    distributions = metadata.packages_distributions()
    undeclared = {}
    for module, files in imported_modules().items():
        if module in sys.stdlib_module_names or module in OUR_MODULES:
            continue
        if module in PYTEST_ONLY:
            assert files == {"toilbox/testing.py"}, f"{module} is imported outside the pytest plugin"
            continue
        owners = {_normalise(d) for d in distributions.get(module, [module])}
        if not owners & declared:
            undeclared[module] = sorted(files)
    assert undeclared == {}, "imported but not in [project] dependencies"


def test_license_and_metadata():
    project = PROJECT["project"]
    assert project["license"] == "MIT", "the SPDX expression form (PEP 639)"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "Typing :: Typed" in project["classifiers"]
    assert not [c for c in project["classifiers"] if c.startswith("License ::")], (
        "PEP 639: no license classifier beside the SPDX expression")
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(project["urls"])
    assert "setuptools>=77" in PROJECT["build-system"]["requires"]
    assert (ROOT / "toilbox" / "py.typed").exists()


def test_the_lower_bounds_are_a_constraints_file():
    done = subprocess.run([sys.executable, str(ROOT / ".ci" / "lower-bounds")], capture_output=True,
                          text=True, check=True)
    pins = dict(line.split("==") for line in done.stdout.split())
    assert pins["pydantic"] == "2.8", "2.6 and 2.7 break schema and validate"
    assert set(pins) >= {"APScheduler", "click", "pluggy", "structlog", "tenacity", "MarkupSafe"}


def run(argv: list[str | Path], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,),
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode in ok, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict[str, Path]:
    """The sdist, and the wheel built from it, as `python -m build` makes a release."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=out, env=dict(os.environ))
    (sdist,) = out.glob("toilbox-*.tar.gz")
    (wheel,) = out.glob("toilbox-*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def installed(release, tmp_path_factory) -> Path:
    """A fresh venv outside the tree with the wheel (and its test extra) installed."""
    venv = tmp_path_factory.mktemp("venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "venv", venv], cwd=venv, env=env)
    run([venv / "bin" / "pip", "install", "-q", f"{release['wheel']}[test]"], cwd=venv, env=env)
    return venv


@pytest.mark.slow
def test_the_wheel_works_away_from_the_tree(installed, tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "TOILBOX_CONFIG", "PYTEST_ADDOPTS")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_STATE_HOME=str(home / ".state"), PATH=f"{installed / 'bin'}:{env['PATH']}")
    toilbox = installed / "bin" / "toilbox"
    where = run([installed / "bin" / "python", "-c", "import toilbox; print(toilbox.__file__)"],
                cwd=tmp_path, env=env).stdout
    assert where.startswith(str(installed)), "the installed copy, not this tree's"

    made = run([toilbox, "init"], cwd=tmp_path, env=env).stdout
    config = home / ".config" / "toilbox" / "toilbox.yaml"
    assert f"wrote {config}" in made
    assert run([toilbox, "validate"], cwd=tmp_path, env=env).stdout.startswith(f"{config}: ok")
    ran = run([toilbox, "run", "root-disk"], cwd=tmp_path, env=env, ok=(0, 1, 2))
    assert re.match(r"^(OK|WARNING|CRITICAL) root-disk: / .* \| 'used_pct'=", ran.stdout)
    assert ran.stderr == ""
    plugins = json.loads(run([toilbox, "plugins", "--json"], cwd=tmp_path, env=env).stdout)
    assert {p["name"] for p in plugins} >= {"checks", "cleanups", "reports", "notify"}
    schema = json.loads(run([toilbox, "schema"], cwd=tmp_path, env=env).stdout)
    assert "check.disk" in schema["$defs"]["TaskConfig"]["properties"]["uses"]["enum"]
    unit = tmp_path / "toilbox.service"
    run([toilbox, "init", "--systemd", "--path", tmp_path / "etc.yaml", "--unit", unit],
        cwd=tmp_path, env=env)
    assert f"ExecStart={toilbox} -c {tmp_path / 'etc.yaml'} " in unit.read_text()
    site = Path(run([installed / "bin" / "python", "-c", "import toilbox; print(toilbox.__file__)"],
                    cwd=tmp_path, env=env).stdout.strip()).parent
    assert (site / "py.typed").exists()
    assert (site / "data" / "examples" / "checks.yaml").exists()

    generated = run([toilbox, "new-plugin", "disk-quota", "--kind", "check"], cwd=tmp_path,
                    env=env).stdout
    plugin = tmp_path / "toilbox-disk-quota"
    assert "next: pip install -e 'toilbox-disk-quota[test]' && pytest toilbox-disk-quota" in generated
    run([installed / "bin" / "pip", "install", "-q", "-e", f"{plugin}[test]"], cwd=tmp_path, env=env)
    tested = run([installed / "bin" / "pytest", "-q", plugin], cwd=tmp_path, env=env)
    assert " passed" in tested.stdout
    listed = run([toilbox, "plugins"], cwd=tmp_path, env=env).stdout
    assert "check.disk-quota" in listed


@pytest.mark.slow
def test_the_sdists_tests_run(release, installed, tmp_path):
    with tarfile.open(release["sdist"]) as archive:
        archive.extractall(tmp_path, filter="data")
    (tree,) = tmp_path.glob("toilbox-*")
    for needed in ("LICENSE", "tests/conftest.py", "docs/cli.md", "configs/toilbox.yaml",
                   "toilbox/data/systemd/toilbox.service", ".ci/lower-bounds"):
        assert (tree / needed).exists(), needed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    done = run([installed / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "tests/test_config.py", "tests/test_schema.py", "tests/test_init.py",
                "tests/test_cli_docs.py", "tests/test_nagios_output.py"], cwd=tree, env=env)
    assert re.search(r"\d+ passed", done.stdout)
    assert " failed" not in done.stdout
