"""``toilbox new-plugin``: a pip-installable plugin package with one working task type.

The package has a ``pyproject.toml`` with the ``toilbox`` entry point, a module with a
documented task type of the asked kind and its pydantic params model, tests that use
toilbox's pytest fixtures, a README and an example config.  It installs, lists, runs and
passes its own tests as generated.  The templates are in ``toilbox/plugin_template/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from toilbox import __version__
from toilbox.errors import UsageError

KINDS = ("check", "cleanup", "report")
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
TEMPLATES = Path(__file__).parent / "plugin_template"

_DESCRIPTIONS = {
    "check": "A toilbox check: a file was modified recently.",
    "cleanup": "A toilbox cleanup: delete old files matching a pattern in a directory.",
    "report": "A toilbox report: the largest files under a directory, as markdown.",
}
_EXAMPLES = {
    "check": (
        "path: /etc/hostname  # the file to watch\nwarning: 400d\ncritical: 800d",
        "every 5m",
    ),
    "cleanup": (
        "directory: /tmp\npattern: '*.{name}-tmp'\nolder_than: 7d\nmax_delete: 1000",
        "'@hourly'",
    ),
    "report": ("directory: /usr/share/doc\ntop: 10\noutput: ./{name}-{{date}}.md", "'@daily'"),
}


@dataclass(frozen=True)
class Names:
    name: str  # the plugin's name: lower-case words joined by dashes
    kind: str

    @property
    def type_name(self) -> str:
        return f"{self.kind}.{self.name}"

    @property
    def module(self) -> str:
        return "toilbox_" + self.name.replace("-", "_")

    @property
    def dist(self) -> str:
        return "toilbox-" + self.name

    @property
    def func(self) -> str:
        return self.name.replace("-", "_")


def new_plugin(name: str, kind: str, directory: Path | None = None) -> list[Path]:
    """Write the package into ``directory`` (default ``./toilbox-NAME``); the files made."""
    if not NAME.match(name):
        raise UsageError(
            f'plugin name "{name}" must be lower-case words joined by dashes, like disk-quota'
        )
    if kind not in KINDS:
        raise UsageError(f'kind "{kind}" must be one of {", ".join(KINDS)}')
    names = Names(name, kind)
    target = directory if directory is not None else Path(names.dist)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists and is not empty: give another --dir")

    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 -- Python, TOML, YAML and markdown, never HTML
    )
    example_with, schedule = _EXAMPLES[kind]
    values = {
        "name": name,
        "kind": kind,
        "type_name": names.type_name,
        "module": names.module,
        "dist": names.dist,
        "func": names.func,
        "description": _DESCRIPTIONS[kind],
        "toilbox_version": __version__,
        "example_with": _indent(example_with.format(name=name), 6),
        "schedule": schedule,
        "params_doc": "",
    }
    files = {
        f"src/{names.module}/__init__.py": f"{kind}/__init__.py.jinja",
        f"tests/test_{names.func}.py": f"{kind}/test.py.jinja",
        "pyproject.toml": "common/pyproject.toml.jinja",
        "example.yaml": "common/example.yaml.jinja",
    }
    made = []
    for relative, template in files.items():
        made.append(_write(target / relative, env.get_template(template).render(values)))
    values["params_doc"] = _params_doc(target / f"src/{names.module}/__init__.py")
    readme = env.get_template("common/README.md.jinja").render(values)
    made.append(_write(target / "README.md", readme))
    return made


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def _params_doc(module: Path) -> str:
    """The params table for the README, read from the generated model's Field()s."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    field = re.compile(r'^    (\w+): [^=]+= Field\((?:(.*), )?description="(.*)"\)$')
    for line in module.read_text().splitlines():
        match = field.match(line)
        if match:
            default = f"`{match[2].split(', ')[0]}`" if match[2] else "required"
            rows.append(f"| `{match[1]}` | {default} | {match[3]} |")
    return "\n".join(rows)
