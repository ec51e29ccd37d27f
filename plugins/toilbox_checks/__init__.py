"""The standard checks, registered through the `toilbox` entry-point group.

Importing this package must stay cheap (it happens on every start-up): a check that
needs a heavy library (httpx, cryptography, psutil) imports it inside its task function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import toilbox
from toilbox_checks import command, disk, file_age, http_check, process, tcp, tls

if TYPE_CHECKING:
    from toilbox.plugins import RegisterTaskType


@toilbox.hookimpl
def register_task_types(register: RegisterTaskType) -> None:
    register("check.command", command.run, params=command.Params)
    register("check.disk", disk.run, params=disk.Params)
    register("check.http", http_check.run, params=http_check.Params)
    register("check.tcp", tcp.run, params=tcp.Params)
    register("check.tls", tls.run, params=tls.Params)
    register("check.process", process.run, params=process.Params)
    register("check.file-age", file_age.run, params=file_age.Params)
