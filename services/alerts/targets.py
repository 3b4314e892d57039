"""Where notifications go: Apprise URLs, each with the severities it takes; secrets kept inside.

Apprise speaks to Slack, Discord, Teams, Telegram, ntfy, Gotify, Matrix, PagerDuty, e-mail,
JSON webhooks and many more, each by a URL: this module holds no per-service code. A target is
known outside this module only by its id (a hash of its URL) and its shown form, its service and
number ("JSON target 2"): the URL itself, which holds the secrets, is in no log line, stored row,
API answer or page.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import apprise

from common.config import ALERT_SEVERITIES, NotifyTarget

log = logging.getLogger(__name__)

TEST_SEVERITY = "test"  # a test notification goes to every target
_NOTIFY_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "info": apprise.NotifyType.INFO,
    TEST_SEVERITY: apprise.NotifyType.INFO,
}


class TargetError(ValueError):
    """A target cannot be used; the text names where it came from, never its secrets."""


@dataclass(frozen=True)
class Target:
    """One place notifications go."""

    target_id: str
    shown: str  # the URL with its secrets starred
    severities: tuple[str, ...]
    plugin: apprise.NotifyBase

    def takes(self, severity: str) -> bool:
        """Return whether a notification of this severity goes here."""
        return severity == TEST_SEVERITY or severity in self.severities


def _target(plugin: apprise.NotifyBase, severities: tuple[str, ...], number: int) -> Target:
    """Make target `number` (its place in PCW_NOTIFY_URLS, then in PCW_NOTIFY_CONFIG).

    It is shown by its service and number alone: a URL's path or host can be its secret (a
    webhook's token, an ntfy topic, Slack's tokens), which no privacy form can tell apart.
    """
    target_id = hashlib.sha256(plugin.url().encode()).hexdigest()[:16]
    service = str(getattr(plugin, "service_name", "") or type(plugin).__name__)
    return Target(target_id, f"{service} target {number}", severities, plugin)


class Targets:
    """Every configured target, by id."""

    def __init__(self, targets: list[Target]) -> None:
        self.by_id = {target.target_id: target for target in targets}

    def __len__(self) -> int:
        return len(self.by_id)

    def taking(self, severity: str) -> list[Target]:
        """Return the targets that take a severity."""
        return [target for target in self.by_id.values() if target.takes(severity)]

    def send(self, target_id: str, title: str, body: str, severity: str, resolved: bool) -> bool:
        """Send one message to one target; return whether it took it."""
        target = self.by_id[target_id]
        sender = apprise.Apprise()
        sender.add(target.plugin)
        notify_type = apprise.NotifyType.SUCCESS if resolved else _NOTIFY_TYPES[severity]
        # the body is plain text: said so, an e-mail keeps its lines and its key on the last one
        text = apprise.NotifyFormat.TEXT
        return bool(
            sender.notify(body=body, title=title, notify_type=notify_type, body_format=text)
        )


def load_targets(entries: tuple[NotifyTarget, ...], config_file: Path | None) -> Targets:
    """Build the targets of PCW_NOTIFY_URLS and PCW_NOTIFY_CONFIG; raise TargetError."""
    # Apprise's own lines can carry a target's address and say what our log says better.
    logging.getLogger("apprise").setLevel(logging.CRITICAL)
    targets = []
    for number, entry in enumerate(entries, start=1):
        plugin = apprise.Apprise.instantiate(entry.url)
        if plugin is None:
            scheme = entry.url.split("://", 1)[0][:16]
            raise TargetError(
                f"PCW_NOTIFY_URLS entry {number} ({scheme}://...) is not a URL Apprise can send to"
            )
        targets.append(_target(plugin, entry.severities, number))
    if config_file is not None:
        config = apprise.AppriseConfig()
        if not config.add(str(config_file)):
            raise TargetError(f"PCW_NOTIFY_CONFIG={str(config_file)!r} cannot be read")
        loaded = apprise.Apprise()
        loaded.add(config)
        servers = list(loaded)  # reads and parses the file
        if not servers:
            raise TargetError(
                f"PCW_NOTIFY_CONFIG={str(config_file)!r} holds no URL Apprise can send to"
            )
        for plugin in servers:
            tags = {str(tag).lower() for tag in plugin.tags}
            severities = tuple(s for s in ALERT_SEVERITIES if s in tags) or ALERT_SEVERITIES
            targets.append(_target(plugin, severities, len(targets) + 1))
    return Targets(targets)
