"""The public shapes of the API and the websocket, declared once as typed structs.

- Handlers build these and only encode them; the OpenAPI document (services/web/openapi.py)
  is generated from the same types, so the two cannot drift apart.
- One GPU is `Gpu` wherever it is sent: in /api/v1/gpus and in each websocket tick.
- Times are UTC epoch seconds; a field the server cannot know is null, never absent.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from common.health import reason_flags
from common.messages import GpuHealth, GpuLimits, GpuProcess, MigDevice
from common.metrics import METRICS

Number = float | None

# A reading as the API shows it: {"ts", "error", <each metric>}, metrics in the table's order.
Reading = msgspec.defstruct(
    "Reading",
    [("ts", float), ("error", str | None)]
    + [(metric.name, int | None if metric.sql_type == "INTEGER" else Number) for metric in METRICS],
    module=__name__,
)
Reading.__doc__ = "A GPU's reading: its time, its error (null when it read fine), each metric."


class Process(GpuProcess, kw_only=True, frozen=True):
    """A process on a GPU, and since when (UTC epoch s) it has been on it without a break.

    since_ts is null only over the websocket, for a process the live feed cannot date alone.
    """

    since_ts: float | None


class Idle(msgspec.Struct):
    """The GPU has been idle but allocated since since_ts; processes: who holds it."""

    since_ts: float
    processes: list[Process]


class HealthReading(GpuHealth, array_like=False, kw_only=True, frozen=True):
    """A GPU's health in its newest live reading: the sampler's fields (null: the GPU cannot
    tell), and clock_event_flags, the named bits of clocks_event_reasons."""

    clock_event_flags: dict[str, bool] | None


def health_shape(health: GpuHealth) -> HealthReading:
    """Return the API's shape of a reading's health."""
    fields = msgspec.structs.asdict(health)
    return HealthReading(**fields, clock_event_flags=reason_flags(health.clocks_event_reasons))


class Limits(GpuLimits, array_like=False, frozen=True):
    """What does not change while the GPU's sampler runs (null: the GPU cannot tell)."""


def limits_shape(limits: GpuLimits | None) -> Limits | None:
    """Return the API's shape of a GPU's limits."""
    return None if limits is None else Limits(**msgspec.structs.asdict(limits))


class Finding(msgspec.Struct):
    """A health problem: its kind, in words, and since when (UTC epoch s) the live feed has
    seen it without a break (an XID: when it was read).

    kind: throttled, xid, remap_pending, remap_failure, retirement_pending, ecc_uncorrected,
    pcie_link or nvlink_down.
    """

    kind: str
    text: str
    since_ts: float


class Xid(msgspec.Struct):
    """A GPU's last XID error, from the live feed or the file: when, its code, in words."""

    ts: float
    code: int
    text: str


class Gpu(msgspec.Struct):
    """One GPU: identity, newest reading, staleness, processes, MIG devices, the idle flag and
    its health.

    stale: the host stopped ticking, or the GPU left its host's ticks; host_stale and
    host_last_seen_ts: its host's own. processes: null when the sampler cannot list them.
    health and findings come from the live feed only: null (findings empty) for a GPU the file
    alone answers for; cuda_version and limits are stored with its identity, last_xid and an XID
    finding of the last day come from the file too.
    """

    host: str
    gpu_index: int
    gpu_uuid: str
    gpu_name: str
    pci_bus_id: str | None
    driver_version: str | None
    first_ts: float
    last_ts: float
    latest: Reading | None
    error_since_ts: float | None
    interval_s: float | None
    stale: bool
    stale_since_ts: float | None
    host_stale: bool
    host_last_seen_ts: float | None
    processes: list[Process] | None
    mig_devices: list[MigDevice]
    idle: Idle | None
    cuda_version: str | None
    health: HealthReading | None
    limits: Limits | None
    findings: list[Finding]
    last_xid: Xid | None


class GpusReply(msgspec.Struct):
    """GET /api/v1/gpus."""

    gpus: list[Gpu]
    simulated: bool
    interval_s: float
    idle_util_pct: float
    idle_after_s: float


class Host(msgspec.Struct):
    """One host: when last seen, whether stale and since when, its interval and GPU count."""

    host: str
    last_seen_ts: float | None
    stale: bool
    stale_since_ts: float | None
    interval_s: float
    gpu_count: int


class HostsReply(msgspec.Struct):
    """GET /api/v1/hosts."""

    hosts: list[Host]


class Bucket(msgspec.Struct):
    """One bucket of a series: its start, how many readings, their means and maxima per metric.

    mean and max are null for a bucket with no reading (a gap).
    """

    ts: float
    count: int
    mean: dict[str, float | None] | None
    max: dict[str, float | None] | None


class Series(msgspec.Struct):
    """One GPU's series of buckets."""

    gpu_uuid: str
    host: str
    gpu_index: int
    gpu_name: str
    # a JSON array of Bucket, encoded by SQLite
    buckets: Annotated[
        msgspec.Raw,
        msgspec.Meta(
            extra_json_schema={"type": "array", "items": {"$ref": "#/components/schemas/Bucket"}}
        ),
    ]


