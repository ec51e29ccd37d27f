"""docs/writing-plugins.md is true: every hook is documented with its real signature, and
every code block runs, in order, in an empty directory, as a reader would run it."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from toilbox import hookspecs

DOC = Path(__file__).parents[1] / "docs" / "writing-plugins.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
HOOK_HEADING = re.compile(r"^### `(\w+)(\(.*\).*)`$", re.MULTILINE)
LANGUAGES = {"python", "yaml", "toml", "console"}
VENV_BIN = Path(sys.executable).parent


@dataclass
class Block:
    language: str
    text: str
    line: int

    @property
    def file(self) -> str | None:
        first = self.text.splitlines()[0] if self.text else ""
        return first.removeprefix("# file: ").strip() if first.startswith("# file: ") else None


def blocks() -> list[Block]:
    text = DOC.read_text()
    return [
        Block(m[1], m[2], text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)
    ]


def hookspec_signatures() -> dict[str, str]:
    specs = {}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if getattr(fn, "toilbox_spec", None) is not None:
            specs[name] = str(inspect.signature(fn)).replace("'", "")
    return specs


def test_every_hookspec_is_documented_with_its_signature():
    documented = {m[1]: m[2] for m in HOOK_HEADING.finditer(DOC.read_text())}
    specs = hookspec_signatures()
    assert set(specs) >= {"register_task_types", "run_finished", "register_commands"}
    assert set(documented) == set(specs), "every hook documented, and no other"
    for name, signature in specs.items():
        assert documented[name] == signature, f"{name}: the doc says {documented[name]}"


def test_every_block_has_a_known_language():
    found = blocks()
    assert len(found) >= 10
    for block in found:
        assert block.language in LANGUAGES, f"line {block.line}: ```{block.language}"
        if block.language in ("python", "yaml", "toml"):
            assert block.file, f"line {block.line}: a {block.language} block names its # file:"


def test_the_first_check_is_complete_in_under_30_lines():
    first = next(b for b in blocks() if b.language == "python")
    assert first.file == "plugins.d/backup_age.py"
    assert len(first.text.splitlines()) - 1 < 30  # the "# file:" line is not code


def test_the_files_parse_and_the_config_validates(tmp_path, cli):
    for block in blocks():
        if block.file is None:
            continue
        target = tmp_path / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text)
        if block.language == "python":
            compile(block.text, block.file, "exec")
        elif block.language == "yaml":
            yaml.safe_load(block.text)
        elif block.language == "toml":
            project = tomllib.loads(block.text)
            assert "toilbox" in project["project"]["entry-points"]
    assert cli("-c", str(tmp_path / "toilbox.yaml"), "validate").code == 0


def expected_pattern(expected: str) -> re.Pattern[str]:
    """Shown output, where ``...`` stands for anything (within a line, or whole lines)."""
    parts = [re.escape(part) for part in expected.strip().split("...")]
    return re.compile(".*?".join(parts), re.DOTALL)


def run_console(block: Block, cwd: Path, env: dict[str, str]) -> None:
    commands: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            commands[-1][1].append(line)
    for command, shown in commands:
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        where = f"docs line {block.line}: $ {command}"
        assert done.returncode == 0, f"{where}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
        expected = "\n".join(shown).strip()
        if expected:
            assert expected_pattern(expected).fullmatch(done.stdout.strip()), (
                f"{where}\nexpected:\n{expected}\ngot:\n{done.stdout}"
            )


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path):
    """Files are written and commands run in document order, in one empty directory."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "XDG_STATE_HOME": str(tmp_path / "xdg")}
    for name in ("TOILBOX_CONFIG", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    sandbox = tmp_path / "reader"
    sandbox.mkdir()
    try:
        for block in blocks():
            if block.file is not None:
                target = sandbox / block.file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text)
            elif block.language == "console":
                run_console(block, sandbox, env)
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "acme-backup-age"],
                       capture_output=True, check=False)


def test_the_plugin_reference_is_generated_from_the_code():
    from tests import reference_doc

    assert reference_doc.DOC.read_text() == reference_doc.render(), (
        "docs/plugin-reference.md is out of date: run python -m tests.reference_doc"
    )


def test_the_plugin_reference_covers_every_fixture_and_public_name():
    import toilbox
    from tests import reference_doc
    from toilbox import testing

    fixtures = {name for name in vars(testing) if name.startswith("toilbox_")}
    assert fixtures == set(reference_doc.FIXTURES)
    text = reference_doc.DOC.read_text()
    for name in toilbox.__all__:
        assert f"`toilbox.{name}" in text, name
    from typing import Annotated, get_origin

    from toilbox import units

    public = {n: v for n, v in vars(units).items() if not n.startswith("_")}
    assert {n for n, v in public.items() if get_origin(v) is Annotated} == set(reference_doc.UNITS)
    functions = {n for n, v in public.items()
                 if inspect.isfunction(v) and v.__module__ == units.__name__}
    assert functions == set(reference_doc.UNIT_FUNCTIONS)
