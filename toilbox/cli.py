"""The ``toilbox`` command: parse, delegate, print.  The one error boundary is ``main``."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any, NoReturn

import click

from toilbox import __version__
from toilbox.errors import EXIT_UNKNOWN, ToilboxError
from toilbox.result import Status
from toilbox.terminal import printable

MAX_LIMIT = 2**63 - 1  # what a database counts rows in


class _Obj:
    def __init__(self, config: str | None) -> None:
        self.config = config

    def app(self, only: list[str] | None = None) -> Any:
        from toilbox.memory import paused_gc

        with paused_gc():  # most of a command's start-up: imports, the config, plugins
            from toilbox.app import load_app

            app = load_app(self.config, only)
        # Closed when the command ends, however it ends: in fleet mode that ships the
        # host runs this command recorded to the shared store.
        click.get_current_context().call_on_close(app.close)
        return app


def _complete_task(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of TASK: the names in the config the command line would load."""
    try:
        from toilbox import config as config_mod
        from toilbox.app import find_config

        root = ctx.find_root()
        loaded = config_mod.load(find_config(root.params.get("config")))
    except Exception:  # completion must never fail loudly: offer nothing instead
        return []
    return [name for name in loaded.config.tasks if name.startswith(incomplete)]


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
    default=None,
    help="Least level logged on stderr (default: info for the daemon; error for the other "
    "commands, so that a monitoring system reads only the plugin output).",
)
@click.version_option(__version__, prog_name="toilbox")
@click.pass_context
def cli(
    ctx: click.Context, config: str | None, log_format: str | None, log_level: str | None
) -> None:
    """Automate production toil safely: checks, cleanups and reports as plugins.

    NO_COLOR in the environment turns colour off; shell completion: docs/cli.md.
    """
    from toilbox import log

    if os.environ.get("NO_COLOR"):
        ctx.color = False  # https://no-color.org: any non-empty value
    default_level = "info" if ctx.invoked_subcommand == "daemon" else "error"
    log.configure(log_format, log_level or default_level)
    ctx.obj = _Obj(config)


