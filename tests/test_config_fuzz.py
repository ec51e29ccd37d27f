"""A bounded fuzz test of the config loader: mutations of the shipped configs never make it
crash, hang or run away; they load (exit 0) or fail with a ToilboxError (exit 3).

Deterministic (derandomized, no example database) and bounded (a fixed number of
examples, each under the 2 s the hardening issue allows), so it runs in CI like any
other test.  Mutations are YAML's sharp edges (anchors, aliases, tags, deep nesting,
huge numbers), toilbox's own (``${...}`` secrets, durations, schedules, listen
addresses) and plain byte damage (deletions, duplicated lines, NULs, tabs).
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toilbox import config, plugins
from toilbox.errors import ToilboxError
from toilbox.resolve import resolve_tasks

SHIPPED = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))
TEXTS = [path.read_text() for path in SHIPPED]

TOKENS = [
    # YAML structure and its traps
    "&a ", "*a", "&a [*a]", "<<: *a", "[", "]", "{", "}", ": ", "- ", ", ", "? ", "|", ">",
    "'", '"', "#", "\t", "\n", "\n  ", "\n    - ", "!!python/object:os.system ", "!!binary ",
    "!!set ", "!!omap ", "!custom ", "---\n", "...\n", "%YAML 1.1\n", "\ufeff", "\x85",
    "[" * 70, "{a: " * 40, "~", "null", "yes", "off", "=", "\x00", "\x7f", "\udcff"[:0],
    # numbers, dates, durations, sizes
    ".inf", "-.inf", ".nan", "1.0e+999", "9" * 25, "9" * 5000, "0x" + "f" * 40, "0o777",
    "1:30:00", "0000-01-01", "2001-02-30", "9999-12-31T23:59:59Z", "-1", "0", "1e3",
    "100000000000d", "36500d", "250ms", "1w", "500MB", "99999999999999999999TiB", "101%",
    # toilbox's own strings
    "${", "}", "${TB_FUZZ_SET}", "${TB_FUZZ_UNSET}", "${file:/dev/zero}", "${file:/}",
    "${file:/proc/self/environ}", "$${", "every 0s", "every 1000000000d", "* * * * *",
    "61 * * * *", "@yearly", "@never", "check.nope", "report.summary", "cleanup.files",
    "127.0.0.1:99999", "localhost:1", "[::1]:1", "127.evil.com:1", "0.0.0.0:9464",
    "\u202e", "\x1b]0;title\x07", "a" * 300,
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        operation = draw(st.sampled_from(["insert", "replace", "delete", "duplicate line"]))
        if operation == "insert":
            text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]
        elif operation == "replace":
            end = min(len(text), at + draw(st.integers(1, 20)))
            text = text[:at] + draw(st.sampled_from(TOKENS)) + text[end:]
        elif operation == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        else:
            lines = text.splitlines(keepends=True)
            if lines:
                line = draw(st.integers(0, len(lines) - 1))
                lines.insert(line, lines[line])
                text = "".join(lines)
    return text


@pytest.fixture(scope="module")
def workdir() -> Path:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


@pytest.fixture(scope="module", autouse=True)
def _secrets_the_examples_use() -> None:
    names = {n for text in TEXTS for n in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", text)}
    saved = {name: os.environ.get(name) for name in [*names, "TB_FUZZ_SET", "TB_FUZZ_UNSET"]}
    for name in names:
        os.environ[name] = f"json://127.0.0.1:9/{name.lower()}"
    os.environ["TB_FUZZ_SET"] = "a-secret-value"
    os.environ.pop("TB_FUZZ_UNSET", None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_the_shipped_configs_load_unmutated(workdir):
    host = plugins.load()
    for path in SHIPPED:
        resolve_tasks(config.load(path), host)


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=mutated())
def test_a_mutated_config_loads_or_is_one_clear_error(workdir, text):
    path = workdir / "toilbox.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        loaded = config.load(path)
        # The standard plugins only: a mutation must not point plugin_dirs at real code.
        resolve_tasks(loaded, plugins.load())
    except ToilboxError as exc:
        message = str(exc)
        assert message.startswith(str(path)) or message.startswith("refusing"), message
        assert "Traceback" not in message
