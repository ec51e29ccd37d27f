from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
TOILBOX = [sys.executable, "-m", "toilbox"]


@pytest.fixture(autouse=True)
def _logs_to_this_tests_stderr() -> None:
    """Logging is configured per process; point it at this test's captured stderr, not a
    stream an earlier test's capture has closed."""
    from toilbox import log

    log.configure("json", "info", sys.stderr)


@dataclass
class Invocation:
    code: int
    out: str
    err: str


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A plugin directory holding the misbehaving test plugin (task type check.faults)."""
    directory = tmp_path / "plugins.d"
    directory.mkdir()
    shutil.copy(DATA / "faults_plugin.py", directory / "faults.py")
    return directory


@pytest.fixture
def write_config(tmp_path: Path, plugin_dir: Path) -> Callable[[str], Path]:
    """Write a config into tmp_path; state and plugin dirs point inside tmp_path."""

    def write(body: str, name: str = "toilbox.yaml") -> Path:
        path = tmp_path / name
        header = f"state_dir: {tmp_path / 'state'}\nplugin_dirs: [{plugin_dir}]\n"
        path.write_text(header + textwrap.dedent(body).lstrip("\n"))
        return path

    return write


@pytest.fixture
def toilbox(tmp_path: Path) -> Callable[..., Invocation]:
    """Run the real `toilbox` command in a child process."""

    def invoke(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Invocation:
        full_env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg-state"), **(env or {})}
        full_env.pop("TOILBOX_CONFIG", None)
        done = subprocess.run(
            [*TOILBOX, *args], capture_output=True, text=True, env=full_env, timeout=timeout,
            cwd=tmp_path, check=False,
        )
        return Invocation(done.returncode, done.stdout, done.stderr)

    return invoke


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run toilbox's CLI in this process (fast): same boundary as the real command."""
    from toilbox.cli import main

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("TOILBOX_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Invocation:
        capsys.readouterr()
        try:
            main(["--log-format", "json", *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        else:  # pragma: no cover - main always exits
            code = 0
        captured = capsys.readouterr()
        return Invocation(code, captured.out, captured.err)

    return invoke


# -- PostgreSQL: a database per test session, a schema per test ------------------------------

PG_ADMIN_URL = os.environ.get("TOILBOX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_database():
    """A database of this test session's own on the local PostgreSQL, dropped at the end.
    Where no PostgreSQL answers, the tests that need it skip and say why."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install '.[test]')")
    try:
        admin = psycopg.connect(PG_ADMIN_URL, connect_timeout=3, autocommit=True)
    except psycopg.Error as exc:
        pytest.skip(
            f"no PostgreSQL at {PG_ADMIN_URL} ({str(exc).splitlines()[0]}): the fleet tests need"
            " one (.ci/run starts it; TOILBOX_TEST_PG names another)"
        )
    name = f"toilbox_test_{os.getpid()}_{os.urandom(3).hex()}"
    admin.execute(f"CREATE DATABASE {name}")
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def pg_url(pg_database):
    """A connection URL whose tables live in a schema of this test's own."""
    import psycopg

    schema = f"t_{os.urandom(5).hex()}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{pg_database}?options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
