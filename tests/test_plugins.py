"""The plugin host: sources, isolation of broken plugins, hooks, and the CLI's view of them."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

from toilbox import cli as toilbox_cli
from toilbox import plugins


def write_plugin(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
    from pydantic import BaseModel
    import toilbox

    class Params(BaseModel):
        greeting: str = "hello"

    def greet(ctx, params):
        '''Say hello.'''
        return toilbox.Result(toilbox.Status.OK, params.greeting)

    @toilbox.hookimpl
    def register_task_types(register):
        register("check.greet", greet, params=Params)
"""


def test_standard_plugins_come_through_the_entry_point_group():
    host = plugins.build()
    standard = {p.name: p for p in host.plugins if p.source == "standard"}
    assert "checks" in standard
    assert all(p.location.startswith("toilbox_") for p in standard.values())
    assert {"check.command", "check.disk"} <= set(standard["checks"].task_types)
    assert host.task_types["check.disk"].plugin == "checks"


def test_plugin_dir_files_are_loaded(tmp_path):
    write_plugin(tmp_path, "greeter", GOOD)
    host = plugins.build([tmp_path])
    info = next(p for p in host.plugins if p.name == "greeter")
    assert info.source == "plugin dir"
    assert info.task_types == ["check.greet"]
    assert info.hooks == ["register_task_types"]
    assert host.task_types["check.greet"].description == "Say hello."


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("raise ImportError('no module named acme_sdk')\n", "ImportError: no module named acme_sdk"),
        ("import toilbox\n@toilbox.hookimpl\ndef register_task_typos(register): pass\n",
         'unknown hook "register_task_typos" (did you mean "register_task_types"?)'),
        ("import toilbox\n@toilbox.hookimpl\ndef register_task_types(register):\n"
         "    register('Check Bad Name', print, params=dict)\n",
         'task type name "Check Bad Name" must be <check|cleanup|report>.<lower-case name>'),
        ("import toilbox\n@toilbox.hookimpl\ndef register_task_types(register):\n"
         "    register('check.disk', print, params=dict)\n",
         "params must be a pydantic BaseModel subclass"),
        ("1/0\n", "ZeroDivisionError"),
        ("import sys\nsys.exit(4)\n", "SystemExit: 4"),
    ],
)
def test_a_broken_plugin_is_isolated(tmp_path, body, error):
    write_plugin(tmp_path, "broken", body)
    write_plugin(tmp_path, "greeter", GOOD)
    host = plugins.build([tmp_path])
    broken = next(p for p in host.plugins if p.name == "broken")
    assert broken.error is not None
    assert error in broken.error
    assert broken.to_json()["status"] == "broken"
    assert "check.greet" in host.task_types, "the other plugins still load"
    assert "check.disk" in host.task_types


def test_duplicate_task_type_marks_the_second_plugin_broken(tmp_path):
    write_plugin(tmp_path, "a_first", GOOD)
    write_plugin(tmp_path, "b_second", GOOD)
    host = plugins.build([tmp_path])
    second = next(p for p in host.plugins if p.name == "b_second")
    assert second.error == "ValueError: check.greet is already registered by a_first"


def test_task_using_a_broken_plugin_fails_validation_with_the_reason(cli, write_config, tmp_path):
    plugin_dir = tmp_path / "plugins.d"
    write_plugin(plugin_dir, "acme", "raise ImportError('acme_sdk is not installed')\n")
    config = write_config("tasks:\n  a: {uses: check.acme}\n  b: {uses: check.faults}\n")
    result = cli("-c", str(config), "validate")
    assert result.code == 3
    assert ':4: tasks.a.uses: unknown task type "check.acme"' in result.err
    assert "plugins that failed to load: acme (ImportError: acme_sdk is not installed)" in result.err
    fixed = write_config("tasks:\n  b: {uses: check.faults}\n", name="fixed.yaml")
    warned = cli("-c", str(fixed), "validate")
    assert warned.code == 0
    assert "toilbox: warning: plugin acme is broken: ImportError: acme_sdk is not installed" in warned.err
    assert warned.out.strip().endswith("ok (1 task)")
    works = cli("-c", str(config), "plugins", "--json")
    assert works.code == 1, "a broken plugin fails the listing, so a deploy can gate on it"
    listed = {p["name"]: p for p in json.loads(works.out)}
    assert listed["acme"]["status"] == "broken"
    assert listed["faults"]["task_types"] == ["check.faults"]


