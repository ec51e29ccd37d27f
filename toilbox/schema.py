"""The config's JSON Schema, for editors: the file's own keys plus each task type's ``with``.

It uses only standard keywords of draft-07 (which every editor's YAML support reads) and
draft 2020-12, so any validator accepts it; every key a config may hold has a description.
"""

from __future__ import annotations

from typing import Any

from toilbox.config import Config
from toilbox.plugins import PluginHost

DRAFT = "http://json-schema.org/draft-07/schema#"
# Constraints pydantic copies verbatim into a custom type's schema (WithJsonSchema), as
# its own names: no validator knows them, so they are given their standard names.
_PYDANTIC_KEYWORDS = {
    "ge": "minimum",
    "gt": "exclusiveMinimum",
    "le": "maximum",
    "lt": "exclusiveMaximum",
}


def config_schema(host: PluginHost) -> dict[str, Any]:
    schema = Config.model_json_schema(by_alias=True)
    schema = {"$schema": DRAFT, **schema, "title": "toilbox config"}
    schema["description"] = (
        "A toilbox config: global settings, defaults every task inherits, and the tasks."
    )
    task_def = schema["$defs"]["TaskConfig"]
    task_def["properties"]["uses"]["enum"] = sorted(host.task_types)
    branches = []
    for name, task_type in sorted(host.task_types.items()):
        params = task_type.params.model_json_schema(ref_template="#/$defs/{model}")
        schema["$defs"].update(params.pop("$defs", {}))
        params["description"] = task_type.description or f"the parameters of {name}"
        branches.append(
            {
                "if": {"properties": {"uses": {"const": name}}, "required": ["uses"]},
                "then": {"properties": {"with": {**params, "description": task_type.description}}},
            }
        )
    if branches:
        task_def["allOf"] = branches
    standard: dict[str, Any] = _standard(schema)
    return standard


def _standard(node: Any) -> Any:
    if isinstance(node, list):
        return [_standard(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):  # names of keys and definitions, not keywords
            out[key] = {name: _standard(sub) for name, sub in value.items()}
        else:
            out[_PYDANTIC_KEYWORDS.get(key, key)] = _standard(value)
    return out
