"""Secrets from the config never reach output or storage, in keys as in values; values too
short to be secrets are plain config, left intact, and `validate` says so.

Real `toilbox` processes, a real plugin and a real Nagios-style command; the state
directory's files are searched byte by byte.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

SECRET = "s3cr3t-t0ken-value"

KEYED_PLUGIN = """
    from pydantic import BaseModel
    import toilbox

    class Params(BaseModel):
        key: str

    def keyed(ctx, params):
        ctx.log.info("keyed.acting", **{params.key: "as a log key"})
        return toilbox.Result(
            toilbox.Status.OK,
            "keyed",
            metrics={f"{params.key}_bytes": toilbox.Metric(1, unit="B")},
            data={params.key: {"inner " + params.key: [params.key]}},
        )

    @toilbox.hookimpl
    def register_task_types(register):
        register("check.keyed", keyed, params=Params)
"""


def _state_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())


def test_a_secret_in_a_key_is_redacted_everywhere(toilbox, write_config, plugin_dir, tmp_path):
    (plugin_dir / "keyed.py").write_text(textwrap.dedent(KEYED_PLUGIN))
    config = write_config("""
        tasks:
          keyed: {uses: check.keyed, with: {key: "${TB_SECRET}"}}
          perfdata:
            uses: check.command
            with: {command: [sh, -c, "echo \\"OK - fine | 'disk ${TB_SECRET}'=1;2;3\\""]}
    """)
    env = {"TB_SECRET": SECRET}
    outputs = []
    for task in ("keyed", "perfdata"):
        as_json = toilbox("-c", str(config), "--log-level", "info", "run", task, "--json",
                          env=env)
        assert as_json.code == 0, as_json.err
        outputs += [as_json.out, as_json.err]
        plain = toilbox("-c", str(config), "run", task, env=env)
        outputs += [plain.out, plain.err]
    keyed, perfdata = (json.loads(o) for o in (outputs[0], outputs[4]))
    assert keyed["metrics"] == {"***_bytes": {"value": 1.0, "unit": "B", "warn": None,
                                              "crit": None, "min": None, "max": None}}
    assert keyed["data"] == {"***": {"inner ***": ["***"]}}
    assert list(perfdata["metrics"]) == ["disk ***"]
    assert '"***": "as a log key"' in outputs[1], "the plugin's own log line"
    history = toilbox("-c", str(config), "history", "--json", env=env)
    table = toilbox("-c", str(config), "history", env=env)
    explained = toilbox("-c", str(config), "explain", "keyed", env=env)
    outputs += [history.out, history.err, table.out, explained.out]
    assert {"***_bytes"} == set(json.loads(history.out)[-1]["metrics"])
    for text in outputs:
        assert SECRET not in text
    assert SECRET.encode() not in _state_bytes(tmp_path / "state")


def test_a_short_value_is_plain_config_and_validate_says_so(toilbox, write_config, tmp_path):
    config = write_config("""
        tasks:
          a:
            uses: check.faults
            with: {summary: "db at 10.0.0.2:${TB_PORT}, code ${TB_CODE}, token ${TB_TOKEN}"}
    """)
    env = {"TB_PORT": "5432", "TB_CODE": "2", "TB_TOKEN": "long-enough-token"}
    validated = toilbox("-c", str(config), "validate", env=env)
    assert validated.code == 0
    notes = validated.err.splitlines()
    assert notes == [
        f"toilbox: note: {config}:6: tasks.a.with.summary: ${{{name}}} is shorter than 8"
        " characters: it is treated as plain config, not as a secret, and is not redacted"
        for name in ("TB_PORT", "TB_CODE")
    ]
    assert "long-enough-token" not in validated.err and "5432" not in validated.err
    ran = toilbox("-c", str(config), "--log-level", "info", "run", "a", "--json", env=env)
    assert json.loads(ran.out)["summary"] == "db at 10.0.0.2:5432, code 2, token ***"
    history = json.loads(toilbox("-c", str(config), "history", "--json", env=env).out)[0]
    for key in ("started_at", "finished_at", "run_id"):
        assert "*" not in history[key], "a short value never stars a timestamp or an id"
    assert "long-enough-token" not in ran.err
    stamps = [json.loads(line)["timestamp"] for line in ran.err.splitlines()]
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", s) for s in stamps), stamps
