"""Plugin code that another user could change is never run as root.

Real directories and files, owned by a real other user (nobody) or left writable by
others, with and without the sticky bit; the real `toilbox` command refusing them.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA
from toilbox import trust
from toilbox.errors import UntrustedPath

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another user")

NOBODY = pwd.getpwnam("nobody").pw_uid


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp_path/opt/plugins.d/faults.py, owned by root, 0755 and 0644, in a safe place."""
    plugins = tmp_path / "opt" / "plugins.d"
    plugins.mkdir(parents=True)
    shutil.copy(DATA / "faults_plugin.py", plugins / "faults.py")
    (plugins / "faults.py").chmod(0o644)
    for directory in (tmp_path / "opt", plugins):
        directory.chmod(0o755)
    assert trust.judge(plugins / "faults.py") is None, "the starting point is trusted"
    return plugins


def test_a_root_owned_private_path_is_trusted(tree):
    assert trust.judge(tree) is None
    assert trust.require(tree / "faults.py", "x") == (tree / "faults.py").resolve()


@pytest.mark.parametrize(
    ("change", "culprit", "reason"),
    [
        (lambda t: os.chown(t, NOBODY, -1), "plugins.d", "is owned by nobody (uid 65534)"),
        (lambda t: os.chown(t / "faults.py", NOBODY, -1), "faults.py", "is owned by nobody"),
        (lambda t: os.chown(t.parent, NOBODY, -1), "opt", "is owned by nobody"),
        (lambda t: t.chmod(0o777), "plugins.d", "is writable by group and others (mode 0777)"),
        (lambda t: t.chmod(0o775), "plugins.d", "is writable by its group (mode 0775)"),
        (lambda t: (t / "faults.py").chmod(0o646), "faults.py", "is writable by others (mode 0646)"),
        (lambda t: t.parent.chmod(0o757), "opt", "is writable by others (mode 0757)"),
        # A sticky directory on the way is refused too if someone else owns it.
        (lambda t: (t.parent.chmod(0o1777), os.chown(t.parent, NOBODY, -1)), "opt",
         "is owned by nobody"),
    ],
)
def test_what_another_user_could_change_is_refused(tree, change, culprit, reason):
    change(tree)
    target = tree / "faults.py"
    problem = trust.judge(target)
    assert problem is not None
    assert problem.startswith(str(next(p for p in [target, *target.parents] if p.name == culprit)))
    assert reason in problem
    with pytest.raises(UntrustedPath, match="refusing to load"):
        trust.require(target, "to load")


def test_a_root_owned_sticky_directory_on_the_way_is_accepted(tree):
    """The /tmp decision: sticky, root-owned, world-writable on the way is fine, because
    others can neither rename nor remove the root-owned entry below it."""
    tree.parent.chmod(0o1777)
    assert trust.judge(tree / "faults.py") is None


def test_a_sticky_directory_is_refused_as_the_target(tree):
    """Others could add files to it: as the plugin directory itself it is refused."""
    tree.chmod(0o1777)
    assert trust.judge(tree) == f"{tree} is writable by group and others (mode 1777)"


def test_a_symlink_is_judged_by_where_it_leads(tree, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    elsewhere.chmod(0o777)
    (elsewhere / "evil.py").write_text("")
    link = tree / "evil.py"
    link.symlink_to(elsewhere / "evil.py")
    problem = trust.judge(link)
    assert problem is not None
    assert problem.startswith(f"{elsewhere} is writable by group and others")


def test_a_path_that_does_not_exist_yet_is_judged_as_far_as_it_goes(tree):
    assert trust.judge(tree / "later" / "x.py") is None
    tree.chmod(0o777)
    assert trust.judge(tree / "later" / "x.py") is not None


def _config(tmp_path: Path, plugins: Path) -> Path:
    config = tmp_path / "toilbox.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nplugin_dirs: [{plugins}]\n"
                      "tasks:\n  a: {uses: check.faults}\n")
    return config


@pytest.mark.parametrize("command", [["validate"], ["plugins"], ["run", "a"], ["list"]])
def test_toilbox_refuses_an_unsafe_plugin_dir_as_root(toilbox, tree, tmp_path, command):
    marker = tmp_path / "ran"
    (tree / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('root ran me')\n")
    config = _config(tmp_path, tree)
    assert toilbox("-c", str(config), "validate").code == 0
    marker.unlink()
    tree.chmod(0o777)
    result = toilbox("-c", str(config), *command)
    assert result.code == 3
    assert result.err == (f"toilbox: error: refusing to load plugins as root from {tree}: it is"
                          " writable by group and others (mode 0777)\n")
    assert not marker.exists(), "the plugin code did not run"


def test_toilbox_refuses_a_plugin_file_owned_by_another_user(toilbox, tree, tmp_path):
    os.chown(tree / "faults.py", NOBODY, -1)
    result = toilbox("-c", str(_config(tmp_path, tree)), "plugins")
    assert result.code == 3
    assert result.err == (f"toilbox: error: refusing to load a plugin as root from"
                          f" {tree / 'faults.py'}: it is owned by nobody (uid 65534) (mode 0644)\n")


def test_plugin_files_are_compiled_from_source_never_from_a_cached_pyc(toilbox, tree, tmp_path):
    """A .pyc is one more file someone could swap: it is neither read nor written."""
    config = _config(tmp_path, tree)
    assert toilbox("-c", str(config), "run", "a").code == 0
    assert not (tree / "__pycache__").exists(), "no bytecode is written beside the plugin"
    marker = tmp_path / "ran"
    # A planted .pyc that the standard import machinery would prefer to the source.
    import importlib.util
    import py_compile

    evil = tmp_path / "evil_src.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('pyc ran')\n")
    cached = Path(importlib.util.cache_from_source(str(tree / "faults.py")))
    cached.parent.mkdir()
    py_compile.compile(str(evil), cfile=str(cached),
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert toilbox("-c", str(config), "run", "a").code == 0
    assert not marker.exists()


def test_a_fifo_named_like_a_plugin_is_reported_not_read(toilbox, tree, tmp_path):
    os.mkfifo(tree / "stuck.py", 0o644)
    result = toilbox("-c", str(_config(tmp_path, tree)), "plugins", "--json", timeout=30)
    assert result.code == 1, "listed as broken, and a broken plugin fails the listing"
    assert f'"error": "{tree / "stuck.py"} is not a regular file"' in result.out
