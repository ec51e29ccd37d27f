"""The one user-facing error family.

Every error a user can cause or fix is a ToilboxError with a one-line message and an
exit code.  ``cli.main`` is the only place that turns them into output; anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

# Exit codes follow the Nagios plugin convention so `toilbox run` drops into monitoring.
EXIT_OK = 0
EXIT_WARNING = 1
EXIT_CRITICAL = 2
EXIT_UNKNOWN = 3


class ToilboxError(Exception):
    """An error meant for the user: its message is the whole story."""

    exit_code = EXIT_UNKNOWN


class ConfigError(ToilboxError):
    """The config file is missing, malformed or invalid."""


class UsageError(ToilboxError):
    """The command line asks for something that does not exist (a task, a plugin)."""


class StateError(ToilboxError):
    """The state directory or store cannot be used (read-only, full, corrupt)."""


class RunFenced(StateError):  # noqa: N818 -- reads as the verdict users see
    """A fleet run lost its lease while it ran; another daemon took it over."""


class AlreadyRunning(ToilboxError):  # noqa: N818 -- reads as the verdict users see
    """The task (or daemon) lock is held by another process."""


class TaskFailed(Exception):  # noqa: N818 -- the public name reads as a verdict, by design
    """Raised by a task to fail now: retrying cannot help, so no retry is made.

    The run ends with ``error.type`` ``failed`` and ``str(exc)`` as its message: UNKNOWN
    for a check (it could not check), CRITICAL for a cleanup or a report (its work was
    not done).  Any other exception (or a timeout) is taken as transient and retried.
    """


class UntrustedPath(ToilboxError):  # noqa: N818 -- reads as the verdict users see
    """A file or directory that another user could change, refused before it is used."""
