"""What a task returns: worst-of in the Nagios order, "alert below" metrics and their
perfdata, and how `toilbox run` shows thresholds."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

import toilbox
from toilbox import Metric, Status
from toilbox.result import Result, describe_range
from toilbox_checks.perfdata import parse_perfdata


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((Status.UNKNOWN, Status.CRITICAL), Status.CRITICAL),  # max() by value says UNKNOWN
        ((Status.UNKNOWN, Status.WARNING), Status.WARNING),
        ((Status.OK, Status.UNKNOWN), Status.UNKNOWN),
        ((Status.WARNING, Status.OK, Status.CRITICAL, Status.UNKNOWN), Status.CRITICAL),
        ((Status.OK,), Status.OK),
        ((), Status.OK),
    ],
)
def test_worst_follows_the_nagios_order(statuses, expected):
    assert toilbox.worst(*statuses) is expected
    assert [s.label for s in sorted(Status, key=lambda s: s.severity)] == [
        "ok", "unknown", "warning", "critical"
    ]


def test_the_pitfall_worst_avoids():
    assert max(Status.UNKNOWN, Status.CRITICAL) is Status.UNKNOWN  # why worst() exists


def test_below_writes_nagios_ranges_that_alert_below():
    metric = Metric.below(12.5, "d", warn=30, crit=7.5, min=0)
    assert (metric.warn, metric.crit) == ("30:", "7.5:")
    # Days are written as seconds, a unit every perfdata parser knows, thresholds alike.
    assert metric.perfdata("days_left") == "'days_left'=1080000s;2592000:;648000:;0"
    assert Metric.below(5, warn=None, crit="10:").crit == "10:"  # a range passes as given
    # What check.command reads back from a Nagios plugin is the same metric, in seconds.
    parsed, errors = parse_perfdata(metric.perfdata("days left"))
    assert errors == []
    assert parsed == {"days left": Metric.below(1080000, "s", warn=2592000, crit=648000, min=0)}


@pytest.mark.parametrize(
    ("threshold", "words"),
    [
        (80, "above 80"),
        ("80", "above 80"),
        ("30:", "below 30"),
        ("~:10", "above 10"),
        ("10:20", "outside 10..20"),
        ("@10:20", "inside 10..20"),
        ("@5", "inside 0..5"),
    ],
)
def test_ranges_read_in_words(threshold, words):
    assert describe_range(threshold) == words


def test_perfdata_quotes_labels_and_writes_plain_numbers():
    assert Metric(1e10, "B").perfdata("free") == "'free'=10000000000B"
    assert Metric(1, warn=2, crit=3).perfdata("it's") == "'it_s'=1;2;3"
    assert Metric(2, "GiB", warn="1:").perfdata("x") == "'x'=2147483648B;1073741824:"
    # A label cannot end the line or start perfdata of its own in what Nagios reads.
    assert Metric(1).perfdata("a\nCRITICAL x|y") == "'a_CRITICAL x_y'=1"


def test_a_plugins_perfdata_is_what_toilbox_run_prints(toilbox_run, tmp_path):
    """One writer of perfdata: a plugin author's test of ``Metric.perfdata`` sees the text
    that Nagios gets from ``toilbox run``."""
    from toilbox.render import run_result

    ran = toilbox_run("check.disk", {"path": str(tmp_path), "warning": "99%"})
    printed = run_result(ran.record).splitlines()[0].split(" | ", 1)[1]
    assert printed == " ".join(m.perfdata(label) for label, m in ran.metrics.items())


@pytest.mark.parametrize("bad", ["below 30", "30 days", "@"])
def test_a_threshold_that_is_not_a_nagios_range_is_a_bad_result(bad):
    result = Result(Status.OK, "x", metrics={"days_left": Metric(3, warn=bad)})
    with pytest.raises(TypeError, match="is not a Nagios range"):
        result.normalised_metrics()


def test_run_shows_an_alert_below_threshold_in_words_and_perfdata_as_ranges(
    cli, write_config, plugin_dir
):
    (plugin_dir / "expiry.py").write_text(textwrap.dedent("""
        from pydantic import BaseModel
        import toilbox

        class Params(BaseModel):
            pass

        def expiry(ctx, params):
            '''Days left.'''
            days = toilbox.Metric.below(12, "d", warn=30, crit=7)
            return toilbox.Result(toilbox.Status.WARNING, "12 days left", {"days_left": days})

        @toilbox.hookimpl
        def register_task_types(register):
            register("check.expiry", expiry, params=Params)
    """))
    config = write_config("tasks:\n  cert: {uses: check.expiry}\n")
    shown = cli("-c", str(config), "run", "cert")
    assert shown.code == 1
    assert "  days_left = 12d (warn below 30, crit below 7)" in shown.out
    as_json = json.loads(cli("-c", str(config), "run", "cert", "--json").out)
    assert as_json["metrics"]["days_left"] == {
        "value": 12, "unit": "d", "warn": "30:", "crit": "7:", "min": None, "max": None
    }


def test_a_report_outage_is_as_bad_as_its_worst_state_in_the_nagios_order():
    from toilbox_reports.summary import _check_states

    start = datetime(2030, 1, 1, tzinfo=UTC)

    def finished(hour: int, status: str) -> tuple[str, str]:
        """A change of state as the store gives it: when the run ended, its status."""
        return ((start + timedelta(hours=hour)).isoformat(), status)

    runs = [finished(1, "critical"), finished(2, "unknown"), finished(3, "warning"),
            finished(4, "ok")]
    states = _check_states(runs, None, start, start + timedelta(hours=5))
    assert [o["worst"] for o in states["outages"]] == ["critical"]
    runs = [finished(1, "unknown"), finished(2, "warning"), finished(3, "ok")]
    states = _check_states(runs, None, start, start + timedelta(hours=5))
    assert [o["worst"] for o in states["outages"]] == ["warning"]


def test_byte_thresholds_read_as_sizes(cli, write_config, plugin_dir):
    (plugin_dir / "free.py").write_text(textwrap.dedent("""
        from pydantic import BaseModel
        import toilbox

        class Params(BaseModel):
            pass

        def free(ctx, params):
            '''Free bytes.'''
            metric = toilbox.Metric.below(3 * 1024**3, "B", warn=2 * 1024**3, crit=512 * 1024**2)
            return toilbox.Result(toilbox.Status.OK, "plenty", {"free": metric})

        @toilbox.hookimpl
        def register_task_types(register):
            register("check.free", free, params=Params)
    """))
    config = write_config("tasks:\n  free: {uses: check.free}\n")
    shown = cli("-c", str(config), "run", "free").out
    assert "  free = 3.0 GiB (warn below 2.0 GiB, crit below 512.0 MiB)" in shown