class HistoryReply(msgspec.Struct):
    """GET /api/v1/history?shape=rows: one object per bucket (deprecated, kept for a release)."""

    from_: float = msgspec.field(name="from")
    to: float
    step_s: int
    series: list[Series]


_COUNTS_SCHEMA = {"type": "array", "items": {"type": "integer"}}
_VALUES_SCHEMA = {
    "type": "object",
    "additionalProperties": {
        "type": "array",
        "items": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    },
}


class ColumnSeries(msgspec.Struct):
    """One GPU's buckets as columns, each array in the order of HistoryColumnsReply.ts.

    count: readings per bucket (0: a gap). mean and max: {metric: [value per bucket]}, null
    where the bucket holds no value of the metric (every metric in a gap). A mean is rounded to
    what the metric carries: whole numbers for integer metrics (%, C, MHz, bytes, kB/s), two
    decimals for watts and joules. The arrays are encoded by SQLite.
    """

    gpu_uuid: str
    host: str
    gpu_index: int
    gpu_name: str
    count: Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema=_COUNTS_SCHEMA)]
    mean: Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema=_VALUES_SCHEMA)]
    max: Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema=_VALUES_SCHEMA)]


class HistoryColumnsReply(msgspec.Struct):
    """GET /api/v1/history: the bucket starts once (`ts`, UTC epoch seconds, step_s apart),
    then each GPU's columns."""

    from_: float = msgspec.field(name="from")
    to: float
    step_s: int
    ts: list[int]
    series: list[ColumnSeries]


class ProcessesReply(msgspec.Struct):
    """GET /api/v1/processes: ts null when no tick; processes null when the list is unknown."""

    gpu_uuid: str
    ts: float | None
    processes: list[Process] | None


class UsageRow(msgspec.Struct):
    """One user, process or container (key null: unknown) and the GPU time it used."""

    key: str | None
    gpu_hours: float
    gpu_mem_gib_hours: float
    gpus: list[str]


class UsageReply(msgspec.Struct):
    """GET /api/v1/usage."""

    from_: float = msgspec.field(name="from")
    to: float
    by: Literal["user", "process", "container"]
    rows: list[UsageRow]


class GpuEnergy(msgspec.Struct):
    """One GPU's energy over the range; kwh and cost null when no pair of readings could say."""

    host: str
    gpu_uuid: str
    gpu_index: int
    gpu_name: str
    kwh: float | None
    source: Literal["counter", "power", "mixed", "none"]
    cost: float | None


class HostEnergy(msgspec.Struct):
    """One host's energy over the range."""

    host: str
    kwh: float | None
    cost: float | None


class Event(msgspec.Struct):
    """One health event of one GPU.

    kind: xid (code: the XID), ecc_uncorrected (new uncorrected ECC errors), or a finding that
    started or ended: throttling_started/_stopped, link_downgraded/link_restored,
    remap_pending/remap_cleared, remap_failure/remap_failure_cleared,
    retirement_pending/retirement_cleared, nvlink_down/nvlink_restored. text: in words.
    """

    ts: float
    gpu_uuid: str
    host: str
    gpu_index: int
    kind: str
    code: int | None
    text: str


class HealthCounts(msgspec.Struct):
    """What one GPU counted over the range; null where its health rows never knew the counter.

    ECC errors: the aggregate counters where the GPU keeps them, else the volatile ones; the
    violation times: seconds the clocks were held back by power or heat (NVML's counters).
    """

    gpu_uuid: str
    host: str
    gpu_index: int
    xids: int
    ecc_corrected: int | None
    ecc_uncorrected: int | None
    thermal_violation_s: float | None
    power_violation_s: float | None
    pcie_replays: int | None


class EventsReply(msgspec.Struct):
    """GET /api/v1/events: the events in time order (the newest 10,000: truncated says some
    older ones were left out) and each asked GPU's counts."""

    from_: float = msgspec.field(name="from")
    to: float
    events: list[Event]
    truncated: bool
    counts: list[HealthCounts]


class EnergyReply(msgspec.Struct):
    """GET /api/v1/energy; cost null without a price."""

    from_: float = msgspec.field(name="from")
    to: float
    price_per_kwh: float | None
    currency: str
    gpus: list[GpuEnergy]
    hosts: list[HostEnergy]
    total_kwh: float | None
    total_cost: float | None


class WriterHealth(msgspec.Struct):
    """The writer as its status reports it; every field null before it has reported."""

    state: str | None
    updated_age_s: float | None
    last_error: str | None
    buffered_ticks: int | None
    stored_ticks: int | None
    stored_readings: int | None
    malformed_messages: int | None
    dropped_ticks: int | None
    replay_gaps: int | None
    lost_ticks: int | None
    buffered_bytes: int | None
    buffer_limit_bytes: int | None
    db_reopened_ts: float | None


