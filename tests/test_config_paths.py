"""Relative paths in `with:` are read from the config file's directory (as state_dir and
plugin_dirs are), not from wherever toilbox is started; day-scale thresholds need a unit.

Each test starts a real `toilbox` from tmp_path with its config in tmp_path/etc: the
same config must give the same answer from a shell anywhere and under systemd (cwd /)."""

from __future__ import annotations

import json
import os
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from tests.certs import make_cert
from toilbox.units import ConfigPath, ExplicitDuration


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    directory = tmp_path / "etc"
    directory.mkdir()
    return directory


def write(etc: Path, body: str, name: str = "toilbox.yaml") -> Path:
    config = etc / name
    config.write_text(f"state_dir: ../state\n{textwrap.dedent(body).lstrip()}")
    return config


PATH_PLUGIN = """
    from pydantic import BaseModel, ConfigDict
    import toilbox
    from toilbox.units import ConfigPath

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: ConfigPath

    def where(ctx, params):
        '''Say where the path and the config are.'''
        return toilbox.Result(toilbox.Status.OK, params.path.read_text().strip(),
                              data={"path": str(params.path), "config_dir": str(ctx.config_dir)})

    @toilbox.hookimpl
    def register_task_types(register):
        register("check.where", where, params=Params)
"""


def test_a_plugins_config_path_and_ctx_config_dir(toilbox, etc, tmp_path):
    (etc / "plugins.d").mkdir()
    (etc / "plugins.d" / "where.py").write_text(textwrap.dedent(PATH_PLUGIN))
    (etc / "data").mkdir()
    (etc / "data" / "marker").write_text("found next to the config")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "marker").write_text("found in the current directory: wrong")
    config = write(etc, """
        plugin_dirs: [plugins.d]
        tasks:
          here: {uses: check.where, with: {path: data/marker}}
          home: {uses: check.where, with: {path: ~/marker}}
    """)
    home = tmp_path / "home"
    home.mkdir()
    (home / "marker").write_text("found at home")
    env = {"HOME": str(home)}
    ran = json.loads(toilbox("-c", str(config), "run", "here", "--json", env=env).out)
    assert ran["summary"] == "found next to the config"
    assert ran["data"] == {"path": str(etc / "data" / "marker"), "config_dir": str(etc)}
    at_home = json.loads(toilbox("-c", str(config), "run", "home", "--json", env=env).out)
    assert at_home["summary"] == "found at home"


def test_the_standard_checks_read_relative_paths_from_the_configs_directory(toilbox, etc,
                                                                            tmp_path):
    (etc / "backups").mkdir()
    (etc / "backups" / "db.dump").write_text("data")
    (etc / "run").mkdir()
    (etc / "run" / "app.pid").write_text(f"{os.getpid()}\n")
    (etc / "bin").mkdir()
    script = etc / "bin" / "check_pwd"
    script.write_text("#!/bin/sh\necho \"OK: in $(pwd)\"\n")
    script.chmod(0o755)
    cert = make_cert(etc, valid_for=timedelta(days=90))
    config = write(etc, f"""
        tasks:
          backups: {{uses: check.file-age, with: {{path: "backups/*.dump", warning: 1d}}}}
          disk: {{uses: check.disk, with: {{path: backups, warning: 100%, critical: 100%}}}}
          cert: {{uses: check.tls, with: {{file: {cert.cert_file.name}}}}}
          pid: {{uses: check.process, with: {{pidfile: run/app.pid}}}}
          script: {{uses: check.command, with: {{command: [./bin/check_pwd], cwd: run}}}}
          https: {{uses: check.http, with: {{url: "https://127.0.0.1:1/",
                                             ca_file: {cert.cert_file.name}}}}}
    """)

    def run(task: str) -> dict:
        done = toilbox("-c", str(config), "run", task, "--json")
        return json.loads(done.out)

    backups = run("backups")
    assert backups["status"] == "ok", backups
    assert backups["data"]["newest"] == str(etc / "backups" / "db.dump")
    disk = run("disk")
    assert disk["data"]["path"] == str(etc / "backups")
    assert run("cert")["summary"].startswith(f"certificate of {cert.cert_file} (CN=toilbox test)")
    pid = run("pid")
    assert pid["status"] == "ok", pid
    assert pid["data"]["pids"] == [os.getpid()]
    script_run = run("script")
    assert script_run["summary"] == f"OK: in {etc / 'run'}", script_run
    assert toilbox("-c", str(config), "validate").code == 0


def test_a_bare_number_on_a_day_scale_threshold_is_refused(toilbox, etc):
    config = write(etc, """
        tasks:
          cert:
            uses: check.tls
            with: {host: example.com, warning: 30, critical: 7d}
          backups:
            uses: check.file-age
            with: {path: /b/*, critical: "26"}
    """)
    done = toilbox("-c", str(config), "validate")
    assert done.code == 3
    assert done.err.splitlines() == [
        f"toilbox: error: {config}:5: tasks.cert.with.warning: a duration needs a unit here"
        " (30 could mean seconds or days): write 30d, 30h, 30m or 30s",
        f"{config}:8: tasks.backups.with.critical: a duration needs a unit here"
        " (26 could mean seconds or days): write 26d, 26h, 26m or 26s",
    ]


class Model(BaseModel):
    path: ConfigPath | None = None
    age: ExplicitDuration = "7d"  # type: ignore[assignment]


def test_config_path_without_a_config_keeps_a_relative_path_relative():
    """A path from the command line (``toilbox report -o``) is read from the current directory."""
    assert Model.model_validate({"path": "out/report.md"}).path == Path("out/report.md")
    assert Model.model_validate({"path": "x"}, context={"config_dir": "/etc/toilbox"}).path == (
        Path("/etc/toilbox/x")
    )
    assert Model.model_validate({"path": "/abs"}, context={"config_dir": "/etc"}).path == (
        Path("/abs")
    )


@pytest.mark.parametrize(("value", "message"), [("", "expected a path, got an empty string"),
                                                ("a\0b", "a path cannot contain a NUL byte")])
def test_config_path_refuses_an_empty_or_nul_path(value, message):
    with pytest.raises(ValidationError, match=message):
        Model.model_validate({"path": value})


@pytest.mark.parametrize(("value", "seconds"), [("30d", 30 * 86400), ("12h", 43200),
                                                ("1.5m", 90), ("250ms", 0.25)])
def test_explicit_duration_reads_every_unit(value, seconds):
    model = Model.model_validate({"age": value})
    assert model.age == seconds
    assert Model.model_validate_json(model.model_dump_json()).age == seconds  # written with a unit


def test_a_reports_relative_target_is_written_next_to_the_config(toilbox, etc, tmp_path):
    config = write(etc, """
        tasks:
          daily: {uses: report.summary, with: {to: ["reports/daily.md", "-"], format: markdown}}
    """)
    (etc / "reports").mkdir()  # a missing directory is not created unasked (issue 11)
    done = toilbox("-c", str(config), "run", "daily", "--json")
    assert json.loads(done.out.splitlines()[-1])["data"]["written"] == [
        str(etc / "reports" / "daily.md"), "stdout"
    ]
    assert (etc / "reports" / "daily.md").read_text().startswith("# toilbox report")
    assert not (tmp_path / "reports").exists()
    # From the command line, -o is read from the current directory, as a shell user expects.
    assert toilbox("-c", str(config), "report", "-o", "here.md").code == 0
    assert (tmp_path / "here.md").is_file()
