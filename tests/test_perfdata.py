"""Nagios perfdata parsing and output splitting: untrusted text never raises."""

from __future__ import annotations

import pytest

from toilbox import Metric
from toilbox_checks.perfdata import PluginOutput, parse_perfdata, split_output


def test_a_full_item() -> None:
    metrics, errors = parse_perfdata("time=0.012s;1.5;3;0;10")
    assert metrics == {"time": Metric(0.012, "s", 1.5, 3.0, 0.0, 10.0)}
    assert errors == []


def test_the_value_alone() -> None:
    assert parse_perfdata("users=7") == ({"users": Metric(7.0)}, [])


def test_empty_and_blank_text() -> None:
    assert parse_perfdata("") == ({}, [])
    assert parse_perfdata("  \n\t ") == ({}, [])


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("'disk usage'=5", "disk usage"),
        ("'a=b'=5", "a=b"),
        ("'it''s'=5", "it's"),
        ("'''quoted'''=5", "'quoted'"),
        ("'C:\\ used %'=5", "C:\\ used %"),
        ("'  spaced  '=5", "  spaced  "),
        ("don't=5", "don't"),  # a quote inside a bare label is just a character
        ("/var/log=5", "/var/log"),
    ],
)
def test_labels(text: str, label: str) -> None:
    metrics, errors = parse_perfdata(text)
    assert errors == []
    assert list(metrics) == [label]
    assert metrics[label].value == 5.0


@pytest.mark.parametrize(
    ("value", "number", "unit"),
    [
        ("5", 5.0, ""),
        ("-3.5", -3.5, ""),
        ("+2", 2.0, ""),
        (".5", 0.5, ""),
        ("5.", 5.0, ""),
        ("1e3", 1000.0, ""),
        ("2.5E-3s", 0.0025, "s"),
        ("12ms", 12.0, "ms"),
        ("40us", 40.0, "us"),
        ("99.9%", 99.9, "%"),
        ("1024B", 1024.0, "B"),
        ("10KB", 10.0, "KB"),
        ("3MB", 3.0, "MB"),
        ("2TB", 2.0, "TB"),
        ("123456c", 123456.0, "c"),
        ("7req/s", 7.0, "req/s"),  # units beyond the spec are kept as-is
        ("5e", 5.0, "e"),  # no exponent digits: "e" is the unit
    ],
)
def test_values_and_units(value: str, number: float, unit: str) -> None:
    metrics, errors = parse_perfdata(f"m={value}")
    assert errors == []
    assert metrics["m"].value == pytest.approx(number)
    assert metrics["m"].unit == unit


@pytest.mark.parametrize(
    ("threshold", "kept"),
    [
        ("10", 10.0),
        ("-1.5", -1.5),
        ("10:", "10:"),
        ("~:20", "~:20"),
        ("10:20", "10:20"),
        ("@5:10", "@5:10"),
        ("@10", "@10"),
        ("-5:5", "-5:5"),
        (":7", ":7"),
    ],
)
def test_thresholds_keep_ranges_as_text_and_numbers_as_floats(
    threshold: str, kept: str | float
) -> None:
    metrics, errors = parse_perfdata(f"m=1;{threshold};{threshold}")
    assert errors == []
    assert metrics["m"].warn == kept
    assert metrics["m"].crit == kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m=1;;;0;100", Metric(1.0, min=0.0, max=100.0)),
        ("m=1;;5", Metric(1.0, crit=5.0)),
        ("m=1;5", Metric(1.0, warn=5.0)),
        ("m=1;;;;", Metric(1.0)),
        ("m=1;;;;9", Metric(1.0, max=9.0)),
        ("m=1%;80;90;;", Metric(1.0, "%", 80.0, 90.0)),
    ],
)
def test_missing_fields(text: str, expected: Metric) -> None:
    assert parse_perfdata(text) == ({"m": expected}, [])


def test_unknown_values_are_skipped_without_error() -> None:
    metrics, errors = parse_perfdata("a=U b=U;1;2;0;10 c=3")
    assert list(metrics) == ["c"]
    assert errors == []


