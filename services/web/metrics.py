"""GET /metrics: the newest readings in Prometheus text, under NVIDIA dcgm-exporter's names.

PipelineCollector builds prometheus_client metric families, at each scrape, from what the web
process already holds: the live feed's newest tick of each host, the writer's status file and the
database's size. No SQL (but to tell a host known only from the file from an unknown one, for
?host=). The families are collected on the event loop, which owns the feed's state (a few ms for
a hub of 20 hosts of 8 GPUs); prometheus_client's formatting of them, about ten times that for
such a hub, runs in a thread so that websockets keep flowing meanwhile.

GPU metrics carry dcgm-exporter's default names, units, types and labels, so that DCGM Grafana
dashboards and alert rules work unchanged; each MIG instance has its own series of the fields
dcgm-exporter sends per instance (memory, graphics activity), labelled as there. A metric the
GPU does not report (None) is left out, never sent as 0; a GPU in error sends no GPU metric at
all; a stale host (services/web/hosts.py, the same judgement as the API's, at the same moment)
sends none either, so that Prometheus marks its series stale instead of repeating its last
values. The pipeline's own metrics are pycudawatch_*.

GET /metrics?host=NAME answers one host alone, for Prometheus' multi-target exporter pattern (a
hub's hosts scraped as targets of their own, each with its own `instance`): that host's GPU
series and its own pycudawatch_* series (ticks published, last tick's age), none of the hub's
(writer, database, web), which the all-hosts answer carries once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from aiohttp import hdrs, web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from common.health import xid_text
from common.messages import GpuReading, Tick, XidEvent
from common.status import WriterStatus
from services.web.dcgm_fields import COUNTERS, DCGM_FIELDS, MIG_FIELDS, XID
from services.web.feed import LiveFeed
from services.web.gpu_reads import known_gpus_job
from services.web.keys import STORE
from services.web.params import ParamError, parse_hosts
from services.web.replies import error_reply

# dcgm-exporter's labels: "gpu" (index), "UUID", "pci_bus_id", "device" ("nvidia<N>"),
# "modelName" and the host. dcgm-exporter has spelled the host label "Hostname" and later
# "hostname": both are sent, with the same value, so that rules written for either match.
DCGM_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "hostname")


# dcgm-exporter declares its counters, DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION among them, counters
# and sends their samples under the exact name, with no "_total". prometheus_client's text
# exposition, however, writes every counter's HELP and TYPE lines as NAME_total, which would leave
# these samples untyped. exposition() writes them under the exact name. See
# tests/web/test_metrics.py for what `promtool check metrics` says about it.
_RENAMED_HEADERS = tuple(
    (f"\n# {kind} {name}_total ".encode(), f"\n# {kind} {name} ".encode())
    for name in COUNTERS
    for kind in ("HELP", "TYPE")
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


def dcgm_families(
    ticks: Iterable[Tick], last_xid: Callable[[str], XidEvent | None] = lambda uuid: None
) -> list[Metric]:
    """Return one family per DCGM field with a sample per GPU that reported it, in every tick.

    A MIG-enabled GPU's instances add their own samples of MIG_FIELDS, with the GPU's labels
    and GPU_I_PROFILE and GPU_I_ID, as dcgm-exporter labels them; the GPU's own have neither.
    last_xid: each GPU's last XID, for DCGM_FI_DEV_XID_ERRORS (no sample before the first).
    """
    families: list[Metric] = [
        Metric(field.name, field.documentation, "counter" if field.counter else "gauge")
        for field in DCGM_FIELDS
    ]
    xids = Metric(XID, "Value of the last XID error encountered.", "gauge")
    by_name = {family.name: family for family in families}
    for tick in ticks:
        for gpu in tick.gpus:
            if gpu.error is not None:
                continue
            labels = dict(zip(DCGM_LABELS, dcgm_labels(tick.host, gpu), strict=True))
            labels["DCGM_FI_DRIVER_VERSION"] = tick.driver_version or ""
            for field, family in zip(DCGM_FIELDS, families, strict=True):
                value = field.value(gpu)
                if value is not None:
                    family.add_sample(field.name, labels, value)
            instances = {}  # one series per GPU instance: its compute instances share it
            for mig in gpu.mig_devices:
                if mig.gpu_instance_id is not None and mig.profile is not None:
                    instances.setdefault(mig.gpu_instance_id, mig)
            for mig in instances.values():  # without GPU_I_ID or GPU_I_PROFILE: none to tell apart
                mig_labels = {
                    **labels,
                    "GPU_I_PROFILE": mig.profile,
                    "GPU_I_ID": str(mig.gpu_instance_id),
                }
                for name, read in MIG_FIELDS:
                    value = read(mig)
                    if value is not None:
                        by_name[name].add_sample(name, mig_labels, value)
            xid = last_xid(gpu.uuid)
            if xid is not None:
                text = {"err_code": str(xid.code), "err_msg": xid_text(xid.code)}
                xids.add_sample(XID, {**labels, **text}, xid.code)
    return [*families, xids]


def exposition(families: Iterable[Metric]) -> bytes:
    """Return the Prometheus text exposition of the families (prometheus_client's).

    The one change: the energy counter's HELP and TYPE lines name it as its samples are named,
    DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, as dcgm-exporter writes it. A line break inside a label
    value is written as the two characters \\n, so a real one begins a line of the format.
    """
    body = b"\n" + generate_latest(CollectedFamilies(list(families)))
    for written, renamed in _RENAMED_HEADERS:
        body = body.replace(written, renamed, 1)
    return body[1:]


def host_families(ticks: Iterable[Tick], now_s: float) -> list[Metric]:
    """Return the pycudawatch_* families of each host's sampler, from its newest tick."""
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
    return [published, age]


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
    malformed = CounterMetricFamily(
        "pycudawatch_malformed_messages",
        "Messages dropped as malformed, by the process that received them.",
        labels=["process"],
    )
    malformed.add_metric(["web"], web_malformed_messages)
    families: list[Metric] = [*host_families(ticks, now_s), malformed]
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


class PipelineCollector:
    """Collect the DCGM and pycudawatch_* families from the live feed, status file and DB file."""

    def __init__(
        self,
        feed: LiveFeed,
        writer_status: Callable[[], WriterStatus | None],
        db_bytes: Callable[[], int | None],
        clock: Callable[[], float] = time.time,
        extra: Sequence[Collector] = (),
    ) -> None:
        self._feed = feed
        self._writer_status = writer_status
        self._db_bytes = db_bytes
        self._clock = clock
        self._extra = tuple(extra)

    def live_hosts(self) -> set[str]:
        """Return the hosts of the live feed."""
        return {tick.host for tick in self._feed.latest_ticks()}

    def families(self, host: str | None = None) -> list[Metric]:
        """Return the families of one scrape: of every host (None), or of `host` alone."""
        now_s = self._clock()
        ticks = self._feed.latest_ticks()
        states = self._feed.host_states(now_s)
        if host is not None:
            ticks = [tick for tick in ticks if tick.host == host]
        families = dcgm_families(
            (tick for tick in ticks if not states[tick.host].stale), self._feed.health.last_xid
        )
        if host is not None:
            return families + host_families(ticks, now_s)
        extra = [family for collector in self._extra for family in collector.collect()]
        return (
            families
            + pipeline_families(
                ticks,
                self._writer_status(),
                self._feed.malformed_messages,
                self._db_bytes(),
                now_s,
            )
            + extra
        )


COLLECTOR = web.AppKey("metrics_collector", PipelineCollector)


class CollectedFamilies(Collector):
    """Families already collected, handed to generate_latest in another thread."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        """Yield the families collected before."""
        return iter(self._families)


async def metrics(request: web.Request) -> web.Response:
    """Answer the Prometheus text exposition of every host, or of ?host=NAME alone.

    A bad or repeated host is a 400, a host neither the live feed nor the file knows a 404 (so
    Prometheus marks that target down); a known host that has gone stale answers its
    pycudawatch_* series and no GPU series.
    """
    collector = request.app[COLLECTOR]
    host: str | None = None
    asked = request.query.getall("host", [])
    if len(asked) > 1:
        return error_reply(f"host is given {len(asked)} times; /metrics answers one host", 400)
    if asked:
        try:
            (host,) = parse_hosts(asked)
        except ParamError as error:
            return error_reply(str(error), 400)
        if host not in collector.live_hosts():
            _, known = await request.app[STORE].call(known_gpus_job(), (set(), set()))
            if host not in known:
                return error_reply(f"host={host!r} is not a known host", 404)
    # Collected here, not in the thread: the live feed changes its dicts on this loop only.
    families = collector.families(host)
    body = await asyncio.get_running_loop().run_in_executor(None, exposition, families)
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: CONTENT_TYPE_LATEST})
