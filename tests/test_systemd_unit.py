"""The shipped unit: hardened as far as tasks allow, and systemd's own tools accept it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from toilbox.starter import unit_text

HARDENING = ["NoNewPrivileges=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
             "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes",
             "RestrictSUIDSGID=yes", "LockPersonality=yes", "RestrictRealtime=yes",
             "RestrictNamespaces=yes", "SystemCallArchitectures=native", "UMask=0077",
             "ProtectSystem=full"]
# Each would stop a configured task from working; the unit says why in a comment.
LEFT_OFF = ["ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateNetwork", "ProtectProc",
            "CapabilityBoundingSet", "SystemCallFilter", "MemoryDenyWriteExecute"]

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze (Debian: systemd) is not installed")


@pytest.fixture
def unit(tmp_path) -> Path:
    path = tmp_path / "toilbox.service"
    path.write_text(unit_text(tmp_path / "toilbox.yaml", [str(Path(sys.executable).parent / "toilbox")]))
    return path


def test_the_unit_is_hardened_and_says_what_it_leaves_off(unit):
    settings = [line for line in unit.read_text().splitlines() if line and line[0].isalpha()]
    for option in HARDENING:
        assert option in settings, option
    comments = unit.read_text()
    for option in LEFT_OFF:
        assert not any(s.startswith(option + "=") for s in settings), option
        assert re.search(rf"^# - .*{option}=", comments, re.MULTILINE), f"why {option} is off"


@needs_analyze
def test_systemd_analyze_verifies_it_and_rates_it_at_most_7(unit):
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, check=False)
    assert verified.returncode == 0, verified.stderr
    rated = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                           capture_output=True, text=True, check=False)
    exposure = re.search(r"Overall exposure level for toilbox\.service: (\d+\.\d)", rated.stdout)
    assert exposure, rated.stdout + rated.stderr
    assert float(exposure[1]) <= 7.0, "it was 9.3 before the hardening"
