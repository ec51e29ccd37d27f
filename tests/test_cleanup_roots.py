"""Cleanup roots on real trees: symlinks anywhere on the way, named ones, dangerous places.

The attack: a root's parent (or grandparent, or the root itself) is a symlink to another
tree, made before the config is validated or swapped in between validation and the run.
A cleanup that opens the root by its path would clean that other tree.  Every cleanup
type must refuse, unless the config names that symlink in ``root_symlinks``.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

import toilbox
from toilbox import Status
from toilbox_cleanups import emptydirs, files, logs
from toilbox_cleanups.params import CommonParams, EmptyDirsParams, FilesParams, LogsParams

OLD = time.time() - 30 * 86400
QUIET = structlog.wrap_logger(structlog.PrintLogger(),
                              wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

# Each cleanup type with parameters under which it would change the planted tree.
KINDS: dict[str, tuple[type[CommonParams], Callable[..., toilbox.Result], dict[str, Any]]] = {
    "files": (FilesParams, files.run, {"older_than": "7d"}),
    "empty-dirs": (EmptyDirsParams, emptydirs.run, {"older_than": "7d"}),
    "logs": (LogsParams, logs.run, {"compress_after": "1d", "delete_after": "7d", "keep": 0}),
}


def context(tmp_path: Path) -> toilbox.TaskContext:
    return toilbox.TaskContext(task="t", run_id="r1", attempt=1, dry_run=False, log=QUIET,
                               state_dir=tmp_path / "state")


def plant(directory: Path) -> Path:
    """What each cleanup type would change: an old file, an old log, an old compressed
    log and an old empty directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in (("old.dat", b"data"), ("app.log", b"log line\n"),
                          ("app-1.log.gz", gzip.compress(b"older\n"))):
        (directory / name).write_bytes(content)
        os.utime(directory / name, (OLD, OLD))
    (directory / "empty").mkdir(exist_ok=True)
    os.utime(directory / "empty", (OLD, OLD))
    return directory


def fingerprint(directory: Path) -> dict[str, str]:
    seen = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                seen[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[str(path)] = "dir"
    return seen


def params_for(kind: str, roots: list[Path], **extra: Any) -> CommonParams:
    model, _, base = KINDS[kind]
    return model.model_validate({**base, **extra, "roots": [str(r) for r in roots]})


def run(kind: str, tmp_path: Path, params: CommonParams) -> toilbox.Result:
    return KINDS[kind][1](context(tmp_path), params)


def swap_for_symlink(directory: Path, target: Path) -> None:
    """What a user who can write ``directory``'s parent does: move it aside and put a
    symlink to ``target`` in its place."""
    directory.rename(directory.with_name(directory.name + ".moved"))
    directory.symlink_to(target)


# The component of tmp/a/b/root that becomes a symlink, and the root's path in the target.
SHAPES = {"parent": ("a/b", "root"), "grandparent": ("a", "b/root"), "root": ("a/b/root", "")}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_symlink_anywhere_on_the_way_is_refused_when_the_config_is_validated(
    tmp_path: Path, kind: str, shape: str
) -> None:
    link, below = SHAPES[shape]
    other = plant(tmp_path / "other" / below)
    (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / link).symlink_to(tmp_path / "other")
    root = tmp_path / "a" / "b" / "root"
    with pytest.raises(ValueError, match="refused unless root_symlinks names") as caught:
        params_for(kind, [root])
    verb = "is a symlink" if shape == "root" else f"passes through the symlink {tmp_path / link}"
    assert f"roots[0]: {root} {verb} (to {tmp_path / 'other'})" in str(caught.value)
    assert other.exists()


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_symlink_swapped_in_between_validation_and_the_run_is_refused(
    tmp_path: Path, kind: str, shape: str
) -> None:
    link, below = SHAPES[shape]
    root = plant(tmp_path / "a" / "b" / "root")
    params = params_for(kind, [root])  # valid: every component is a real directory
    plant(tmp_path / "other" / below)
    before = fingerprint(tmp_path / "other")
    swap_for_symlink(tmp_path / link, tmp_path / "other")
    with pytest.raises(toilbox.TaskFailed, match="refused unless root_symlinks names") as caught:
        run(kind, tmp_path, params)
    assert str(tmp_path / link) in str(caught.value)
    assert fingerprint(tmp_path / "other") == before, "another tree was changed"


@pytest.mark.parametrize("kind", list(KINDS))
def test_one_refused_root_stops_the_run_before_any_root_is_changed(
    tmp_path: Path, kind: str
) -> None:
    good = plant(tmp_path / "good")
    bad = plant(tmp_path / "a" / "root")
    params = params_for(kind, [good, bad])
    swap_for_symlink(tmp_path / "a", plant(tmp_path / "other" / "root").parent)
    before = fingerprint(tmp_path)
    with pytest.raises(toilbox.TaskFailed):
        run(kind, tmp_path, params)
    assert fingerprint(tmp_path) == before


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_named_symlink_is_followed(tmp_path: Path, kind: str) -> None:
    target = plant(tmp_path / "data" / "app" / "cache")
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "app").symlink_to(tmp_path / "data" / "app")
    root = tmp_path / "srv" / "app" / "cache"
    params = params_for(kind, [root], root_symlinks=[str(tmp_path / "srv" / "app")])
    result = run(kind, tmp_path, params)
    assert result.status is Status.OK, result.summary
    left = {"files": ["empty"], "empty-dirs": ["app-1.log.gz", "app.log", "old.dat"],
            "logs": ["app.log.gz", "empty", "old.dat"]}
    assert sorted(os.listdir(target)) == left[kind]
    paths = result.data["deleted_paths" if kind == "logs" else "paths"]
    assert paths and all(p.startswith(f"{root}/") for p in paths), "shown as configured"