class GpuError(msgspec.Struct, frozen=True):
    """A GPU whose newest reading is in error, and since when."""

    host: str
    gpu_index: int
    gpu_uuid: str
    gpu_name: str
    error: str
    since_ts: float | None


class StaleHost(msgspec.Struct):
    """A host that stopped ticking."""

    host: str
    last_seen_ts: float | None
    stale_since_ts: float | None
    interval_s: float


class Health(msgspec.Struct):
    """GET /healthz (200 when status is "ok", else 503); problems says why."""

    status: Literal["ok", "degraded", "down"]
    last_tick_age_s: float | None
    last_tick_source: Literal["live", "db"] | None
    writer: WriterHealth
    db_bytes: int | None
    malformed_messages: int
    websocket_clients: int
    internal_errors: int
    gpu_errors: list[GpuError]
    stale_hosts: list[StaleHost]
    problems: list[str]


class ErrorBody(msgspec.Struct, forbid_unknown_fields=True):
    """Every error of the API: {"error": what went wrong}, and nothing else."""

    error: str


class LiveTick(msgspec.Struct):
    """One host's tick as the websocket sends it: the tick's fields, its GPUs as `Gpu`s."""

    host: str
    sampler_id: str
    seq: int
    ts: float
    interval_s: float
    driver_version: str | None
    error: str | None
    gpus: list[Gpu]
    cuda_version: str | None = None


class TickMessage(msgspec.Struct, tag="tick", tag_field="type"):
    """A websocket message: a host's new tick and its host's state."""

    tick: LiveTick
    host_state: Host


class SnapshotMessage(msgspec.Struct, tag="snapshot", tag_field="type"):
    """The websocket's first message: the newest tick of each host, and every live host."""

    ticks: list[LiveTick]
    hosts: list[Host]


class HostsMessage(msgspec.Struct, tag="hosts", tag_field="type"):
    """A websocket message: hosts whose staleness changed between ticks."""

    hosts: list[Host]


class Alert(msgspec.Struct):
    """An alert pending or firing now (pending: its condition holds, not yet for its rule's
    time). key is `rule|subject`; a GPU's alerts carry its identity, a host's its host only;
    silenced_until_ts: a silence in force covers it (its notifications are not sent)."""

    key: str
    rule: str
    severity: Literal["critical", "warning", "info"]
    state: Literal["pending", "firing"]
    host: str | None
    gpu_uuid: str | None
    gpu_index: int | None
    gpu_name: str | None
    since_ts: float
    fired_ts: float | None
    last_ts: float
    value: float | None
    message: str
    silenced_until_ts: float | None


class AlertEvent(msgspec.Struct):
    """A stored transition of an alert: it started firing, or resolved, at ts."""

    event_id: int
    ts: float
    state: Literal["firing", "resolved"]
    key: str
    rule: str
    severity: Literal["critical", "warning", "info"]
    host: str | None
    gpu_uuid: str | None
    gpu_index: int | None
    gpu_name: str | None
    fired_ts: float
    value: float | None
    message: str


class Silence(msgspec.Struct):
    """A silence: the alerts it covers (each null field matches any) stay unsent until until_ts."""

    silence_id: int
    key: str | None
    rule: str | None
    host: str | None
    gpu_uuid: str | None
    until_ts: float
    created_ts: float
    created_by: str | None
    comment: str | None


class Deliveries(msgspec.Struct):
    """Notifications per target in the file: waiting to be sent (queued), sent, sent after a
    retry (retried, among sent), given up after PCW_NOTIFY_GIVE_UP_S, silenced; targets: how
    many targets are set."""

    targets: int
    queued: int
    sent: int
    retried: int
    given_up: int
    silenced: int


class AlertsReply(msgspec.Struct):
    """GET /api/v1/alerts: the alerts pending or firing now, the transitions in the range
    (newest first, at most 1,000: truncated says some went), the silences in force and the
    notifications' delivery counts."""

    from_ts: float
    to_ts: float
    active: list[Alert]
    events: list[AlertEvent]
    truncated: bool
    silences: list[Silence]
    deliveries: Deliveries


class SilenceRequest(msgspec.Struct, forbid_unknown_fields=True):
    """POST /api/v1/silences: silence one alert (key) or every alert of a rule, host or GPU
    (at least one of them) for duration_s seconds."""

    duration_s: float
    key: str | None = None
    rule: str | None = None
    host: str | None = None
    gpu: str | None = None
    comment: str | None = None


class SilenceEnded(msgspec.Struct):
    """POST /api/v1/silences/{silence_id}/end: the silence, ended now."""

    silence_id: int
    ended: bool


class TestNotificationReply(msgspec.Struct):
    """POST /api/v1/notifications/test: the stored test message, sent to every target."""

    notification_id: int
    targets: int


class AlertsMessage(msgspec.Struct, tag="alerts", tag_field="type"):
    """A websocket message, on connect and whenever they change: the alerts pending or firing
    now, the silences in force and the delivery counts."""

    active: list[Alert]
    silences: list[Silence]
    deliveries: Deliveries
