"""Command-line arguments out of range: one line on stderr and exit 3, never a traceback.

Real `toilbox` processes, so that what escapes the CLI's error boundary would show.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def config(write_config, toilbox):
    path = write_config("tasks:\n  a: {uses: check.faults}\n")
    assert toilbox("-c", str(path), "run", "a").code == 0
    return path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["history", "--limit", str(2**64)],
         f"toilbox: error: Invalid value for '--limit': {2**64} is not in the range"
         f" 1<=x<={2**63 - 1}. (see toilbox history --help)"),
        (["history", "--limit", "9" * 5000], "toilbox: error: Invalid value for '--limit': "),
        (["history", "--limit", "0"], "toilbox: error: Invalid value for '--limit': 0 is not"),
        (["history", "--limt", "3"],
         "toilbox: error: No such option '--limt'. Did you mean '--limit'? (see toilbox history"
         " --help)"),
        (["report", "--window", "1000000000d"],
         'toilbox: error: report: a duration is at most 100 years (36500d), got "1000000000d"'),
        (["report", "--window", "1" + "0" * 400 + "s"],
         "toilbox: error: report: a duration is at most 100 years"),
        (["report", "--window", "soon"],
         'toilbox: error: report: expected a duration like 30s, 10m, 2h or 7d, got "soon"'),
        (["report", "-o", "{tmp}"],
         "toilbox: error: report: cannot write {tmp}: it is a directory: only a regular file"
         " is replaced"),
        (["report", "-o", "/"],
         "toilbox: error: report: cannot write /: it is a directory: only a regular file is"
         " replaced"),
        (["no-such-command"], "toilbox: error: No such command 'no-such-command'."),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_3(toilbox, config, tmp_path, args, expected):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = toilbox("-c", str(config), *args)
    assert result.code == 3
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith(expected.replace("{tmp}", str(tmp_path))), result.err
    assert result.out == ""


def test_the_largest_limit_is_accepted(toilbox, config):
    result = toilbox("-c", str(config), "history", "--limit", str(2**63 - 1), "--json")
    assert result.code == 0, result.err
    assert result.out.startswith("[{")