def test_a_symlink_inside_a_named_symlinks_target_must_be_named_too(tmp_path: Path) -> None:
    plant(tmp_path / "disk" / "app")
    (tmp_path / "data").symlink_to(tmp_path / "disk")  # second hop
    (tmp_path / "srv").symlink_to("data")  # first hop, relative
    root = tmp_path / "srv" / "app"
    with pytest.raises(ValueError, match=f"passes through the symlink {tmp_path / 'data'} "):
        FilesParams(roots=[str(root)], root_symlinks=[str(tmp_path / "srv")])
    both = [str(tmp_path / "srv"), str(tmp_path / "data")]
    result = files.run(context(tmp_path), FilesParams(roots=[str(root)], root_symlinks=both,
                                                      older_than="7d"))
    assert result.data["deleted"]["files"] == 3


def test_a_relative_target_with_dotdot_is_resolved_from_the_links_directory(
    tmp_path: Path,
) -> None:
    target = plant(tmp_path / "x" / "real")
    (tmp_path / "x" / "y").mkdir()
    (tmp_path / "x" / "y" / "link").symlink_to("../real")
    root = tmp_path / "x" / "y" / "link"
    params = FilesParams(roots=[str(root)], root_symlinks=[str(root)], older_than="7d")
    result = files.run(context(tmp_path), params)
    assert result.data["deleted"]["files"] == 3
    assert os.listdir(target) == ["empty"]


def test_a_loop_of_named_symlinks_is_an_error_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    named = [str(tmp_path / "a"), str(tmp_path / "b")]
    params = FilesParams(roots=[str(tmp_path / "a" / "root")], root_symlinks=named)
    result = files.run(context(tmp_path), params)
    assert result.status is Status.WARNING
    assert "leads through too many symlinks" in result.data["errors"]["samples"][0]["error"]


def test_a_named_symlink_to_a_dangerous_place_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "up").symlink_to("/")
    root = str(tmp_path / "up" / "etc")
    named = [str(tmp_path / "up")]
    with pytest.raises(ValueError, match=r"is really /etc, a system directory"):
        FilesParams(roots=[root], root_symlinks=named)
    # And when the link is pointed there only after validation.
    (tmp_path / "up").unlink()
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "etc").mkdir()
    params = FilesParams(roots=[root], root_symlinks=named)
    (tmp_path / "up").rename(tmp_path / "up.moved")
    (tmp_path / "up").symlink_to("/")
    with pytest.raises(toilbox.TaskFailed, match=r"is really /etc, a system directory"):
        files.run(context(tmp_path), params)


def test_roots_that_overlap_once_symlinks_are_followed_are_refused(tmp_path: Path) -> None:
    plant(tmp_path / "real" / "sub")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    params = FilesParams(roots=[str(tmp_path / "real"), str(tmp_path / "alias" / "sub")],
                         root_symlinks=[str(tmp_path / "alias")], older_than="7d")
    before = fingerprint(tmp_path / "real")
    with pytest.raises(toilbox.TaskFailed, match="overlap: they are really"):
        files.run(context(tmp_path), params)
    assert fingerprint(tmp_path / "real") == before


def test_a_missing_root_is_left_to_the_run_which_reports_it(tmp_path: Path) -> None:
    params = FilesParams(roots=[str(tmp_path / "not" / "yet")])  # validation cannot tell
    result = files.run(context(tmp_path), params)
    assert result.status is Status.WARNING
    assert result.data["errors"]["samples"][0]["error"] == (
        f"{tmp_path / 'not'} does not exist")


def test_root_symlinks_must_be_absolute_and_normalised() -> None:
    with pytest.raises(ValueError, match="roots must be absolute paths"):
        FilesParams(roots=["/srv/x"], root_symlinks=["srv"])


# --- through the real command ---


def test_validate_names_the_symlink_and_the_line(toilbox: Any, write_config: Any,
                                                  tmp_path: Path) -> None:
    plant(tmp_path / "other" / "root")
    (tmp_path / "app").symlink_to(tmp_path / "other")
    config = write_config(f"""
        tasks:
          tmp:
            uses: cleanup.logs
            with: {{roots: ["{tmp_path}/app/root"], delete_after: 7d}}
    """)
    done = toilbox("-c", str(config), "validate")
    assert done.code == 3, done.err
    assert (f":6: tasks.tmp.with: roots[0]: {tmp_path}/app/root passes through the symlink "
            f"{tmp_path}/app (to {tmp_path}/other); refused unless root_symlinks names "
            f"{tmp_path}/app") in done.err
    assert "Traceback" not in done.err


def test_run_refuses_a_symlink_put_in_after_the_config_was_written(
    toilbox: Any, write_config: Any, tmp_path: Path
) -> None:
    plant(tmp_path / "app" / "root")
    config = write_config(f"""
        tasks:
          tmp: {{uses: cleanup.files, with: {{roots: ["{tmp_path}/app/root"], older_than: 7d}}}}
    """)
    assert toilbox("-c", str(config), "validate").code == 0
    plant(tmp_path / "other" / "root")
    before = fingerprint(tmp_path / "other")
    swap_for_symlink(tmp_path / "app", tmp_path / "other")
    # The daemon loaded its config before the swap; a one-shot run loads it after, and is
    # refused when the config loads: both ways, nothing is deleted.
    done = toilbox("-c", str(config), "run", "tmp")
    assert done.code == 3, done.out + done.err
    assert "refused unless root_symlinks names" in done.err
    assert fingerprint(tmp_path / "other") == before