def test_plugins_command_works_without_a_config(cli):
    result = cli("plugins", "--json")
    assert result.code == 0
    listed = json.loads(result.out)
    assert "checks" in [p["name"] for p in listed]
    assert set(listed[0]) == {"name", "version", "source", "location", "hooks", "task_types",
                              "descriptions", "status", "error", "warning"}
    table = cli("plugins")
    assert "checks" in table.out
    assert "standard" in table.out


def test_run_finished_is_called_and_a_raising_hook_is_isolated(cli, write_config, tmp_path):
    seen = tmp_path / "seen.jsonl"
    plugin_dir = tmp_path / "plugins.d"
    write_plugin(plugin_dir, "a_raises", """
        import toilbox

        @toilbox.hookimpl
        def run_finished(run):
            raise RuntimeError("a notifier bug")
    """)
    write_plugin(plugin_dir, "b_records", f"""
        import json, toilbox

        @toilbox.hookimpl
        def run_finished(run):
            with open({str(seen)!r}, "a") as out:
                out.write(json.dumps(run.to_json(history=True)) + "\\n")
    """)
    config = write_config("tasks:\n  a: {uses: check.faults, with: {status: warning}}\n")
    result = cli("-c", str(config), "run", "a")
    assert result.code == 1
    assert '"event": "plugin.hook_failed"' in result.err
    assert "a notifier bug" in result.err
    record = json.loads(seen.read_text())
    assert record["status"] == "warning"
    assert record["trigger"] == "manual"
    assert record["finished_at"] is not None


