"""`toilbox schema` is a JSON Schema that real validators and editors accept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).parents[1]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))
VALIDATORS = [jsonschema.Draft7Validator, jsonschema.Draft202012Validator]
# Keywords whose values are data (or names), not subschemas.
_DATA = {"default", "examples", "enum", "const", "required"}
_ANNOTATIONS = {"$schema", "$defs", "$ref", "title", "description", "default", "examples",
                "format", "then", "else", "readOnly", "writeOnly", "deprecated", "$comment"}


@pytest.fixture(scope="module")
def schema():
    from toilbox import plugins
    from toilbox.schema import config_schema

    return config_schema(plugins.load())


def keywords(node, found: set[str]) -> set[str]:
    if isinstance(node, list):
        for item in node:
            keywords(item, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    keywords(sub, found)
                continue
            found.add(key)
            if key not in _DATA:
                keywords(value, found)
    return found


def keys_without_description(node, path: str = "") -> list[str]:
    missing = []
    if isinstance(node, list):
        for item in node:
            missing += keys_without_description(item, path)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and not path.endswith("/if"):  # `if` matches, declares none
                missing += [f"{path}.{name}" for name, sub in value.items()
                            if "description" not in sub]
            if key not in _DATA:
                missing += keys_without_description(value, f"{path}/{key}")
    return missing


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda v: v.__name__)
def test_every_shipped_config_is_valid_under_the_schema(schema, validator, monkeypatch):
    validator.check_schema(schema)
    assert len(SHIPPED) >= 7
    for path in SHIPPED:
        errors = [f"{list(e.absolute_path)}: {e.message}"
                  for e in validator(schema).iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], path


@pytest.mark.parametrize("validator", VALIDATORS, ids=lambda v: v.__name__)
@pytest.mark.parametrize(("bad", "where"), [
    ({"tasks": {"a": {"uses": "check.disk", "with": {"path": "/", "warnign": "80%"}}}}, "warnign"),
    ({"tasks": {"a": {"uses": "check.nope"}}}, "check.nope"),
    ({"tasks": {"a": {"uses": "cleanup.files", "with": {"roots": ["/x"], "max_delete_bytes": "5 parsecs"}}}}, "5 parsecs"),
    ({"tasks": {"a": {"uses": "check.disk", "jitter": -1}}}, "-1"),
    ({"stat_dir": "/tmp"}, "stat_dir"),
])
def test_mistakes_are_rejected(schema, validator, bad, where):
    errors = list(validator(schema).iter_errors(bad))
    assert errors, f"{bad} passed"
    assert any(where in str(e.message) or where in str(list(e.absolute_path)) for e in errors)


def test_only_standard_keywords(schema):
    known = set(jsonschema.Draft7Validator.VALIDATORS) | _ANNOTATIONS
    assert keywords(schema, set()) - known == set()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jitter = schema["$defs"]["TaskConfig"]["properties"]["jitter"]["anyOf"][0]
    assert jitter["minimum"] == 0, "pydantic's ge, under its standard name"


def test_every_key_has_a_description(schema):
    assert keys_without_description(schema) == []
    assert schema["description"]


def test_sizes_are_case_insensitive_as_in_the_loader(schema):
    from toilbox.units import parse_size

    size_patterns = {sub["pattern"] for sub in _walk(schema) if isinstance(sub, dict)
                     and sub.get("type") == ["string", "integer"] and "pattern" in sub}
    assert len(size_patterns) == 1
    size = re.compile(size_patterns.pop())
    for text in ("5GiB", "5gib", "500MB", "10k", "1.5 TB", "7b", "42"):
        assert size.match(text), text
        parse_size(text)
    assert not size.match("5 parsecs")


def _walk(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_the_cli_prints_it_and_the_docs_show_the_editor_line(cli):
    printed = json.loads(cli("schema").out)
    assert printed["title"] == "toilbox config"
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert "# yaml-language-server: $schema=" in doc
