"""``${NAME}`` and ``${file:/path}`` references in config values: resolved when the
config loads, each value remembered so that logs can redact it.  ``$${`` is a literal
``${``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from toilbox import files, yamlpos
from toilbox.log import MIN_SECRET_LENGTH
from toilbox.yamlpos import located

_SECRET = re.compile(r"\$(\$?)\{([^}]*)\}")
MAX_SECRET_FILE_BYTES = 64 * 1024  # keys and certificates fit; /dev/zero does not


def resolve(
    value: Any,
    loc: yamlpos.Loc,
    secrets: dict[str, str],
    problems: list[str],
    path: Path,
    positions: dict[yamlpos.Loc, int],
) -> Any:
    """Replace ``${NAME}`` and ``${file:/path}`` in every string; ``$${`` is a literal ``${``.

    ``secrets`` gathers each resolved value, with the note ``validate`` shows if the value
    turns out too short to be treated as a secret.
    """
    if isinstance(value, dict):
        return {
            k: resolve(v, (*loc, k), secrets, problems, path, positions)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            resolve(v, (*loc, i), secrets, problems, path, positions)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match[1]:
            return "${" + match[2] + "}"
        reference = match[2]
        if reference.startswith("file:"):
            secret, reason = _read_secret_file(reference[5:])
        else:
            secret, reason = _read_secret_variable(reference)
        if reason is not None:
            problems.append(located(path, positions, loc, reason))
            return ""
        secrets.setdefault(
            secret,
            located(
                path,
                positions,
                loc,
                f"${{{reference}}} is shorter than {MIN_SECRET_LENGTH} characters: it is"
                " treated as plain config, not as a secret, and is not redacted",
            ),
        )
        return secret

    return _SECRET.sub(substitute, value)


def _read_secret_file(name: str) -> tuple[str, str | None]:
    """The file's text, trailing whitespace removed; or why it cannot be a secret."""
    try:
        raw = files.read_regular(Path(name).expanduser(), MAX_SECRET_FILE_BYTES)
    except OSError as exc:
        return "", f"cannot read secret file {name}: {exc.strerror or exc}"
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "", f"secret file {name} is not UTF-8 text"
    if "\0" in secret:
        return "", f"secret file {name} holds a NUL byte"
    return secret, None


def _read_secret_variable(name: str) -> tuple[str, str | None]:
    if name not in os.environ:
        return "", f"environment variable {name} is not set"
    secret = os.environ[name]
    try:
        secret.encode("utf-8")  # undecodable bytes arrive as surrogates, which nothing stores
    except UnicodeEncodeError:
        return "", f"environment variable {name} is not UTF-8 text"
    return secret, None
