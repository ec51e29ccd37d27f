"""The standard reports, registered through the `toilbox` entry-point group.

The task type lives in `toilbox_reports.tasks`, which the package's metadata declares
(the `toilbox.task_types` entry-point group in pyproject.toml): it is imported only when
a report is validated or run.  Importing this package must stay cheap.
"""
