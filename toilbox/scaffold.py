"""``toilbox new-plugin``: a pip-installable plugin package with one task type, named for it.

The package has a ``pyproject.toml`` with the ``toilbox`` entry point, a module with a
minimal, working task type of the asked kind (the shape every task of that kind has,
ready to be filled in) and its pydantic params model, tests that use toilbox's pytest
fixtures, a README, an example config and a ``.gitignore``.  It installs, lists, runs
and passes its own tests as generated.  The templates are in ``toilbox/plugin_template/``;
the worked examples live in docs/writing-plugins.md.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from toilbox import __version__
from toilbox.errors import UsageError

KINDS = ("check", "cleanup", "report")
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
NAME_MAX = 100
TEMPLATES = Path(__file__).parent / "plugin_template"

_EXAMPLES = {
    "check": ("warning: 4\ncritical: 8", "every 5m"),
    "cleanup": (
        "directory: /tmp\npattern: '*.{name}-tmp'\nolder_than: 7d\nmax_delete: 1000",
        "'@hourly'",
    ),
    # Relative paths are read from the config file's directory.
    "report": ("directory: .\noutput: ./.toilbox-state/{name}-{{date}}.md", "'@daily'"),
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
    if kind not in KINDS:
        raise UsageError(f'kind "{kind}" must be one of {", ".join(KINDS)}')
    names = Names(name, kind)
    _check_name(names)
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
        "description": f"A toilbox {kind}: the task type {names.type_name}.",
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
        ".gitignore": "common/gitignore.jinja",
    }
    made = []
    for relative, template in files.items():
        made.append(_write(target / relative, env.get_template(template).render(values)))
    values["params_doc"] = _params_doc(target / f"src/{names.module}/__init__.py")
    readme = env.get_template("common/README.md.jinja").render(values)
    made.append(_write(target / "README.md", readme))
    return made


def _check_name(names: Names) -> None:
    """Refuse a name that makes a package that cannot work, or that replaces toilbox's own."""
    name = names.name
    if len(name) > NAME_MAX:
        raise UsageError(f"plugin name is {len(name)} characters long: at most {NAME_MAX}")
    if not NAME.match(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise UsageError(
            f'plugin name "{shown}" must be lower-case words joined by dashes, like disk-quota'
        )
    if keyword.iskeyword(names.func):
        raise UsageError(
            f'plugin name "{name}" is a Python keyword, which cannot name its function:'
            f" choose another, like {name}-check"
        )
    standard = _standard_modules()
    if names.module in standard:
        raise UsageError(
            f'plugin name "{name}" would make the package {names.module}, which is toilbox\'s'
            f" own standard plugin: installing it would replace {standard[names.module]}"
        )


def _standard_modules() -> dict[str, str]:
    """The top-level modules of toilbox's own plugins, and what each provides."""
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group="toilbox"):
        if ep.dist is not None and ep.dist.name == "toilbox":
            found[ep.value.split(":")[0].split(".")[0]] = f"the standard {ep.name} plugin"
    return found


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
