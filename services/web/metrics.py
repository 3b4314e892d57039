"""GET /metrics: the newest readings in Prometheus text, under NVIDIA dcgm-exporter's names.

A prometheus_client custom collector reads, at each scrape, what the web process already holds:
the live feed's newest tick of each host, the writer's status file and the database's size. No
SQL. The families are collected on the event loop, which owns the feed's state (a few ms for
a hub of 20 hosts of 8 GPUs); prometheus_client's formatting of them, about ten times that for
such a hub, runs in a thread so that websockets keep flowing meanwhile.

GPU metrics carry dcgm-exporter's default names, units and labels, so that DCGM Grafana
dashboards and alert rules work unchanged. A metric the GPU does not report (None) is left out,
never sent as 0; a GPU in error sends no GPU metric at all; a host whose newest tick is older
than /healthz allows (health.max_tick_age_s) sends none either, so that Prometheus marks its
series stale instead of repeating its last values. The pipeline's own metrics are pycudawatch_*.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from common.dbfile import database_bytes
from common.messages import GpuReading, Tick
from common.status import WriterStatus, read_status
from services.web.feed import LiveFeed
from services.web.health import max_tick_age_s

MIB = 1 << 20

# dcgm-exporter's labels: "gpu" (index), "UUID", "pci_bus_id", "device" ("nvidia<N>"),
# "modelName" and the host. dcgm-exporter has spelled the host label "Hostname" and later
# "hostname": both are sent, with the same value, so that rules written for either match.
DCGM_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "hostname")


@dataclass(frozen=True)
class DcgmField:
    """One dcgm-exporter metric: its name, help text and how to read it from a GpuReading."""

    name: str
    documentation: str
    value: Callable[[GpuReading], float | None]
    # False: sent untyped, see ENERGY below.
    gauge: bool = True


def _fb_used_mib(gpu: GpuReading) -> int | None:
    return None if gpu.mem_used_bytes is None else gpu.mem_used_bytes // MIB


def _fb_free_mib(gpu: GpuReading) -> int | None:
    if gpu.mem_total_bytes is None or gpu.mem_used_bytes is None:
        return None
    return max(0, gpu.mem_total_bytes - gpu.mem_used_bytes) // MIB


def _energy_mj(gpu: GpuReading) -> int | None:
    return None if gpu.energy_j is None else round(gpu.energy_j * 1000)


# dcgm-exporter declares DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION a counter and sends its samples
# under that name, with no "_total". prometheus_client cannot write that: it names the samples of
# every counter family NAME_total (and a counter family named NAME_total has the same samples),
# which would rename the series that dashboards and rules query. A gauge would be wrong (the value
# only grows), so the family is sent untyped ("# TYPE ... untyped"): the series name is exactly
# dcgm-exporter's, rate() and increase() work on it as on dcgm-exporter's (Prometheus stores no
# type with a sample), and `promtool check metrics` raises no "_total" finding for it, since its
# lint applies naming rules only to typed families. See tests/web/test_metrics.py for the rest of
# what promtool says about this exposition.
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"

DCGM_FIELDS: tuple[DcgmField, ...] = (
    DcgmField("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", lambda g: g.sm_clock_mhz),
    DcgmField(
        "DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", lambda g: g.mem_clock_mhz
    ),
    DcgmField("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda g: g.temp_c),
    DcgmField("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda g: g.power_w),
    DcgmField(ENERGY, "Total energy consumption since boot (in mJ).", _energy_mj, gauge=False),
    DcgmField("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda g: g.util_gpu_pct),
    DcgmField("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", lambda g: g.util_mem_pct),
    DcgmField("DCGM_FI_DEV_FB_FREE", "Frame buffer memory free (in MiB).", _fb_free_mib),
    DcgmField("DCGM_FI_DEV_FB_USED", "Frame buffer memory used (in MiB).", _fb_used_mib),
    DcgmField(
        "DCGM_FI_DEV_FAN_SPEED", "Fan speed for the device (in %, 0-100).", lambda g: g.fan_pct
    ),
)

METRICS_PATH = "/metrics"


def dcgm_labels(host: str, gpu: GpuReading) -> list[str]:
    """Return the values of DCGM_LABELS for one GPU of one host."""
    return [
        str(gpu.index),
        gpu.uuid,
        gpu.pci_bus_id or "",
        f"nvidia{gpu.index}",
        gpu.name,
        host,
        host,
    ]


def dcgm_families(ticks: Iterable[Tick]) -> list[Metric]:
    """Return one family per DCGM field with a sample per GPU that reported it, in every tick."""
    families: list[Metric] = [
        GaugeMetricFamily(field.name, field.documentation, labels=DCGM_LABELS)
        if field.gauge
        else UnknownMetricFamily(field.name, field.documentation, labels=DCGM_LABELS)
        for field in DCGM_FIELDS
    ]
    for tick in ticks:
        for gpu in tick.gpus:
            if gpu.error is not None:
                continue
            labels = dcgm_labels(tick.host, gpu)
            for field, family in zip(DCGM_FIELDS, families, strict=True):
                value = field.value(gpu)
                if value is not None:
                    family.add_metric(labels, value)
    return families


def pipeline_families(
    ticks: Iterable[Tick],
    writer: WriterStatus | None,
    web_malformed_messages: int,
    db_bytes: int | None,
    now_s: float,
) -> list[Metric]:
    """Return the pycudawatch_* families: what the sampler, writer and web report about themselves.

    The writer's counters come from its status file; they restart from 0 with the writer, which
    Prometheus's rate() and increase() take as a counter reset. Without a status file they are
    left out, like the database size without a database file.
    """
    published = CounterMetricFamily(
        "pycudawatch_ticks_published",
        "Ticks the host's sampler has published since it started (from its newest tick's seq).",
        labels=["host"],
    )
    age = GaugeMetricFamily(
        "pycudawatch_last_tick_age_seconds",
        "Seconds since the timestamp of the host's newest tick on the live feed.",
        labels=["host"],
    )
    for tick in ticks:
        published.add_metric([tick.host], tick.seq + 1)
        age.add_metric([tick.host], now_s - tick.ts)
    malformed = CounterMetricFamily(
        "pycudawatch_malformed_messages",
        "Messages dropped as malformed, by the process that received them.",
        labels=["process"],
    )
    malformed.add_metric(["web"], web_malformed_messages)
    families: list[Metric] = [published, age, malformed]
    if db_bytes is not None:
        families.append(
            GaugeMetricFamily(
                "pycudawatch_database_size_bytes",
                "Size of the SQLite database file and its write-ahead log.",
                value=db_bytes,
            )
        )
    if writer is None:
        return families
    malformed.add_metric(["writer"], writer.malformed_messages)
    families += [
        CounterMetricFamily(
            "pycudawatch_ticks_stored",
            "Ticks the writer has committed to the database since it started.",
            value=writer.stored_ticks,
        ),
        CounterMetricFamily(
            "pycudawatch_readings_stored",
            "GPU readings (one per GPU per tick) the writer has committed since it started.",
            value=writer.stored_readings,
        ),
        CounterMetricFamily(
            "pycudawatch_replay_gaps",
            "Gaps in a sampler's sequence numbers the writer has seen and asked to replay.",
            value=writer.replay_gaps,
        ),
        CounterMetricFamily(
            "pycudawatch_ticks_lost",
            "Ticks of a gap that no replay could fill: they are missing from the database.",
            value=writer.lost_ticks,
        ),
        CounterMetricFamily(
            "pycudawatch_ticks_dropped",
            "Ticks the writer dropped because its buffer was full while the database failed.",
            value=writer.dropped_ticks,
        ),
        GaugeMetricFamily(
            "pycudawatch_writer_buffered_ticks",
            "Ticks the writer holds that are not in the database yet.",
            value=writer.buffered_ticks,
        ),
        GaugeMetricFamily(
            "pycudawatch_writer_degraded",
            "1 while the writer cannot write to the database, else 0.",
            value=0 if writer.state == "ok" else 1,
        ),
        GaugeMetricFamily(
            "pycudawatch_writer_status_age_seconds",
            "Seconds since the writer last wrote its status; its counters are that old.",
            value=now_s - writer.updated_ts,
        ),
    ]
    if writer.last_flush_duration_s is not None:
        families.append(
            GaugeMetricFamily(
                "pycudawatch_writer_last_flush_duration_seconds",
                "Seconds the writer's last commit of a batch of ticks took.",
                value=writer.last_flush_duration_s,
            )
        )
    return families


class PipelineCollector(Collector):
    """Collect the DCGM and pycudawatch_* families from the live feed, status file and DB file."""

    def __init__(
        self,
        feed: LiveFeed,
        db_path: Path,
        clock: Callable[[], float] = time.time,
        writer_status: Callable[[], WriterStatus | None] | None = None,
    ) -> None:
        self._feed = feed
        self._db_path = db_path
        self._clock = clock
        self._writer_status = writer_status or (lambda: read_status(db_path))

    def collect(self) -> Iterator[Metric]:
        """Yield every family for one scrape."""
        now_s = self._clock()
        ticks = self._feed.latest_ticks()
        received_s = self._feed.received_s()  # judged on this clock: a host's may be off
        fresh = [
            tick
            for tick in ticks
            if now_s - received_s.get(tick.host, tick.ts) <= max_tick_age_s(tick.interval_s)
        ]
        yield from dcgm_families(fresh)
        yield from pipeline_families(
            ticks,
            self._writer_status(),
            self._feed.malformed_messages,
            database_bytes(self._db_path),
            now_s,
        )


def metrics_registry(
    feed: LiveFeed,
    db_path: Path,
    clock: Callable[[], float] = time.time,
    writer_status: Callable[[], WriterStatus | None] | None = None,
) -> CollectorRegistry:
    """Return a registry of its own (never prometheus_client's global one) for one app.

    writer_status gives the writer's newest status (by default, read from its file).
    """
    registry = CollectorRegistry()
    registry.register(PipelineCollector(feed, db_path, clock, writer_status))
    return registry


REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


class CollectedFamilies(Collector):
    """Families already collected, handed to generate_latest in another thread."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        """Yield the families collected before."""
        return iter(self._families)


async def metrics(request: web.Request) -> web.Response:
    """Answer the Prometheus text exposition of the app's registry."""
    # Collected here, not in the thread: the live feed changes its dicts on this loop only.
    families = CollectedFamilies(list(request.app[REGISTRY].collect()))
    body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, families)
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: CONTENT_TYPE_LATEST})
