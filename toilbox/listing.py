"""What the read-only commands show: tasks (``list``), plugins (``plugins``) and a
config's verdict (``validate``), as JSON-ready rows that the CLI prints or renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toilbox.app import App, find_config
from toilbox.errors import ToilboxError


def task_rows(app: App) -> list[dict[str, Any]]:
    """Each task: type, schedule, next fire time (from the config alone) and last run."""
    from toilbox.explain import next_fire

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
    return rows


def plugin_rows(config_option: str | None) -> list[dict[str, Any]]:
    """Every plugin, loaded or broken; with a config, its ``plugin_dirs`` count too (its
    tasks need not be valid to list plugins)."""
    from toilbox import config as config_mod
    from toilbox import plugins

    dirs: list[Path] = []
    if _has_config(config_option):
        dirs = config_mod.load(find_config(config_option)).config.plugin_dirs
    host = plugins.load(dirs)
    host.load_all()  # the whole list: every declared type's module, its description
    return [info.to_json() for info in host.plugins]


def validation(app: App) -> dict[str, Any]:
    """A config that loaded: where it is, its tasks, and the plugins that did not load."""
    app.plugins.load_all()  # a plugin broken in a type no task uses yet is reported too
    return {
        "config": str(app.loaded.path),
        "ok": True,
        "tasks": len(app.tasks),
        "task_names": list(app.tasks),
        "broken_plugins": [
            {"name": p.name, "error": p.error} for p in app.plugins.plugins if p.error
        ],
    }


def _has_config(config_option: str | None) -> bool:
    if config_option:
        return True
    try:
        find_config(None)
    except ToilboxError:
        return False
    return True
