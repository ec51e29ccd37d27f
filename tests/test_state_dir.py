"""The state directory is toilbox's own: made private, refused when another user could
change it, and never entered through a symlink planted inside it (issue 11, item 9)."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another user")


def config_with_state(write_config, tmp_path: Path, state: Path) -> Path:
    path = write_config("tasks:\n  t: {uses: check.faults}\n")
    text = path.read_text().replace(f"state_dir: {tmp_path / 'state'}", f"state_dir: {state}")
    path.write_text(text)
    return path


def test_a_new_state_dir_is_private_and_so_is_its_store(toilbox, write_config, tmp_path):
    state = tmp_path / "fresh" / "state"
    config = config_with_state(write_config, tmp_path, state)
    old = os.umask(0o002)  # a permissive umask must not leak into the store's modes
    try:
        assert toilbox("-c", str(config), "run", "t").code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # (SQLite gives the WAL, while one exists, the database file's mode.)
    assert stat.S_IMODE((state / "toilbox.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "locks").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "tasks").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "tasks" / "t").stat().st_mode) == 0o700


def test_an_existing_store_is_made_private(toilbox, write_config, tmp_path):
    state = tmp_path / "state"
    config = config_with_state(write_config, tmp_path, state)
    assert toilbox("-c", str(config), "run", "t").code == 0
    (state / "toilbox.db").chmod(0o644)
    assert toilbox("-c", str(config), "history").code == 0
    assert stat.S_IMODE((state / "toilbox.db").stat().st_mode) == 0o600


@pytest.mark.parametrize(("mode", "why"), [
    (0o777, "writable by group and others (mode 0777)"),
    (0o1777, "writable by group and others (mode 1777)"),
    (0o757, "writable by others (mode 0757)"),
])
def test_a_state_dir_others_can_write_is_refused(toilbox, write_config, tmp_path, mode, why):
    state = tmp_path / "shared"
    state.mkdir()
    state.chmod(mode)
    config = config_with_state(write_config, tmp_path, state)
    for command in (["run", "t"], ["history"], ["list"]):
        refused = toilbox("-c", str(config), *command)
        assert refused.code == 3, refused.err
        assert refused.err.strip() == (
            f"toilbox: error: refusing the state directory {state}: it is {why}"
        )
    assert not (state / "toilbox.db").exists(), "nothing written into it"


def test_a_state_dir_under_a_directory_others_can_write_is_refused(
    toilbox, write_config, tmp_path
):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    config = config_with_state(write_config, tmp_path, open_dir / "state")
    refused = toilbox("-c", str(config), "run", "t")
    assert refused.code == 3
    assert f"{open_dir} is writable by group and others (mode 0777)" in refused.err


@root_only
def test_a_state_dir_of_another_user_is_refused(toilbox, write_config, tmp_path):
    nobody = pwd.getpwnam("nobody")
    state = tmp_path / "theirs"
    state.mkdir(mode=0o700)
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    config = config_with_state(write_config, tmp_path, state)
    refused = toilbox("-c", str(config), "run", "t")
    assert refused.code == 3
    assert f"refusing the state directory {state}: it is owned by nobody" in refused.err


def test_symlinks_planted_in_the_state_dir_are_never_followed(toilbox, write_config, tmp_path):
    state = tmp_path / "state"
    config = config_with_state(write_config, tmp_path, state)
    assert toilbox("-c", str(config), "run", "t").code == 0
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock = state / "locks" / "t.lock"
    lock.unlink()
    lock.symlink_to(victim)
    refused = toilbox("-c", str(config), "run", "t")
    assert refused.code == 3 and "Traceback" not in refused.err
    assert victim.read_text() == "precious\n"
    (state / "toilbox.db").rename(state / "moved.db")
    (state / "toilbox.db").symlink_to(state / "moved.db")
    refused = toilbox("-c", str(config), "history")
    assert refused.code == 3
    assert "is a symlink; refusing to follow it" in refused.err
