"""What a one-shot `toilbox run` imports, and the plugin loading that keeps it small.

Each test runs the real command in a child process, so that what it imports is what a
user's `toilbox run` imports (a test process has imported far more already).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Records the modules a `toilbox` process imported, then runs it as `python -m toilbox`
# would: the forked attempt ends with os._exit and writes nothing.
RECORDER = """
import atexit, json, os, sys
parent = os.getpid()
def record():
    if os.getpid() == parent:
        with open(os.environ["RECORD_MODULES"], "w") as out:
            json.dump(sorted(sys.modules), out)
atexit.register(record)
from toilbox.cli import main
main(sys.argv[1:])
"""

# What `toilbox run` of a check.disk task has no use for: each is a real cost, most of
# them tens of milliseconds (rich alone was 40 ms of a 250 ms start-up).
NOT_IMPORTED = [
    "rich",  # structlog's tracebacks; toilbox renders exceptions as text
    "asyncio",  # structlog's async loggers
    "apscheduler",  # the daemon's
    "jinja2",  # reports, new-plugin
    "httpx",  # check.http
    "apprise",  # notifications, imported when one is sent
    "psycopg",  # the fleet store
    "psycopg_pool",
    "cryptography",  # check.tls
    "psutil",  # check.process
    "waitress",  # the status page
    "prometheus_client",  # /metrics
    "toilbox.daemon",
    "toilbox.dispatch",
    "toilbox.zygote",
    "toilbox.upkeep",
    "toilbox.web",
    "toilbox.report",
    "toilbox.schema",
    "toilbox_checks.command",
    "toilbox_checks.file_age",
    "toilbox_checks.http_check",
    "toilbox_checks.process",
    "toilbox_checks.tcp",
    "toilbox_checks.tls",
    "toilbox_cleanups.tasks",
    "toilbox_cleanups.params",
    "toilbox_cleanups.files",
    "toilbox_reports.tasks",
    "toilbox_reports.params",
    "toilbox_reports.summary",
]


def run_recorded(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[
    subprocess.CompletedProcess[str], set[str]
]:
    record = tmp_path / "modules.json"
    record.unlink(missing_ok=True)
    full_env = {**os.environ, "RECORD_MODULES": str(record), **(env or {})}
    full_env.pop("TOILBOX_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", RECORDER, *args], capture_output=True, text=True,
        env=full_env, cwd=tmp_path, timeout=60, check=False,
    )
    return done, set(json.loads(record.read_text()))


def disk_config(tmp_path: Path, extra: str = "", name: str = "toilbox.yaml") -> Path:
    config = tmp_path / name
    config.write_text(textwrap.dedent(f"""\
        state_dir: {tmp_path / "state"}
        tasks:
          disk: {{uses: check.disk, with: {{path: {tmp_path}, warning: 99%, critical: 100%}}}}
    """) + textwrap.indent(textwrap.dedent(extra), "  "))
    return config


def imported(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def test_run_of_a_disk_check_imports_only_what_it_needs(tmp_path: Path) -> None:
    """Only its own task is resolved: the config's other tasks import nothing."""
    config = disk_config(tmp_path, textwrap.dedent("""\
          tmp-cleanup:
            uses: cleanup.files
            with: {roots: [/nonexistent/toilbox-test], older_than: 7d}
          daily: {uses: report.summary}
    """))
    done, modules = run_recorded(tmp_path, "-c", str(config), "run", "disk", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ok"
    assert "toilbox_checks.disk" in modules, "the check that ran was imported"
    assert "pydantic" in modules and "structlog" in modules  # the recorder sees imports
    assert [name for name in NOT_IMPORTED if imported(modules, name)] == []


def test_rich_and_asyncio_still_work_after_toilbox_is_imported() -> None:
    """structlog was imported without them; anyone who wants them still gets them."""
    code = textwrap.dedent("""\
        import asyncio, sys
        import toilbox, structlog
        assert "rich" not in sys.modules
        import rich.console
        async def main():
            await structlog.get_logger().ainfo("from an async logger")
        asyncio.run(main())
        print("ok", type(structlog.stdlib.asyncio).__name__)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "from an async logger" in done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok module")  # asyncio was imported before toilbox


def test_structlogs_async_logger_imports_asyncio_on_first_use() -> None:
    code = textwrap.dedent("""\
        import sys
        import toilbox, structlog
        assert "asyncio" not in sys.modules
        import asyncio
        async def main():
            await structlog.get_logger().ainfo("from an async logger")
        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "from an async logger" in done.stdout + done.stderr


def test_an_unknown_task_type_is_one_line_naming_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "toilbox.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\ntasks:\n  disk:\n    uses: check.dsk\n")
    done, modules = run_recorded(tmp_path, "-c", str(config), "run", "disk")
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f'toilbox: error: {config}:4: tasks.disk.uses: unknown task type "check.dsk"'
        ' (did you mean "check.disk"?)'
    )
    assert "check.http" in lines[0], "the known types are named, though not imported"
    assert not imported(modules, "toilbox_checks.http_check")