def test_register_commands_adds_a_subcommand(cli, tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_installed_plugin(site, "acme_cmds", """
        import click, toilbox

        @toilbox.hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                '''Say hello from a plugin.'''
                click.echo("hello from acme")
    """)
    monkeypatch.syspath_prepend(str(site))
    # entry points are read once per process, and plugin commands added once
    monkeypatch.setattr(plugins, "_cache", {})
    plugins._entry_point_plugins.cache_clear()
    monkeypatch.setattr(toilbox_cli.cli, "_plugins_added", False)
    monkeypatch.delitem(toilbox_cli.cli.commands, "hello", raising=False)
    try:
        result = cli("hello")
    finally:
        toilbox_cli.cli.commands.pop("hello", None)
        plugins._entry_point_plugins.cache_clear()  # later tests must not see acme_cmds
    assert result.out == "hello from acme\n"


def make_installed_plugin(site: Path, name: str, body: str, version: str = "1.2.3") -> None:
    """Lay a plugin out as pip installs one: a module and a dist-info with entry points."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}.py").write_text(textwrap.dedent(body))
    dist_info = site / f"{name}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[toilbox]\n{name} = {name}\n")


def test_third_party_entry_point_plugin_runs_through_the_cli(toilbox, write_config, tmp_path):
    site = tmp_path / "site"
    make_installed_plugin(site, "acme_toil", """
        from pydantic import BaseModel, ConfigDict
        import toilbox

        class Params(BaseModel):
            model_config = ConfigDict(extra="forbid")
            widgets: int

        def count(ctx, params):
            '''Count widgets.'''
            status = toilbox.Status.OK if params.widgets < 10 else toilbox.Status.WARNING
            return toilbox.Result(status, f"{params.widgets} widgets",
                                  metrics={"widgets": params.widgets})

        @toilbox.hookimpl
        def register_task_types(register):
            register("check.widgets", count, params=Params)
    """)
    env = {"PYTHONPATH": str(site)}
    listed = json.loads(toilbox("plugins", "--json", env=env).out)
    acme = next(p for p in listed if p["name"] == "acme_toil:acme_toil")
    assert acme["source"] == "entry point"
    assert acme["version"] == "1.2.3"
    assert acme["task_types"] == ["check.widgets"]
    config = write_config("tasks:\n  widgets: {uses: check.widgets, with: {widgets: 12}}\n")
    result = toilbox("-c", str(config), "run", "widgets", "--json", env=env)
    assert result.code == 1
    assert json.loads(result.out)["summary"] == "12 widgets"
    bad = write_config("tasks:\n  widgets: {uses: check.widgets, with: {widgets: many}}\n",
                       name="bad.yaml")
    invalid = toilbox("-c", str(bad), "validate", env=env)
    assert invalid.code == 3
    assert "tasks.widgets.with.widgets: Input should be a valid integer" in invalid.err


def ordered_plugin(log: Path, label: str, options: str = "", *, raises: bool = False) -> str:
    """A run_finished implementation that appends its label to ``log`` (and may raise)."""
    marker = f"@toilbox.hookimpl({options})" if options else "@toilbox.hookimpl"
    fail = "    raise RuntimeError('a notifier bug')\n" if raises else ""
    return (
        "import toilbox\n"
        f"{marker}\n"
        "def run_finished(run):\n"
        f"    with open({str(log)!r}, 'a') as out:\n"
        f"        out.write({label!r} + '\\n')\n"
        f"{fail}"
    )


def test_hooks_keep_pluggys_order_and_wrappers_and_isolate_a_raising_one(tmp_path):
    log = tmp_path / "order.log"
    plugin_dir = tmp_path / "plugins.d"
    plugin_dir.mkdir()
    # Files load in name order; pluggy calls the last registered first (LIFO), tryfirst
    # before and trylast after the others, inside the wrappers.
    write_plugin(plugin_dir, "a_tryfirst", ordered_plugin(log, "tryfirst", "tryfirst=True"))
    write_plugin(plugin_dir, "b_first", ordered_plugin(log, "registered first", raises=True))
    write_plugin(plugin_dir, "c_trylast", ordered_plugin(log, "trylast", "trylast=True"))
    write_plugin(plugin_dir, "d_second", ordered_plugin(log, "registered second"))
    write_plugin(plugin_dir, "e_wrapper", f"""
        import toilbox

        @toilbox.hookimpl(wrapper=True)
        def run_finished(run):
            with open({str(log)!r}, "a") as out:
                out.write("wrapper before\\n")
            result = yield
            with open({str(log)!r}, "a") as out:
                out.write("wrapper after\\n")
            return result
    """)
    write_plugin(plugin_dir, "f_old_wrapper", f"""
        import toilbox

        @toilbox.hookimpl(hookwrapper=True)
        def run_finished(run):
            with open({str(log)!r}, "a") as out:
                out.write("old-style wrapper before\\n")
            yield
            with open({str(log)!r}, "a") as out:
                out.write("old-style wrapper after\\n")
    """)
    host = plugins.build([plugin_dir])
    assert all(p.error is None for p in host.plugins), [p.error for p in host.plugins]
    host.run_finished(run=None)  # type: ignore[arg-type]
    assert log.read_text().splitlines() == [
        "old-style wrapper before",
        "wrapper before",
        "tryfirst",
        "registered second",
        "registered first",  # raises: logged, and the others still run
        "trylast",
        "wrapper after",
        "old-style wrapper after",
    ]


def test_a_raising_wrapper_is_logged_not_fatal(tmp_path, capsys):
    from toilbox import log

    log.configure("json", "info", sys.stderr)  # capsys's stderr, not the one set up before it
    plugin_dir = tmp_path / "plugins.d"
    plugin_dir.mkdir()
    write_plugin(plugin_dir, "wrapper", """
        import toilbox

        @toilbox.hookimpl(wrapper=True)
        def run_finished(run):
            yield
            raise RuntimeError("a wrapper bug")
    """)
    plugins.build([plugin_dir]).run_finished(run=None)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert '"event": "plugin.hook_failed"' in err
    assert "a wrapper bug" in err


def test_a_wrong_argument_name_shows_which_and_what_the_hook_takes(cli, tmp_path):
    plugin_dir = tmp_path / "plugins.d"
    plugin_dir.mkdir()
    write_plugin(plugin_dir, "typo", """
        import toilbox

        @toilbox.hookimpl
        def run_finished(record, run):
            pass
    """)
    host = plugins.build([plugin_dir])
    typo = next(p for p in host.plugins if p.name == "typo")
    assert typo.error == (
        "hook run_finished(record, run): run_finished has no argument record"
        " (its arguments: run)"
    )
    listed = cli("plugins", "--json")  # no config: the plugin dir comes from one
    assert listed.code == 0
    config = tmp_path / "toilbox.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nplugin_dirs: [{plugin_dir}]\n")
    table = cli("-c", str(config), "plugins").out
    assert "BROKEN: hook run_finished(record, run): run_finished has no argument record" in table


def test_a_plugin_that_implements_no_hooks_is_flagged(cli, tmp_path):
    plugin_dir = tmp_path / "plugins.d"
    plugin_dir.mkdir()
    write_plugin(plugin_dir, "unmarked", """
        from pydantic import BaseModel
        import toilbox

        def register_task_types(register):  # @toilbox.hookimpl forgotten
            register("check.unmarked", lambda ctx, params: None, params=BaseModel)
    """)
    write_plugin(plugin_dir, "helpers", "ANSWER = 42\n")
    config = tmp_path / "toilbox.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nplugin_dirs: [{plugin_dir}]\n"
                      "tasks:\n  t: {uses: check.unmarked}\n")
    listed = {p["name"]: p for p in json.loads(cli("-c", str(config), "plugins", "--json").out)}
    assert listed["unmarked"]["warning"] == (
        "implements no hooks: register_task_types is not marked @toilbox.hookimpl"
    )
    assert listed["helpers"]["warning"].startswith("implements no hooks (toilbox hooks: ")
    assert listed["greeter" if "greeter" in listed else "checks"]["warning"] is None
    table = cli("-c", str(config), "plugins").out
    assert "WARNING: implements no hooks: register_task_types is not marked" in table
    invalid = cli("-c", str(config), "validate")
    assert invalid.code == 3
    assert 'unknown task type "check.unmarked"' in invalid.err
    assert invalid.err.rstrip().endswith(
        "; plugins that implement no hooks: helpers, unmarked (register_task_types is not"
        " marked @toilbox.hookimpl)"
    )


def test_descriptions_show_in_plugins_its_json_and_the_schema(cli, tmp_path):
    write_plugin(tmp_path, "greeter", GOOD)
    config = tmp_path / "toilbox.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nplugin_dirs: [{tmp_path}]\n")
    listed = {p["name"]: p for p in json.loads(cli("-c", str(config), "plugins", "--json").out)}
    assert listed["greeter"]["descriptions"] == {"check.greet": "Say hello."}
    assert listed["checks"]["descriptions"]["check.disk"] == (
        "Check the space and inodes used on the filesystem holding a path."
    )
    table = cli("-c", str(config), "plugins").out.splitlines()
    assert any(re.fullmatch(r"greeter +- +plugin dir +check\.greet +Say hello\.", line)
               for line in table), table
    assert any(re.fullmatch(r" +check\.tls +Days until a certificate expires; .*", line)
               for line in table), "later task types of a plugin have a row each"
    schema = json.loads(cli("schema").out)
    branches = schema["$defs"]["TaskConfig"]["allOf"]
    disk = next(b for b in branches if b["if"]["properties"]["uses"]["const"] == "check.disk")
    assert disk["then"]["properties"]["with"]["description"] == (
        "Check the space and inodes used on the filesystem holding a path."
    )


def test_stale_lists_plugin_code_a_running_process_did_not_load(tmp_path):
    plugin_dir = tmp_path / "plugins.d"
    plugin_dir.mkdir()
    write_plugin(plugin_dir, "greeter", GOOD)
    write_plugin(plugin_dir, "gone", "ANSWER = 1\n")
    host = plugins.build([plugin_dir])
    assert host.stale() == []
    write_plugin(plugin_dir, "newcomer", GOOD.replace("check.greet", "check.new"))
    later = (plugin_dir / "greeter.py").stat().st_mtime + 5
    os.utime(plugin_dir / "greeter.py", (later, later))
    (plugin_dir / "gone.py").unlink()
    assert host.stale() == [
        f"{plugin_dir / 'gone.py'} (removed)",
        f"{plugin_dir / 'greeter.py'} (changed)",
        f"{plugin_dir / 'newcomer.py'} (new)",
    ]
