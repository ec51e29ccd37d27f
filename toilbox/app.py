"""Wiring: find the config, load plugins, resolve tasks, open the store on demand."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from toilbox import config as config_mod
from toilbox import plugins
from toilbox.config import Config, LoadedConfig, Task
from toilbox.errors import ConfigError, UsageError
from toilbox.plugins import PluginHost
from toilbox.store import Store, open_store


def config_candidates() -> list[Path]:
    """Where a config is looked for, after ``-c`` and ``$TOILBOX_CONFIG``."""
    return [
        Path("toilbox.yaml"),
        Path.home() / ".config" / "toilbox" / "toilbox.yaml",
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

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UsageError(f'unknown task "{name}" in {self.loaded.path} (tasks: {known})')
        return self.tasks[name]

    def store(self) -> Store:
        """The state store, opened on first use; runs orphaned by a dead process are closed."""
        if self._store is None:
            from toilbox.runner import recover_abandoned

            self._store = open_store(self.state_dir)
            recover_abandoned(self._store)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def load_app(config_option: str | None) -> App:
    """Load and check everything; the config's secrets are redacted from here on."""
    from toilbox.log import add_secrets

    loaded = config_mod.load(find_config(config_option))
    add_secrets(loaded.secrets)
    host = plugins.load(loaded.config.plugin_dirs)
    return App(loaded, host, config_mod.resolve_tasks(loaded, host))