def install(site: Path, dist: str, files: dict[str, str], entry_points: str) -> None:
    """Lay a package out as pip installs one: its modules and a dist-info."""
    for name, body in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
    dist_info = site / f"{dist}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


WIDGETS = """
    from pydantic import BaseModel, ConfigDict
    import toilbox

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        widgets: int

    def count(ctx, params):
        '''Count widgets.'''
        return toilbox.Result(toilbox.Status.OK, f"{params.widgets} widgets")

    @toilbox.hookimpl
    def register_task_types(register):
        register("check.widgets", count, params=Params)
"""


def test_a_plugin_without_declared_types_is_imported_and_works(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "acme", {"acme_toil.py": WIDGETS}, "[toilbox]\nacme = acme_toil\n")
    env = {"PYTHONPATH": str(site)}
    config = disk_config(tmp_path, "  widgets: {uses: check.widgets, with: {widgets: 3}}\n")
    done, modules = run_recorded(tmp_path, "-c", str(config), "run", "disk", env=env)
    assert done.returncode == 0, done.stderr
    assert "acme_toil" in modules, "without declarations, a plugin is imported to ask it"
    done, _ = run_recorded(tmp_path, "-c", str(config), "run", "widgets", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"] == "3 widgets"


def declared_acme(site: Path, widgets: str = WIDGETS) -> None:
    install(site, "acme", {
        "acme_pkg/__init__.py": "",
        "acme_pkg/widgets.py": widgets,
        "acme_pkg/gadgets.py": WIDGETS.replace("widgets", "gadgets"),
    }, """\
        [toilbox]
        acme = acme_pkg

        [toilbox.task_types]
        check.widgets = acme_pkg.widgets
        check.gadgets = acme_pkg.gadgets
    """)


def test_a_plugin_with_declared_types_is_imported_only_for_its_tasks(tmp_path: Path) -> None:
    site = tmp_path / "site"
    declared_acme(site)
    env = {"PYTHONPATH": str(site)}
    config = disk_config(tmp_path, textwrap.dedent("""\
          widgets: {uses: check.widgets, with: {widgets: 3}}
          gadgets: {uses: check.gadgets, with: {gadgets: 4}}
    """))
    done, modules = run_recorded(tmp_path, "-c", str(config), "run", "disk", env=env)
    assert done.returncode == 0, done.stderr
    assert "acme_pkg" in modules, "the plugin's own module is loaded for its other hooks"
    assert not imported(modules, "acme_pkg.widgets") and not imported(modules, "acme_pkg.gadgets")
    done, modules = run_recorded(tmp_path, "-c", str(config), "run", "widgets", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"] == "3 widgets"
    assert "acme_pkg.widgets" in modules and "acme_pkg.gadgets" not in modules
    listed = subprocess.run(
        [sys.executable, "-m", "toilbox", "plugins", "--json"], capture_output=True, text=True,
        env={**os.environ, **env}, check=False, timeout=60,
    )
    acme = next(p for p in json.loads(listed.stdout) if p["name"] == "acme:acme")
    assert acme["status"] == "ok"
    assert acme["task_types"] == ["check.widgets", "check.gadgets"]
    assert acme["descriptions"] == {"check.widgets": "Count widgets.",
                                    "check.gadgets": "Count gadgets."}
    assert acme["hooks"] == ["register_task_types"]


@pytest.mark.parametrize(("widgets", "reason"), [
    ("raise ImportError('no libwidget')", "acme_pkg.widgets: ImportError: no libwidget"),
    (WIDGETS.replace('"check.widgets"', '"check.widget"'),
     "toilbox.task_types declares check.widgets in acme_pkg.widgets, whose"
     " register_task_types did not register it"),
    ("def register_task_types(register): pass",
     "acme_pkg.widgets: LookupError: acme_pkg.widgets has no register_task_types marked"
     " @toilbox.hookimpl"),
])
def test_a_broken_declared_plugin_is_reported(tmp_path: Path, widgets: str, reason: str) -> None:
    site = tmp_path / "site"
    declared_acme(site, widgets)
    env = {"PYTHONPATH": str(site)}
    config = disk_config(tmp_path, "  widgets: {uses: check.widgets, with: {widgets: 3}}\n")
    done, _ = run_recorded(tmp_path, "-c", str(config), "run", "widgets", env=env)
    assert done.returncode == 3
    assert done.stderr == (
        f'toilbox: error: {config}:4: tasks.widgets.uses: task type "check.widgets" could not'
        f" be loaded: plugin acme:acme is broken: {reason}\n"
    )
    # The disk check does not need the broken module: it runs.  `validate` checks every
    # task, and says what is wrong; with no task of that type, it warns.
    done, _ = run_recorded(tmp_path, "-c", str(config), "run", "disk", env=env)
    assert done.returncode == 0, done.stderr
    done, _ = run_recorded(tmp_path, "-c", str(config), "validate", env=env)
    assert done.returncode == 3
    assert 'tasks.widgets.uses: task type "check.widgets" could not be loaded' in done.stderr
    ok_config = disk_config(tmp_path, name="ok.yaml")
    done, _ = run_recorded(tmp_path, "-c", str(ok_config), "validate", env=env)
    assert done.returncode == 0
    assert f"plugin acme:acme is broken: {reason}" in done.stderr
    listed, _ = run_recorded(tmp_path, "plugins", "--json", env=env)
    assert listed.returncode == 1
    acme = next(p for p in json.loads(listed.stdout) if p["name"] == "acme:acme")
    assert acme["status"] == "broken"
    assert acme["error"] == reason
    assert "check.gadgets" in acme["task_types"], "the other module still loads"


def test_a_broken_undeclared_plugin_is_still_reported(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "acme", {"acme_toil.py": "raise RuntimeError('half installed')\n"},
            "[toilbox]\nacme = acme_toil\n")
    env = {"PYTHONPATH": str(site)}
    config = disk_config(tmp_path)
    done, _ = run_recorded(tmp_path, "-c", str(config), "run", "disk", env=env)
    assert done.returncode == 0, "a broken plugin never takes the others down"
    done, _ = run_recorded(tmp_path, "-c", str(config), "validate", env=env)
    assert "plugin acme:acme is broken: RuntimeError: half installed" in done.stderr


def test_run_checks_its_task_and_what_its_remediation_runs(tmp_path: Path) -> None:
    """A typo in another task is `validate`'s to report: it does not turn every check a
    monitoring system runs UNKNOWN.  A task the run may start, it checks."""
    tail = textwrap.dedent("""\
        fix:
          uses: cleanup.files
          with: {roots: [/nonexistent/toilbox-test], older_than: soon}
        other: {uses: check.tcp, with: {port: many}}
    """)
    plain = disk_config(tmp_path, tail, name="plain.yaml")
    done, modules = run_recorded(tmp_path, "-c", str(plain), "run", "disk")
    assert done.returncode == 0, done.stderr
    assert not imported(modules, "toilbox_checks.tcp")
    done, _ = run_recorded(tmp_path, "-c", str(plain), "validate")
    assert done.returncode == 3
    assert "tasks.fix.with.older_than" in done.stderr and "tasks.other.with" in done.stderr
    fixing = tmp_path / "fixing.yaml"
    fixing.write_text(plain.read_text().replace(
        "critical: 100%}}", "critical: 100%}, remediate: {run: [fix]}}"))
    done, _ = run_recorded(tmp_path, "-c", str(fixing), "run", "disk")
    assert done.returncode == 3
    assert "tasks.fix.with.older_than" in done.stderr
    assert "tasks.other" not in done.stderr
