"""The alerts in /metrics: firing alerts per rule and severity, one series per alert, and the
notifications' delivery counts, from the alert watch's newest read (no query per scrape)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.alerts.rules import BUILT_IN_SEVERITY
from services.web.alert_watch import AlertWatch


class AlertCollector(Collector):
    """Collect pycudawatch_alerts_firing, pycudawatch_alert and pycudawatch_notifications."""

    def __init__(self, watch: AlertWatch) -> None:
        self._watch = watch

    def collect(self) -> Iterator[Metric]:
        """Yield the families; nothing before the first read of the alerts."""
        now = self._watch.now
        if now is None:
            return
        firing = GaugeMetricFamily(
            "pycudawatch_alerts_firing",
            "Alerts firing now, per rule and severity (0 for a built-in rule with none).",
            labels=["rule", "severity"],
        )
        counts = {(rule, severity): 0 for rule, severity in BUILT_IN_SEVERITY.items()}
        for alert in now.active:
            if alert.state == "firing":
                key = (alert.rule, alert.severity)
                counts[key] = counts.get(key, 0) + 1
        for (rule, severity), count in sorted(counts.items()):
            firing.add_metric([rule, severity], count)
        yield firing
        each = GaugeMetricFamily(
            "pycudawatch_alert",
            "1 for each alert pending or firing now, with its rule, severity, state, host and"
            " GPU (empty for a host's or the writer's alert); silenced 1 when a silence covers it.",
            labels=["rule", "severity", "state", "Hostname", "gpu", "UUID", "silenced"],
        )
        for alert in now.active:
            gpu = "" if alert.gpu_index is None else str(alert.gpu_index)
            silenced = "0" if alert.silenced_until_ts is None else "1"
            labels = [
                alert.rule,
                alert.severity,
                alert.state,
                alert.host or "",
                gpu,
                alert.gpu_uuid or "",
                silenced,
            ]
            each.add_metric(labels, 1)
        yield each
        deliveries = now.deliveries
        sent = GaugeMetricFamily(
            "pycudawatch_notifications",
            "Notification deliveries in the database (one per message and target) by state;"
            " retried: sent after more than one try (among sent).",
            labels=["state"],
        )
        for state, count in (
            ("queued", deliveries.queued),
            ("sent", deliveries.sent),
            ("retried", deliveries.retried),
            ("given_up", deliveries.given_up),
            ("silenced", deliveries.silenced),
        ):
            sent.add_metric([state], count)
        yield sent
