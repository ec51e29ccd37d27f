"""Wiring: find the config, load plugins, resolve tasks, open the store on demand."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from toilbox import config as config_mod
from toilbox import plugins
from toilbox.config import Config, LoadedConfig, Task
from toilbox.errors import ConfigError, UsageError
from toilbox.memory import paused_gc
from toilbox.plugins import PluginHost
from toilbox.resolve import resolve_tasks
from toilbox.store import ReadOnlyHistory, Store, open_history, open_store, recover_abandoned


def config_candidates() -> list[Path]:
    """Where a config is looked for, after ``-c`` and ``$TOILBOX_CONFIG``."""
    from toilbox.starter import user_config_path  # not needed when -c names the config

    return [
        Path("toilbox.yaml"),
        user_config_path(),
        Path("/etc/toilbox/toilbox.yaml"),
    ]


def find_config(option: str | None) -> Path:
    if option:
        return Path(option)
    from_env = os.environ.get("TOILBOX_CONFIG")
    if from_env:
        return Path(from_env)
    for candidate in config_candidates():
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in config_candidates())
    raise ConfigError(
        f"no config file found (give -c FILE or set TOILBOX_CONFIG; looked in {looked})"
    )


@dataclass
class App:
    """A loaded config with its plugins and tasks: what every command works on."""

    loaded: LoadedConfig
    plugins: PluginHost
    tasks: dict[str, Task]
    _store: Store | None = field(default=None, repr=False)
    pooled: bool = False  # the daemon's store: a pool of connections, shared by threads

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    @property
    def fleet(self) -> bool:
        """Fleet mode: the store is the fleet's PostgreSQL."""
        return self.config.store is not None

    def scope_of(self, task: Task) -> str:
        """Without a shared store this host is the whole fleet: fleet tasks run here."""
        return task.scope if self.fleet else "host"

    @cached_property
    def host_id(self) -> str:
        """This daemon's name in the fleet: $TOILBOX_HOST_ID, else host_id, else the
        hostname."""
        chosen = os.environ.get("TOILBOX_HOST_ID") or self.config.host_id
        if chosen is None:
            return socket.gethostname()
        if not config_mod.HOST_ID.match(chosen):
            raise ConfigError(
                f"host id {chosen!r} (from TOILBOX_HOST_ID or host_id) may use only letters,"
                " digits, '.', '_', ':', '-'"
            )
        return chosen

    @cached_property
    def config_hash(self) -> str:
        """What every host of a fleet should agree on: the tasks and policies, not the
        per-host keys (host_id, state_dir, http)."""
        import hashlib  # fleet mode's: not every command's start-up

        from toilbox.log import redact

        shared = self.config.model_dump(
            mode="json", by_alias=True, exclude={"host_id", "state_dir", "http", "plugin_dirs"}
        )
        text = json.dumps(redact(shared), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            known = ", ".join(sorted(self.config.tasks)) or "none"  # not only those resolved
            raise UsageError(f'unknown task "{name}" in {self.loaded.path} (tasks: {known})')
        return self.tasks[name]

    def store(self) -> Store:
        """The state store, opened on first use; runs orphaned by a dead process are closed."""
        if self._store is None:
            url = self.config.store.url if self.config.store else None
            self._store = open_store(self.state_dir, url, self.host_id, self.pooled)
            recover_abandoned(self._store, self.host_id)
        return self._store

    def open_history(self) -> ReadOnlyHistory:
        """A reader of the run history of its own (the caller closes it)."""
        return open_history(self.state_dir, self.config.store.url if self.config.store else None)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def load_app(config_option: str | None, only: Iterable[str] | None = None) -> App:
    """Load and check the config; the config's secrets are redacted from here on.

    With ``only``, the app holds those tasks (and those their remediation runs): what a
    one-shot run needs, without importing every other task's plugin module.
    """
    from toilbox.log import add_secrets

    with paused_gc():
        loaded = config_mod.load(find_config(config_option))
        add_secrets(loaded.secrets)
        host = plugins.load(loaded.config.plugin_dirs)
        return App(loaded, host, resolve_tasks(loaded, host, only))

