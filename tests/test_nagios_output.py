"""`toilbox run` speaks the Monitoring Plugins format, read back by a real perfdata parser.

The parser is Monitoring::Plugin::Performance, the Monitoring Plugins project's own Perl
library (Debian: libmonitoring-plugin-perl), which graphers and plugins use to read
perfdata.  No PyPI package parses perfdata (nagiosplugin only writes it), and a parser
written here would only agree with the code it tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PLUGINS = Path("/usr/lib/nagios/plugins")
PERL_PARSER = r"""
use Monitoring::Plugin::Performance; use JSON::PP;
my @items = Monitoring::Plugin::Performance->parse_perfstring($ARGV[0]);
sub limit { my $r = shift; return $r->is_set ? "$r" : undef }
print JSON::PP->new->canonical->encode([map { {
    label => $_->label, value => 0 + $_->value, uom => $_->uom,
    warn => limit($_->threshold->warning), crit => limit($_->threshold->critical),
    min => $_->min, max => $_->max } } @items]);
"""


def _has_perl_parser() -> bool:
    return shutil.which("perl") is not None and subprocess.run(
        ["perl", "-MMonitoring::Plugin::Performance", "-e", "1"], capture_output=True, check=False
    ).returncode == 0


needs_parser = pytest.mark.skipif(
    not _has_perl_parser(),
    reason="needs Monitoring::Plugin::Performance (apt-get install libmonitoring-plugin-perl)",
)
needs_plugins = pytest.mark.skipif(
    not (PLUGINS / "check_users").exists(),
    reason="needs monitoring-plugins-basic (apt-get install monitoring-plugins-basic)",
)


def parse_perfdata(text: str) -> list[dict]:
    done = subprocess.run(["perl", "-e", PERL_PARSER, text], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def plugin_output(stdout: str) -> tuple[str, str, list[str]]:
    """(text, perfdata, long output lines), split as Nagios and Icinga split it."""
    first, *rest = stdout.rstrip("\n").split("\n")
    text, _, perf = first.partition("|")
    return text.strip(), perf.strip(), rest


PERF_PLUGIN = '''
import toilbox
from pydantic import BaseModel


class Params(BaseModel):
    summary: str = "all | well"


def measure(ctx, params):
    return toilbox.Result(toilbox.Status.WARNING, params.summary, metrics={
        "used pct": toilbox.Metric(21.88, "%", 80, 90, 0, 100),
        "days_left": toilbox.Metric(12.5, "d", "30:", "7:"),
        "it's=odd": 3,
        "tiny": toilbox.Metric(0.000001, "s"),
    }, details="line one\\nline | two")


def boom(ctx, params):
    raise RuntimeError("the plugin broke")


@toilbox.hookimpl
def register_task_types(register):
    register("check.perf", measure, params=Params)
    register("check.boom", boom, params=Params)
    register("cleanup.boom", boom, params=Params)
'''


@pytest.fixture
def config(write_config, plugin_dir):
    (plugin_dir / "perf.py").write_text(PERF_PLUGIN)
    return write_config(f"""
        defaults: {{retry: {{attempts: 2, backoff: 0s}}}}
        tasks:
          perf: {{uses: check.perf}}
          check-boom: {{uses: check.boom}}
          cleanup-boom: {{uses: cleanup.boom}}
          missing: {{uses: check.command, with: {{command: [/nonexistent/check_thing]}}}}
          users: {{uses: check.command, with: {{command: [{PLUGINS}/check_users, -w, "100", -c, "200"]}}}}
          load: {{uses: check.command, with: {{command: [{PLUGINS}/check_load, -w, "90,80,70", -c, "190,180,170"]}}}}
    """)


@needs_parser
def test_first_line_is_status_summary_and_perfdata(toilbox, config):
    result = toilbox("-c", str(config), "run", "perf")
    assert result.code == 1
    text, perf, long_output = plugin_output(result.out)
    assert text == "WARNING perf: all \u00a6 well", "a | in the text would start perfdata"
    assert result.out.split("\n")[0].count("|") == 1
    parsed = {item["label"]: item for item in parse_perfdata(perf)}
    assert parsed["used pct"] == {"label": "used pct", "value": 21.88, "uom": "%", "warn": "80",
                                  "crit": "90", "min": "0", "max": "100"}
    # days are not a Monitoring Plugins unit: shown in seconds, ranges scaled with them
    assert parsed["days_left"]["value"] == 12.5 * 86400
    assert parsed["days_left"]["uom"] == "s"
    assert (parsed["days_left"]["warn"], parsed["days_left"]["crit"]) == ("2592000:", "604800:")
    assert parsed["it_s_odd"]["value"] == 3
    assert parsed["tiny"]["value"] == 0.000001, "no exponent: perfdata values are decimals"
    assert "  line one" in long_output
    assert all("|" not in line for line in long_output)


@needs_parser
@needs_plugins
def test_a_nagios_plugins_perfdata_comes_through_check_command(toilbox, config):
    for task, argv in (("users", ["check_users", "-w", "100", "-c", "200"]),
                       ("load", ["check_load", "-w", "90,80,70", "-c", "190,180,170"])):
        direct = subprocess.run([str(PLUGINS / argv[0]), *argv[1:]], capture_output=True,
                                text=True, check=False)
        through = toilbox("-c", str(config), "run", task)
        assert through.code == direct.returncode == 0
        theirs = parse_perfdata(plugin_output(direct.stdout)[1])
        ours = parse_perfdata(plugin_output(through.out)[1])
        assert [i["label"] for i in ours] == [i["label"] for i in theirs]
        assert len(ours) >= 1
        for mine, original in zip(ours, theirs, strict=True):
            assert {k: v for k, v in mine.items() if k != "value"} == {
                k: v for k, v in original.items() if k != "value"}
            if task == "users":
                assert mine["value"] == original["value"]


def test_a_check_that_could_not_check_is_unknown(toilbox, config):
    missing = toilbox("-c", str(config), "run", "missing")
    assert missing.code == 3
    assert missing.out.startswith("UNKNOWN missing: cannot run /nonexistent/check_thing: ")
    raised = toilbox("-c", str(config), "run", "check-boom", "--json")
    assert raised.code == 3
    assert json.loads(raised.out)["status"] == "unknown"
    assert json.loads(raised.out)["error"]["type"] == "exception"


def test_a_cleanup_that_failed_is_critical(toilbox, config):
    result = toilbox("-c", str(config), "run", "cleanup-boom", "--json")
    assert result.code == 2
    assert json.loads(result.out)["status"] == "critical"


def test_a_monitoring_system_sees_only_the_plugin_output(toilbox, config):
    """NRPE reads stdout; Icinga 2 reads stdout and stderr together: logs would garble it."""
    ok = toilbox("-c", str(config), "run", "perf")
    failing = toilbox("-c", str(config), "run", "check-boom")  # two attempts, both failed
    assert ok.err == ""
    assert failing.err == ""
    assert failing.out.startswith("UNKNOWN check-boom: RuntimeError: the plugin broke")
    watched = toilbox("-c", str(config), "--log-level", "info", "run", "perf")
    assert '"event": "run.finished"' in watched.err


def test_perfdata_units_are_the_guidelines_own():
    from toilbox.render import perfdata

    shown = perfdata({
        "a": {"value": 2, "unit": "GiB", "warn": "1:", "crit": None, "min": 0, "max": None},
        "b": {"value": 1.5, "unit": "requests", "warn": 1, "crit": 2},
        "c": {"value": 5, "unit": "", "warn": "not a range", "crit": "@1:2"},
    })
    assert shown == "'a'=2147483648B;1073741824:;;0 'b'=1.5;1;2 'c'=5;;@1:2"
