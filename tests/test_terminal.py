"""Terminal escape sequences and control characters from plugin output never reach the
terminal through `run`, `history`, `explain` or a console log line.

Real `toilbox` processes running a real command that prints the sequences attackers use.
"""

from __future__ import annotations

import io
import re
import sys

import pytest
import structlog

from toilbox import log
from toilbox.terminal import printable

# What a hostile or broken program might print, and what is left of it.
SEQUENCES = {
    "\x1b[2J\x1b[H": "",  # CSI: clear the screen, cursor home
    "\x1b[31mred\x1b[0m": "red",  # CSI SGR colour
    "\x1b]0;pwned\x07": "",  # OSC: window title, BEL-terminated
    "\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\": "link",  # OSC 8 hyperlink, ST
    "\x1bP+q544e\x1b\\": "",  # DCS: request terminfo (an answerback)
    "\x9b6n": "",  # 8-bit CSI: report the cursor position
    "\x9d2;title\x9c": "",  # 8-bit OSC
    "\x1bc": "",  # RIS: reset the terminal
    "\x1b7\x1b8": "",  # save and restore the cursor
    "over\rwrite": "overwrite",  # CR: overwrite the start of the line
    "bell\x07": "bell",
    "back\x08space": "backspace",
    "del\x7f": "del",
    "nul\x00": "nul",
    "\u202eevil\u202c": "evil",  # right-to-left override
    "tab\tand\nnewline": "tab\tand\nnewline",  # kept
    "unterminated \x1b]0;title": "unterminated ",
    "naïve café ✓": "naïve café ✓",  # printable text is untouched
}
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(("raw", "shown"), list(SEQUENCES.items()), ids=repr)
def test_printable_strips_every_control_but_newline_and_tab(raw, shown):
    assert printable(raw) == shown


def test_printable_reaches_into_keys_values_and_dataclasses():
    from toilbox.models import RunRecord

    record = RunRecord("r", "t", "check.x", "ok", "manual", "2026-01-01", "h", 1,
                       summary="\x1b]0;x\x07ok", metrics={"\x1b[2Jlabel": {"value": 1}},
                       data={"k": ["\x9b6n"]}, details="a\x1bcb", output="c\rd")
    clean = printable(record)
    assert (clean.summary, clean.details, clean.output) == ("ok", "ab", "cd")
    assert clean.metrics == {"label": {"value": 1}}
    assert clean.data == {"k": [""]}
    assert record.summary == "\x1b]0;x\x07ok", "the original is left alone"


def test_printable_is_linear_on_hostile_input():
    import time

    started = time.process_time()
    printable("\x1b]" * 200_000 + "\x1b[" * 200_000)
    assert time.process_time() - started < 2


HOSTILE = "".join(SEQUENCES)


def test_run_history_and_explain_print_no_control_sequences(toilbox, write_config, tmp_path):
    script = tmp_path / "hostile.py"
    line = HOSTILE.replace("\n", " ")
    # The first line is the summary, with a perfdata label after "|"; the rest is details.
    script.write_text(f"import sys\nline = {line!r}\n"
                      "sys.stdout.write(f'{line} | {line}=1\\n{line}\\n')\nsys.exit(1)\n")
    config = write_config(f"""
        tasks:
          evil: {{uses: check.command, with: {{command: ["{sys.executable}", "{script}"]}}}}
    """)
    ran = toilbox("-c", str(config), "run", "evil")
    assert ran.code == 1, ran.out
    assert "WARNING evil: " in ran.out
    assert "overwrite" in ran.out and "link" in ran.out, "the text itself is kept"
    history = toilbox("-c", str(config), "history")
    explained = toilbox("-c", str(config), "explain", "evil")
    as_json = toilbox("-c", str(config), "history", "--json")
    for output in (ran.out, history.out, explained.out):
        assert not UNSAFE.search(output.replace("\t", " ")), repr(output)
        assert "pwned" not in output
    assert "redlink" in history.out and "redlink" in explained.out, "the text itself is kept"
    assert "\\u001b]0;pwned" in as_json.out, "--json keeps the raw text, escaped by JSON"


def test_console_log_lines_are_printable_too():
    stream = io.StringIO()
    log.configure("console", "info", stream)
    structlog.get_logger("t").info("run.finished", summary="\x1b]0;pwned\x07ok\x9b2J",
                                   **{"\x1b[2Jkey": "v"})
    line = stream.getvalue()
    assert "ok" in line and "key" in line
    assert not UNSAFE.search(line.rstrip("\n")), repr(line)