def test_many_items_and_any_whitespace() -> None:
    text = "a=1  b=2\tc=3\n'd e'=4;5;6\r\n f=7ms"
    metrics, errors = parse_perfdata(text)
    assert list(metrics) == ["a", "b", "c", "d e", "f"]
    assert metrics["d e"] == Metric(4.0, "", 5.0, 6.0)
    assert errors == []


def test_a_repeated_label_keeps_the_last_value() -> None:
    metrics, _ = parse_perfdata("a=1 a=2")
    assert metrics == {"a": Metric(2.0)}


@pytest.mark.parametrize(
    "garbage",
    [
        "justtext",
        "=5",
        "a=",
        "a=abc",
        "a=;1;2",
        "a=1.2.3",
        "a=nan",
        "a=inf",
        "a=1e999",
        "a=1;x;2",
        "a=1;1;2;low",
        "a=1;1;2;0;high",
        "a=1;@",
        "a=1;10:20:30",
        "a=1;2;3;4;5;6",
        "''=5",
        "'unterminated=5",
        "'a'b=5",
        "'a''=5",
        "a=--1",
        "a=U5",
    ],
)
def test_malformed_items_are_reported_not_raised(garbage: str) -> None:
    metrics, errors = parse_perfdata(f"ok1=1 {garbage} ok2=2")
    assert len(errors) >= 1
    assert {"ok1", "ok2"} <= set(metrics)
    assert not any(label.startswith(("a", "'", "=")) for label in metrics)


def test_errors_name_the_item() -> None:
    _, errors = parse_perfdata("good=1 bad=abc; worse")
    assert len(errors) == 2
    assert "bad=abc;" in errors[0]
    assert "not a number" in errors[0]
    assert "worse" in errors[1]


def test_hostile_input_does_not_crash_or_hang() -> None:
    blob = "'" + "''" * 50_000 + " =" * 50_000 + ";" * 10_000 + "\x00\ufffd|"
    metrics, errors = parse_perfdata(blob)
    assert isinstance(metrics, dict)
    assert errors


# --- splitting plugin output ---


def test_split_a_single_line() -> None:
    assert split_output("DISK OK - 42% used | /=42%;80;90\n") == PluginOutput(
        "DISK OK - 42% used", "", "/=42%;80;90"
    )


def test_split_without_perfdata() -> None:
    assert split_output("OK: all good\n") == PluginOutput("OK: all good", "", "")


def test_split_long_text_with_perfdata_on_later_lines() -> None:
    stdout = (
        "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
        "/ 15272 MB (77%);\n"
        "/boot 68 MB (69%);\n"
        "/home 69357 MB (27%);\n"
        "/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
        "/home=69357MB;253404;253409;0;253414\n"
        "'/var/log'=818MB;970;975;0;980\n"
    )
    output = split_output(stdout)
    assert output.summary == "DISK OK - free space: / 3326 MB (56%);"
    assert output.long_text.splitlines() == [
        "/ 15272 MB (77%);",
        "/boot 68 MB (69%);",
        "/home 69357 MB (27%);",
        "/var/log 819 MB (84%);",
    ]
    metrics, errors = parse_perfdata(output.perfdata)
    assert errors == []
    assert list(metrics) == ["/", "/boot", "/home", "/var/log"]
    assert metrics["/var/log"] == Metric(818.0, "MB", 970.0, 975.0, 0.0, 980.0)


def test_split_long_text_without_perfdata() -> None:
    output = split_output("WARNING: 2 problems\nfirst\nsecond\n")
    assert output == PluginOutput("WARNING: 2 problems", "first\nsecond", "")


def test_split_perfdata_only_on_later_lines() -> None:
    output = split_output("OK\ndetail | a=1\nb=2\n")
    assert output == PluginOutput("OK", "detail", "a=1\nb=2")
    assert list(parse_perfdata(output.perfdata)[0]) == ["a", "b"]


def test_split_a_pipe_inside_a_quoted_label_on_the_first_line() -> None:
    output = split_output("OK | 'in|out'=5\n")
    assert output.summary == "OK"
    assert parse_perfdata(output.perfdata)[0] == {"in|out": Metric(5.0)}


def test_split_empty_output() -> None:
    assert split_output("") == PluginOutput("", "", "")
