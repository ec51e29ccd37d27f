"""Named SQL statements read from a file beside the code ("-- name: X" starts one;
other comment lines are dropped), so each statement reads whole, as it runs."""

from __future__ import annotations

from pathlib import Path


def load(filename: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    name = None
    for line in (Path(__file__).with_name(filename)).read_text().splitlines():
        if line.startswith("-- name: "):
            name = line.removeprefix("-- name: ").strip()
            queries[name] = ""
        elif name is not None and not line.startswith("--"):
            queries[name] += line + "\n"
    return {key: text.strip().rstrip(";") for key, text in queries.items()}
