"""A notification destination carries its token in its URL: it is stored and shown only
as scheme and host (issue 11, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

TOKEN = "XXXXSECRETXXXX9"


def test_destinations_are_kept_and_shown_without_their_secrets(toilbox, write_config, tmp_path):
    destinations = [
        f"json://127.0.0.1:9/hook?key={TOKEN}",
        f"slack://T000/B000/{TOKEN}",
        f"mailto://ops:{TOKEN}@mail.example.org",
    ]
    config = write_config(f"""
        notify: {json.dumps(destinations)}
        tasks:
          web: {{uses: check.faults, with: {{status: critical}}}}
    """)
    run = toilbox("-c", str(config), "run", "web", "--json")
    assert run.code == 2
    run_id = json.loads(run.out)["run_id"]
    chain = toilbox("-c", str(config), "history", "--chain", run_id)
    as_json = toilbox("-c", str(config), "history", "--chain", run_id, "--json")
    sent = next(s for s in json.loads(as_json.out) if s["kind"] == "notification")
    assert sent["sent_to"] == ["json://127.0.0.1", "slack://T000", "mailto://mail.example.org"]
    assert "json://127.0.0.1, slack://T000, mailto://mail.example.org" in chain.out
    for text in (run.out, run.err, chain.out, chain.err, as_json.out):
        assert TOKEN not in text
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in Path(path).read_bytes(), path
