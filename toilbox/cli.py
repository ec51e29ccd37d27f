"""The ``toilbox`` command: parse, delegate, print.  The one error boundary is ``main``."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any, NoReturn

import click

from toilbox import __version__, render
from toilbox.errors import EXIT_UNKNOWN, ToilboxError
from toilbox.result import Status
from toilbox.terminal import printable

MAX_LIMIT = 2**63 - 1  # what a database counts rows in


class _Obj:
    def __init__(self, config: str | None) -> None:
        self.config = config

    def app(self) -> Any:
        from toilbox.app import load_app

        app = load_app(self.config)
        # Closed when the command ends, however it ends: in fleet mode that ships the
        # host runs this command recorded to the shared store.
        click.get_current_context().call_on_close(app.close)
        return app

    def has_config(self) -> bool:
        from toilbox.app import find_config

        if self.config:
            return True
        try:
            find_config(None)
        except ToilboxError:
            return False
        return True


class _ToilboxGroup(click.Group):
    """Plugin subcommands are loaded only when asked for, so built-in commands start fast."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if not self._plugins_added:
            from toilbox.plugins import load

            self._plugins_added = True
            load().register_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)


@click.group(cls=_ToilboxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    metavar="FILE",
    help="Config file (default: $TOILBOX_CONFIG, "
    "./toilbox.yaml, ~/.config/toilbox/toilbox.yaml, /etc/toilbox/toilbox.yaml).",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"]),
    default=None,
    help="Log line format on stderr (default: console on a terminal, else json).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.version_option(__version__, prog_name="toilbox")
@click.pass_context
def cli(ctx: click.Context, config: str | None, log_format: str | None, log_level: str) -> None:
    """Automate production toil safely: checks, cleanups and reports as plugins."""
    from toilbox import log

    log.configure(log_format, log_level)
    ctx.obj = _Obj(config)


@cli.command()
@click.argument("task")
@click.option("--dry-run", is_flag=True, help="Plan only: the task is told to change nothing.")
@click.option("--force", is_flag=True, help="Go past the task's safety budgets, this once.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_obj
def run(obj: _Obj, task: str, dry_run: bool, force: bool, as_json: bool) -> int:
    """Run TASK once, now, and exit with its Nagios status (0 OK .. 3 UNKNOWN)."""
    from toilbox.automation import run as run_and_follow

    app = obj.app()
    # SIGTERM ends a one-shot run like Ctrl-C: the attempt is killed and recorded.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        record = run_and_follow(app, task, dry_run=dry_run, force=force)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        click.echo(json.dumps(record.to_json()))
    else:
        click.echo(render.run_result(printable(record)))
    return Status.from_label(record.status).value


@cli.command()
@click.pass_obj
def daemon(obj: _Obj) -> int:
    """Schedule every enabled task until SIGTERM or SIGINT; SIGHUP reloads the config."""
    from toilbox.daemon import serve

    return serve(obj.config)


@cli.command()
@click.argument("task")
@click.pass_obj
def explain(obj: _Obj, task: str) -> None:
    """Say in plain words why TASK did or did not run, and when it runs next."""
    from toilbox.explain import explain_task

    click.echo(printable(explain_task(obj.app(), task)))


@cli.command()
@click.pass_obj
def validate(obj: _Obj) -> None:
    """Check the config file and every task's parameters."""
    app = obj.app()
    for plugin in app.plugins.plugins:
        if plugin.error:
            warning = f"toilbox: warning: plugin {plugin.name} is broken: {plugin.error}"
            click.echo(printable(warning), err=True)
    for note in app.loaded.plain_values:
        click.echo(f"toilbox: note: {note}", err=True)
    count = len(app.tasks)
    click.echo(f"{app.loaded.path}: ok ({count} task{'' if count == 1 else 's'})")


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_tasks(obj: _Obj, as_json: bool) -> None:
    """List tasks: type, schedule, next fire time and last status (no daemon needed)."""
    from toilbox.explain import next_fire

    app = obj.app()
    last = app.store().last_runs(list(app.tasks))
    rows = []
    for name, task in app.tasks.items():
        run = last.get(name)
        upcoming = next_fire(task)
        rows.append(
            {
                "task": name,
                "type": task.type.name,
                "schedule": task.schedule,
                "enabled": task.enabled,
                "next_fire": upcoming.isoformat() if upcoming else None,
                "last_status": run.status if run else None,
                "last_run": run.started_at if run else None,
                "last_summary": run.summary if run else None,
            }
        )
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = render.table(
        ["TASK", "TYPE", "SCHEDULE", "NEXT FIRE", "LAST", "LAST RUN"],
        [
            [
                r["task"],
                r["type"],
                (r["schedule"] or "-") + ("" if r["enabled"] else " (disabled)"),
                render.when(r["next_fire"]),
                r["last_status"] or "-",
                render.when(r["last_run"]),
            ]
            for r in rows
        ],
    )
    click.echo(table or "no tasks configured")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def plugins(obj: _Obj, as_json: bool) -> None:
    """List plugins: name, version, source and task types (works without a config)."""
    from toilbox import config as config_mod
    from toilbox import plugins as plugins_mod
    from toilbox.app import find_config

    # With a config, its plugin_dirs count too; its tasks need not be valid to list plugins.
    dirs = config_mod.load(find_config(obj.config)).config.plugin_dirs if obj.has_config() else []
    host = plugins_mod.load(dirs)
    infos = [info.to_json() for info in host.plugins]
    if as_json:
        click.echo(json.dumps(infos))
        return
    click.echo(render.plugins(printable(infos)))


@cli.command()
@click.argument("check")
@click.pass_obj
def reset(obj: _Obj, check: str) -> None:
    """Close CHECK's open circuit so that automatic fixes may run again."""
    from toilbox.automation import reset as reset_circuit

    click.echo(reset_circuit(obj.app(), check))


@cli.command()
@click.option(
    "--remediation",
    is_flag=True,
    required=True,
    help="Stop every automatic fix; checks and notifications go on.",
)
@click.pass_obj
def pause(obj: _Obj, remediation: bool) -> None:
    """The kill switch: pause all automatic remediation until `toilbox resume`."""
    from toilbox.automation import PAUSED
    from toilbox.models import now_iso

    obj.app().store().set_setting(PAUSED, f"by toilbox pause at {now_iso()}")
    click.echo(
        "remediation paused: checks and notifications go on; `toilbox resume "
        "--remediation` undoes it"
    )


@cli.command()
@click.option("--remediation", is_flag=True, required=True, help="Allow automatic fixes again.")
@click.pass_obj
def resume(obj: _Obj, remediation: bool) -> None:
    """Undo `toilbox pause --remediation`."""
    from toilbox.automation import PAUSED

    obj.app().store().set_setting(PAUSED, None)
    click.echo("remediation resumed")


@cli.command()
@click.argument("task", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1, max=MAX_LIMIT))
@click.option(
    "--chain",
    "chain_of",
    metavar="RUN_ID",
    help="The whole story of a run: check, fixes, verify, notifications.",
)
@click.option("--host", metavar="HOST_ID", help="Only runs of this host (fleet mode).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history(
    obj: _Obj, task: str | None, limit: int, chain_of: str | None, host: str | None, as_json: bool
) -> None:
    """Show recorded runs, newest first."""
    app = obj.app()
    if chain_of is not None:
        from toilbox.automation import chain

        story = chain(app.store(), chain_of)
        click.echo(json.dumps(story) if as_json else render.chain(printable(story)))
        return
    if task is not None:
        app.task(task)
    records = app.store().history(task, limit, host)
    if as_json:
        click.echo(json.dumps([r.to_json(history=True) for r in records]))
        return
    records = printable(records)
    click.echo(
        render.table(
            ["STARTED", "TASK", "HOST", "STATUS", "TRIGGER", "TRIES", "SECONDS", "SUMMARY"],
            [
                [
                    r.started_at[:19].replace("T", " "),
                    r.task,
                    r.host or "-",
                    r.status,
                    r.trigger,
                    str(r.attempts),
                    f"{r.duration_s:.2f}" if r.duration_s is not None else "-",
                    r.summary,
                ]
                for r in records
            ],
        )
        or "no runs recorded yet"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def fleet(obj: _Obj, as_json: bool) -> None:
    """List the daemons sharing this store: host, version, config hash, last seen."""
    from toilbox.fleet import fleet_view

    view = fleet_view(obj.app())
    click.echo(json.dumps(view) if as_json else render.fleet(printable(view)))


@cli.command()
def schema() -> None:
    """Print the config's JSON Schema, with each installed task type's parameters."""
    from toilbox import plugins as plugins_mod
    from toilbox.schema import config_schema

    click.echo(json.dumps(config_schema(plugins_mod.load()), indent=2))


@cli.command(name="new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(["check", "cleanup", "report"]), required=True)
@click.option("--dir", "directory", metavar="DIR", help="Where to write (default: ./toilbox-NAME).")
def new_plugin(name: str, kind: str, directory: str | None) -> None:
    """Generate a pip-installable plugin package with one working task type and its tests."""
    from pathlib import Path

    from toilbox.scaffold import new_plugin as generate

    made = generate(name, kind, Path(directory) if directory else None)
    root = made[0].parents[2]
    click.echo(f"wrote {len(made)} files to {root}:")
    click.echo("".join(f"  {path.relative_to(root)}\n" for path in made), nl=False)
    click.echo(f"next: pip install -e '{root}[test]' && pytest {root} && toilbox plugins")


@cli.command()
@click.option("--window", default="7d", show_default=True, help="How far back: 24h, 7d, ...")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "markdown", "json"]),
    default="markdown",
    show_default=True,
)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE ({date} allowed), not stdout.")
@click.option("--host", metavar="HOST_ID", help="Only runs of this host (fleet mode).")
@click.pass_obj
def report(obj: _Obj, window: str, fmt: str, output: str | None, host: str | None) -> None:
    """Report on the recent history now: what needs attention, tasks, checks, cleanups."""
    import structlog
    from pydantic import ValidationError

    from toilbox.context import TaskContext
    from toilbox.errors import TaskFailed, UsageError
    from toilbox.runner import new_run_id

    # The report.summary task type (a plugin: the core never imports one), run in this
    # process so that its "-" target is this terminal.
    app = obj.app()
    task_type = app.plugins.task_types.get("report.summary")
    if task_type is None:
        raise UsageError(app.plugins.explain_unknown("report.summary"))
    try:
        params = task_type.params.model_validate(
            {"window": window, "format": fmt, "to": [output or "-"], "host": host}
        )
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise UsageError(f"report: {message}") from None
    (app.state_dir / "tasks").mkdir(mode=0o700, exist_ok=True)
    state_dir = app.state_dir / "tasks" / "report"
    state_dir.mkdir(mode=0o700, exist_ok=True)
    ctx = TaskContext(
        "report",
        new_run_id(),
        1,
        False,
        structlog.get_logger("report.summary"),
        state_dir,
        open_history=app.open_history,
        config_dir=app.loaded.config_dir,
    )
    try:
        result = task_type.fn(ctx, params)
    except TaskFailed as exc:
        raise UsageError(f"report: {exc}") from None
    if output:
        click.echo(result.summary, err=True)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: the one place where errors become a line on stderr and an exit code."""
    try:
        code = cli.main(args=argv, prog_name="toilbox", standalone_mode=False)
    except ToilboxError as exc:
        click.echo(f"toilbox: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # the help text, for `toilbox` alone
        sys.exit(EXIT_UNKNOWN)
    except click.ClickException as exc:
        # One line, like every other error (click would add the usage and a hint).
        where = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else ""
        hint = f" (see {where} --help)" if where else ""
        message = " ".join(exc.format_message().split())
        click.echo(f"toilbox: error: {message}{hint}", err=True)
        sys.exit(EXIT_UNKNOWN)  # usage errors are UNKNOWN (3) in the Nagios convention
    except (click.Abort, KeyboardInterrupt):
        click.echo("toilbox: interrupted", err=True)
        sys.exit(EXIT_UNKNOWN)
    sys.exit(code if isinstance(code, int) else 0)
