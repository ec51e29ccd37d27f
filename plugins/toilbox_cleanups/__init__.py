"""The standard cleanups, registered through the `toilbox` entry-point group.

The task types live in `toilbox_cleanups.tasks`, which the package's metadata declares
(the `toilbox.task_types` entry-point group in pyproject.toml): it is imported only when
a cleanup is validated or run.  Importing this package must stay cheap.
"""
