"""The config's JSON Schema, for editors: the file's own keys plus each task type's ``with``."""

from __future__ import annotations

from typing import Any

from toilbox.config import Config
from toilbox.plugins import PluginHost


def config_schema(host: PluginHost) -> dict[str, Any]:
    schema = Config.model_json_schema(by_alias=True)
    schema["title"] = "toilbox config"
    task_def = schema["$defs"]["TaskConfig"]
    task_def["properties"]["uses"]["enum"] = sorted(host.task_types)
    branches = []
    for name, task_type in sorted(host.task_types.items()):
        params = task_type.params.model_json_schema(ref_template="#/$defs/{model}")
        schema["$defs"].update(params.pop("$defs", {}))
        branches.append(
            {
                "if": {"properties": {"uses": {"const": name}}, "required": ["uses"]},
                "then": {"properties": {"with": {**params, "description": task_type.description}}},
            }
        )
    if branches:
        task_def["allOf"] = branches
    return schema
