"""The plugin contract: what every task type owes its users, checked in one call (the
``toilbox_contract`` fixture)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticUndefined

from toilbox.harness import Harness, TaskRun, plain_params, snapshot


def check_contract(
    harness: Harness,
    tmp_path: Path,
    type_name: str,
    params: Mapping[str, Any] | None = None,
    *,
    failing: Mapping[str, Any] | None = None,
    plugin_dirs: Sequence[str | os.PathLike[str]] = (),
) -> TaskRun:
    """Check what every task type owes its users; raise AssertionError listing what fails.

    - it is registered with a ``<kind>.<name>`` name, a description and a params model
      that forbids unknown keys (so a typo in a config fails at load, not at 3 am) and has
      a JSON Schema (editors and ``toilbox schema`` use it), and whose defaults are what
      the config would give (a ``"26h"`` default is not left a string);
    - ``params`` validate, and a dry run with them returns a Result (not an error) whose
      data and metrics survive JSON, and changes nothing under the test's tmp_path;
    - with ``failing`` params, the task raises ``toilbox.TaskFailed``: it fails once,
      and is not retried (a retry policy of 3 attempts is set to prove it).
    Returns the dry run.
    """
    from toilbox import plugins

    problems: list[str] = []
    host = plugins.load(Path(d).absolute() for d in plugin_dirs)
    task_type = host.task_types.get(type_name)
    if task_type is None:
        raise AssertionError(host.explain_unknown(type_name))
    if not task_type.description:
        problems.append("no description: give the task function a docstring")
    if task_type.params.model_config.get("extra") != "forbid":
        problems.append(
            'the params model accepts unknown keys: set model_config = ConfigDict(extra="forbid")'
        )
    try:
        json.dumps(task_type.params.model_json_schema())
    except Exception as exc:
        problems.append(f"the params model has no JSON Schema: {exc}")
    problems.extend(unparsed_defaults(task_type.params))
    task_type.params.model_validate(dict(plain_params(params or {})))

    before = snapshot(tmp_path, exclude=[harness.root, *harness.configs])
    ran = harness.run(type_name, params, dry_run=True, plugin_dirs=plugin_dirs)
    after = snapshot(tmp_path, exclude=[harness.root, *harness.configs])
    if ran.failed:
        problems.append(f"a dry run did not return a Result: {ran.error}")
    else:
        json.loads(json.dumps({"data": ran.data, "metrics": ran.record.metrics}))
    if before != after:
        changed = sorted(set(before.items()) ^ set(after.items()))
        paths = sorted({path for path, _ in changed})
        problems.append(f"a dry run changed files: {', '.join(paths[:10])}")

    if failing is not None:
        failed = harness.run(type_name, failing, attempts=3, plugin_dirs=plugin_dirs)
        kind = (failed.error or {}).get("type")
        if kind != "failed":
            problems.append(
                f"with the failing params the task ended {failed.status.label}"
                f" ({kind or 'no error'}), not with toilbox.TaskFailed: raise TaskFailed"
                " when retrying cannot help"
            )
        elif failed.attempts != 1:
            problems.append(f"TaskFailed was retried: {failed.attempts} attempts")
    if problems:
        raise AssertionError(f"{type_name} breaks the plugin contract:\n- " + "\n- ".join(problems))
    return ran


def unparsed_defaults(model: type[BaseModel]) -> list[str]:
    """Defaults that pydantic leaves as written, unlike the same value from a config.

    ``max_age: ExplicitDuration = "26h"`` keeps the string "26h" (pydantic does not
    validate defaults), and the task then compares a number with a string.
    """
    model.model_rebuild()
    problems = []
    for name, info in model.model_fields.items():
        default = info.default
        if default is PydanticUndefined or default is None or info.validate_default:
            continue
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        try:
            parsed = TypeAdapter(annotation).validate_python(default)
        except Exception:  # noqa: S112 -- e.g. seconds for an ExplicitDuration: left as given
            continue
        if parsed != default:
            problems.append(
                f"the default of {name} is {default!r}, but from a config it would be"
                f" {parsed!r}: write Field({default!r}, validate_default=True), or {parsed!r}"
            )
    return problems