@cli.command()
@click.argument("task", shell_complete=_complete_task)
@click.option("--dry-run", is_flag=True, help="Plan only: the task is told to change nothing.")
@click.option("--force", is_flag=True, help="Go past the task's safety budgets, this once.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_obj
def run(obj: _Obj, task: str, dry_run: bool, force: bool, as_json: bool) -> int:
    """Run TASK once, now, and exit with its Nagios status (0 OK .. 3 UNKNOWN)."""
    from toilbox.memory import paused_gc

    # Only this task's parameters are checked (and those of the tasks its remediation
    # runs): a typo in another task is `validate`'s to report, and does not turn every
    # check a monitoring system runs UNKNOWN.
    app = obj.app(only=[task])
    with paused_gc():
        from toilbox import render
        from toilbox.automation import run as run_and_follow

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
@click.argument("task", shell_complete=_complete_task)
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object.")
@click.pass_obj
def explain(obj: _Obj, task: str, as_json: bool) -> None:
    """Say in plain words why TASK did or did not run, and when it runs next."""
    from toilbox import explain as explain_mod

    if as_json:
        click.echo(json.dumps(explain_mod.explanation(obj.app(), task)))
    else:
        click.echo(printable(explain_mod.explain_task(obj.app(), task)))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as one JSON object.")
@click.pass_obj
def validate(obj: _Obj, as_json: bool) -> None:
    """Check the config file and every task's parameters."""
    from toilbox.errors import ConfigError
    from toilbox.listing import validation

    try:
        app = obj.app()
        verdict = validation(app)
    except ConfigError as exc:
        if as_json:  # the verdict on stdout too; the error line and exit 3 come from main
            click.echo(json.dumps({"ok": False, "errors": str(exc).splitlines()}))
        raise
    if as_json:
        click.echo(json.dumps(verdict))
        return
    for plugin in verdict["broken_plugins"]:
        warning = f"toilbox: warning: plugin {plugin['name']} is broken: {plugin['error']}"
        click.echo(printable(warning), err=True)
    for note in app.loaded.plain_values:
        click.echo(f"toilbox: note: {note}", err=True)
    count = verdict["tasks"]
    click.echo(f"{verdict['config']}: ok ({count} task{'' if count == 1 else 's'})")


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per task.")
@click.pass_obj
def list_tasks(obj: _Obj, as_json: bool) -> None:
    """List tasks: type, schedule, next fire time and last status (no daemon needed)."""
    from toilbox import render
    from toilbox.listing import task_rows

    rows = task_rows(obj.app())
    click.echo(json.dumps(rows) if as_json else render.tasks(printable(rows)))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per plugin.")
@click.pass_obj
def plugins(obj: _Obj, as_json: bool) -> int:
    """List plugins: name, version, source and task types (works without a config).

    Exits 1 when a plugin is broken, so that a deploy can be gated on it.
    """
    from toilbox import render
    from toilbox.listing import plugin_rows

    rows = plugin_rows(obj.config)
    click.echo(json.dumps(rows) if as_json else render.plugins(printable(rows)))
    return 1 if any(p["error"] for p in rows) else 0


@cli.command()
@click.argument("check", shell_complete=_complete_task)
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
    from toilbox.automation import pause_remediation

    click.echo(pause_remediation(obj.app()))


@cli.command()
@click.option("--remediation", is_flag=True, required=True, help="Allow automatic fixes again.")
@click.pass_obj
def resume(obj: _Obj, remediation: bool) -> None:
    """Undo `toilbox pause --remediation`."""
    from toilbox.automation import resume_remediation

    click.echo(resume_remediation(obj.app()))


@cli.command()
@click.argument("task", required=False, shell_complete=_complete_task)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1, max=MAX_LIMIT))
@click.option(
    "--chain",
    "chain_of",
    metavar="RUN_ID",
    help="The whole story of a run: check, fixes, verify, notifications.",
)
@click.option("--host", metavar="HOST_ID", help="Only runs of this host (fleet mode).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of runs.")
@click.pass_obj
def history(
    obj: _Obj, task: str | None, limit: int, chain_of: str | None, host: str | None, as_json: bool
) -> None:
    """Show recorded runs, newest first."""
    from toilbox import render

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
    else:
        click.echo(render.history(printable(records)))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def fleet(obj: _Obj, as_json: bool) -> None:
    """List the daemons sharing this store: host, version, config hash, last seen."""
    from toilbox import render
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
    from toilbox.starter import plugin_next_steps

    made = generate(name, kind, Path(directory) if directory else None)
    root = made[0].parents[2]
    click.echo(f"wrote {len(made)} files to {root}:")
    click.echo("".join(f"  {path.relative_to(root)}\n" for path in made), nl=False)
    click.echo(f"next: {plugin_next_steps(root)}")


@cli.command()
@click.option(
    "--path",
    metavar="FILE",
    help="Where to write the config (default: $XDG_CONFIG_HOME/toilbox/toilbox.yaml, "
    "or /etc/toilbox/toilbox.yaml with --systemd).",
)
@click.option(
    "--systemd",
    is_flag=True,
    help="Set up a system service: also write a unit whose ExecStart is this toilbox.",
)
@click.option(
    "--unit",
    metavar="FILE",
    help="Where --systemd writes the unit (default: /etc/systemd/system/toilbox.service).",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init(path: str | None, systemd: bool, unit: str | None, force: bool) -> None:
    """Write a commented starter config (and with --systemd a unit) to start from."""
    from pathlib import Path

    from toilbox import starter

    if unit and not systemd:
        raise click.UsageError("--unit goes with --systemd")
    written = starter.init(
        Path(path) if path else None, systemd=systemd, unit=Path(unit) if unit else None,
        force=force,
    )
    click.echo(starter.next_steps(written, systemd=systemd))


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
    from toilbox.report import report_now

    summary = report_now(obj.app(), window, fmt, output, host)
    if output:
        click.echo(summary, err=True)


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
