"""The standard notifier: every destination is an apprise URL.

apprise speaks Slack, email, Teams, PagerDuty, webhooks (json://, form://) and 100 more,
so toilbox writes no clients of its own.  It is imported only when there is something
to send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

import toilbox

if TYPE_CHECKING:
    from toilbox.models import Notification

log = structlog.get_logger("toilbox_notify")


@toilbox.hookimpl
def notify(notification: Notification) -> None:
    if not notification.destinations:
        return
    import apprise

    sender = apprise.Apprise()
    for destination in notification.destinations:
        if not sender.add(destination):
            log.warning("notify.bad_destination", destination=_shown(destination))
    body = notification.body
    if notification.chain:
        body += "\n\n" + "\n".join(_chain_line(item) for item in notification.chain)
    if not sender.notify(title=notification.title, body=body):
        log.warning("notify.failed", task=notification.task, kind=notification.kind)


def _chain_line(item: dict[str, object]) -> str:
    if item.get("kind") == "notification":
        return f"- said: {item.get('title')}"
    return f"- {item.get('trigger')} run of {item.get('task')}: {str(item.get('status')).upper()}" \
           f" {item.get('summary')}"


def _shown(url: str) -> str:
    """A destination without its secrets (tokens live in the URL)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}/..."
