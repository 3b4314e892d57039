"""Settings from the PCW_* environment, parsed once at start into a frozen Config.

- Each setting is declared once, as a field of Config made by `setting()`: its variable, default,
  parser, the processes that read it, and the text of the settings reference.
- `load_config` parses every declared variable; a bad value raises ConfigError naming it.
- `python -m common.settings_doc` writes docs/settings.md from the declarations.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SOURCES = ("nvml", "simulated", "none")
VACUUM_MODES = ("incremental", "full")
ZMQ_TRANSPORTS = ("tcp://", "ipc://", "inproc://")

SAMPLER, WRITER, WEB = "sampler", "writer", "web"
ALL_PROCESSES = (SAMPLER, WRITER, WEB)


class ConfigError(ValueError):
    """A setting has a value that is not allowed; the message names variable, value and rule."""

    def __init__(self, variable: str, value: str, allowed: str) -> None:
        super().__init__(f"{variable}={value!r} is not allowed: {allowed}")
        self.variable = variable


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper() if allowed is LOG_LEVELS else text.strip().lower()
        if value not in allowed:
            raise ValueError(f"one of {', '.join(allowed)}")
        return value

    return parse


def _number(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        bounds = f"{low:d} to {high:d}" if kind is int else f"{low:g} to {high:g}"
        rule = f"{'an integer' if kind is int else 'a number'} from {bounds}"
        try:
            value = kind(text.strip())
        except ValueError:
            raise ValueError(rule) from None
        if not low <= value <= high:  # also rejects nan
            raise ValueError(rule)
        return value

    return parse


def _endpoint(text: str) -> str:
    value = text.strip()
    rest = value.split("://", 1)[-1]
    port = rest.rpartition(":")[2]
    if (
        not value.startswith(ZMQ_TRANSPORTS)
        or not rest
        # tcp needs a port below 65535: the replay socket takes the next one
        or (value.startswith("tcp://") and not (port.isdigit() and 0 < int(port) < 65535))
    ):
        raise ValueError(
            "a ZeroMQ endpoint such as tcp://127.0.0.1:5556 (port 1-65534) or ipc:///tmp/pcw.sock"
        )
    return value


def _endpoints(text: str) -> tuple[str, ...]:
    parts = [part for part in (p.strip() for p in text.split(",")) if part]
    if not parts:
        raise ValueError("a comma-separated list of ZeroMQ endpoints")
    return tuple(dict.fromkeys(_endpoint(part) for part in parts))


def _non_empty(text: str) -> str:
    value = text.strip()
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("a non-empty name without spaces")
    return value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(";")) if text.strip() else ()
    if any(not name or len(name) > 96 or not name.isprintable() for name in names):
        raise ValueError("';'-separated names, each 1 to 96 printable characters")
    return names


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("a file path")
    return Path(text.strip())


def _existing(kind: str) -> Callable[[str], Path]:
    """Return a parser of a path that must name an existing file or folder (kind)."""

    def parse(text: str) -> Path:
        path = _path(text)
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            raise ValueError(f"an existing {kind}")
        return path

    return parse


def _optional(parser: Callable[[str], object]) -> Callable[[str], object]:
    """Wrap parser so that an empty value means "not set" (None)."""

    def parse(text: str) -> object:
        return None if not text.strip() else parser(text)

    return parse


def _or_empty(parser: Callable[[str], str]) -> Callable[[str], str]:
    """Wrap parser so that an empty value means "not set" (an empty string)."""

    def parse(text: str) -> str:
        return "" if not text.strip() else parser(text)

    return parse


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("1 or 0 (also true/false, yes/no, on/off)")


def _indexes(text: str) -> tuple[int, ...]:
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    if any(not part.isdigit() or int(part) > 63 for part in parts):
        raise ValueError("comma-separated GPU indexes from 0 to 63")
    return tuple(sorted({int(part) for part in parts}))


def _label(text: str) -> str:
    value = text.strip()
    if len(value) > 16 or not value.isprintable():
        raise ValueError("at most 16 printable characters")
    return value


BUILT_IN_ALERTS = (
    "gpu_error", "xid", "temperature", "throttling", "ecc", "pcie_link", "host_stale",
    "writer_degraded", "idle_allocated",
)  # fmt: skip
ALERT_SEVERITIES = ("critical", "warning", "info")


def _alert_names(text: str) -> frozenset[str]:
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(BUILT_IN_ALERTS))
    if unknown:
        raise ValueError(f"comma-separated built-in rules from {', '.join(BUILT_IN_ALERTS)}")
    return frozenset(names)


class NotifyTarget(NamedTuple):
    """One notification target: the severities it takes and its Apprise URL (a secret)."""

    severities: tuple[str, ...]
    url: str


def _notify_targets(text: str) -> tuple[NotifyTarget, ...]:
    """Parse whitespace-separated `[severity[,severity]=]URL` entries; never echo a URL."""
    targets = []
    for number, entry in enumerate(text.split(), start=1):
        head, sep, rest = entry.partition("=")
        tags = tuple(tag.strip().lower() for tag in head.split(",")) if sep else ()
        if sep and "://" not in head and all(tag in ALERT_SEVERITIES for tag in tags):
            severities, url = tags, rest
        elif sep and "://" not in head:
            raise ValueError(
                f"entry {number}: what comes before its first '=' is neither a URL nor a list"
                f" of severities ({', '.join(ALERT_SEVERITIES)})"
            )
        else:
            severities, url = ALERT_SEVERITIES, entry
        if "://" not in url:
            raise ValueError(f"entry {number} is not a URL such as json://host/path")
        targets.append(NotifyTarget(severities, url))
    return tuple(targets)


class Setting(NamedTuple):
    """One PCW_* variable: how it is read, who reads it, and its line in the settings reference."""

    variable: str
    default: str | None  # None: derived at load time (see load_config)
    parser: Callable[[str], Any]
    readers: tuple[str, ...]
    doc: str
    shown_default: str  # the default as the settings reference shows it


_SETTING = "setting"


def setting(
    variable: str,
    default: str | None,
    parser: Callable[[str], Any],
    readers: tuple[str, ...],
    doc: str,
    shown_default: str | None = None,
) -> Any:
    """Declare the Config field read from variable; its default is the parsed default text."""
    shown = shown_default or (default if default else "(none)")
    declared = Setting(variable, default, parser, readers, doc, shown)
    if default is None:
        return field(metadata={_SETTING: declared})
    return field(default=parser(default), metadata={_SETTING: declared})


@dataclass(frozen=True, kw_only=True)
class Config:
    """Every setting of every process; each field's name carries its unit."""

    source: str = setting(
        "PCW_SOURCE",
        "nvml",
        _choice(SOURCES),
        (SAMPLER, WEB),
        "`nvml`: real GPUs. `simulated`: demo GPUs for machines without one; the dashboard says so"
        " plainly. `none`: this machine's GPUs are not read (a hub without GPUs); the sampler"
        " publishes nothing and waits to be stopped, and the writer and web read the samplers in"
        " `PCW_SUBSCRIBE`",
    )
    sim_gpus: int = setting(
        "PCW_SIM_GPUS", "2", _number(int, 1, 64), (SAMPLER,), "number of simulated GPUs (1-64)"
    )
    sim_names: tuple[str, ...] = setting(
        "PCW_SIM_NAMES",
        "",
        _names,
        (SAMPLER,),
        "`;`-separated names for the simulated GPUs, in index order",
        "(model names)",
    )
    interval_s: float = setting(
        "PCW_INTERVAL_S",
        "60",
        _number(float, 0.1, 86400),
        ALL_PROCESSES,
        "seconds between ticks; a float, at least 0.1",
    )
    db_path: Path = setting(
        "PCW_DB_PATH",
        "db/gpu_stats.db",
        _path,
        (WRITER, WEB),
        "the SQLite file (relative to the working directory); a path that cannot be this"
        " project's database (a folder, a device, a corrupt or foreign file, a read-only file"
        " system, a newer schema) stops the writer at start with one line naming it and why,"
        " exit status 2",
    )
    retention_days: float = setting(
        "PCW_RETENTION_DAYS",
        "30",
        _number(float, 0.001, 36500),
        (WRITER,),
        "a float; rows older than this are purged",
    )
    maintenance_s: float = setting(
        "PCW_MAINTENANCE_S",
        "3600",
        _number(float, 1, 7 * 86400),
        (WRITER,),
        "seconds between purge runs, aligned to multiples of it (the top of the hour by default)",
    )
    vacuum: str = setting(
        "PCW_VACUUM",
        "incremental",
        _choice(VACUUM_MODES),
        (WRITER,),
        "how each purge run gives the freed space back: `incremental` moves only the pages the"
        " purge freed; `full` rewrites the whole file with VACUUM every run",
    )
    pub_endpoint: str = setting(
        "PCW_PUB_ENDPOINT",
        "tcp://127.0.0.1:5556",
        _endpoint,
        (SAMPLER,),
        "where the sampler publishes; it answers replays on the next port. Keep both ports"
        " below the kernel's ephemeral range (from 32768 on Linux): a writer or web process on"
        " the same machine that retries a stopped sampler's port in that range can be given it"
        " as its own source port, connect to itself and hold the port",
    )
    replay_ticks: int = setting(
        "PCW_REPLAY_TICKS",
        "1440",
        _number(int, 1, 10_000_000),
        (SAMPLER,),
        "ticks the sampler keeps to replay to a writer that missed them (a day at 60 s), as"
        " long as they fit in `PCW_REPLAY_BYTES`",
    )
    replay_bytes: int = setting(
        "PCW_REPLAY_BYTES",
        "16777216",
        _number(int, 1_048_576, 1 << 40),
        (SAMPLER,),
        "memory the sampler's replay buffer may hold (at least 1 MiB), counted as the bytes of"
        " the ticks it keeps, each compressed against the run's first tick: it keeps the newest"
        " ticks that fit, at most `PCW_REPLAY_TICKS` of them, and the oldest goes first. A"
        " writer that asks for a tick that has left it counts that tick as lost. 16 MiB holds"
        " all 1,440 ticks of 8 GPUs (about 0.4 KB each kept, 5 KB sent, with a process per"
        " GPU) or of 64 GPUs (about 11.5 KB kept, 44 KB sent): a day at 60 s",
        "16777216 (16 MiB)",
    )
    subscribe: tuple[str, ...] = setting(
        "PCW_SUBSCRIBE",
        None,
        _endpoints,
        (WRITER, WEB),
        "comma-separated sampler endpoints that the writer and web connect to",
        "PCW_PUB_ENDPOINT",
    )
    web_host: str = setting(
        "PCW_WEB_HOST",
        "0.0.0.0",
        _non_empty,
        (WEB,),
        "the address the web process listens on; one it cannot listen on stops it with one line"
        " naming PCW_WEB_HOST and PCW_WEB_PORT and the address, exit status 2, and it logs"
        " `serving on` only once it listens",
    )
    web_port: int = setting(
        "PCW_WEB_PORT",
        "8000",
        _number(int, 1, 65535),
        (WEB,),
        "the port the web process listens on; one it cannot listen on (a port already taken)"
        " stops it with one line naming PCW_WEB_HOST and PCW_WEB_PORT and the address, exit"
        " status 2",
    )
    host_name: str = setting(
        "PCW_HOST_NAME",
        None,
        _non_empty,
        ALL_PROCESSES,
        "the host label on every reading",
        "the machine's host name",
    )
    log_level: str = setting(
        "PCW_LOG_LEVEL",
        "INFO",
        _choice(LOG_LEVELS),
        ALL_PROCESSES,
        "DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )
    sim_mig_gpus: tuple[int, ...] = setting(
        "PCW_SIM_MIG_GPUS",
        "",
        _indexes,
        (SAMPLER,),
        "comma-separated indexes of simulated GPUs that run in MIG mode (three MIG devices each;"
        " such a GPU is simulated as an A100 or H100 unless PCW_SIM_NAMES names it)",
    )
    sim_idle_gpus: tuple[int, ...] = setting(
        "PCW_SIM_IDLE_GPUS",
        "",
        _indexes,
        (SAMPLER,),
        "comma-separated indexes of simulated GPUs held idle by a forgotten notebook (memory"
        " held, 0% utilization)",
    )
    sim_process_names: tuple[str, ...] = setting(
        "PCW_SIM_PROCESS_NAMES",
        "",
        _names,
        (SAMPLER,),
        "`;`-separated names for the simulated GPUs' training processes, in index order",
    )
    sim_lost_gpus: tuple[int, ...] = setting(
        "PCW_SIM_LOST_GPUS",
        "",
        _indexes,
        (SAMPLER,),
        "comma-separated indexes of simulated GPUs that fell off the bus before the sampler"
        " started (NVML gives their PCI bus id only)",
    )
    sim_hot_gpus: tuple[int, ...] = setting(
        "PCW_SIM_HOT_GPUS",
        "",
        _indexes,
        (SAMPLER,),
        "comma-separated indexes of simulated GPUs that run hot: past their slowdown temperature"
        " under load they throttle (SW and HW thermal)",
    )
    sim_remap_gpus: tuple[int, ...] = setting(
        "PCW_SIM_REMAP_GPUS",
        "",
        _indexes,
        (SAMPLER,),
        "comma-separated indexes of simulated GPUs with 2 memory rows pending remap after"
        " uncorrectable ECC errors",
    )
    sim_degraded_link_gpus: tuple[int, ...] = setting(
        "PCW_SIM_DEGRADED_LINK_GPUS",
        "",
        _indexes,
        (SAMPLER,),
        "comma-separated indexes of simulated GPUs whose PCIe link trained down to x8 (of x16)",
    )
    sim_xid_gpus: tuple[int, ...] = setting(
        "PCW_SIM_XID_GPUS",
        "",
        _indexes,
        (SAMPLER,),
        "comma-separated indexes of simulated GPUs that report an occasional XID error (13 or"
        " 31, an application's fault)",
    )
    proc_root: Path = setting(
        "PCW_PROC_ROOT",
        "/proc",
        _path,
        (SAMPLER,),
        "where the sampler reads the name, command line, user and container of each process on"
        " a GPU",
    )
    curve_secret_key_file: Path | None = setting(
        "PCW_CURVE_SECRET_KEY_FILE",
        "",
        _optional(_existing("file")),
        ALL_PROCESSES,
        "this process's secret CURVE certificate; set, ZeroMQ traffic is encrypted and"
        " authenticated",
    )
    curve_hub_key_file: Path | None = setting(
        "PCW_CURVE_HUB_KEY_FILE",
        "",
        _optional(_existing("file")),
        (SAMPLER,),
        "on a sampler: the hub's public certificate",
    )
    curve_sampler_keys_dir: Path | None = setting(
        "PCW_CURVE_SAMPLER_KEYS_DIR",
        "",
        _optional(_existing("folder")),
        (WRITER, WEB),
        "on a hub: the folder of samplers' public certificates it accepts; any other sampler is"
        " refused",
    )
    allow_plaintext: bool = setting(
        "PCW_ALLOW_PLAINTEXT",
        "0",
        _flag,
        (SAMPLER,),
        "`1` lets a sampler publish unencrypted on an address other than loopback",
    )
    auth_file: Path | None = setting(
        "PCW_AUTH_FILE",
        "",
        _optional(_existing("file")),
        (WEB,),
        "a file of users and password hashes; set, every route of the web process asks for HTTP"
        " basic auth",
    )
    idle_util_pct: float = setting(
        "PCW_IDLE_UTIL_PCT",
        "5",
        _number(float, 0, 100),
        (WRITER, WEB),
        "utilization (%) under which a GPU holding memory counts as idle",
    )
    idle_after_s: float = setting(
        "PCW_IDLE_AFTER_S",
        "1800",
        _number(float, 0, 30 * 86400),
        (WEB,),
        'seconds of idling while holding memory before a GPU is flagged "idle but allocated"',
    )
    energy_price_per_kwh: float | None = setting(
        "PCW_ENERGY_PRICE_PER_KWH",
        "",
        _optional(_number(float, 0, 1e6)),
        (WEB,),
        "price of a kWh; set, energy is shown with its cost",
    )
    currency: str = setting(
        "PCW_CURRENCY",
        "",
        _label,
        (WEB,),
        "the label shown with costs, such as EUR (16 characters at most)",
        "(empty)",
    )
    live_readers: int = setting(
        "PCW_LIVE_READERS",
        "2",
        _number(int, 1, 64),
        (WEB,),
        "web threads reading the live view: GPUs, hosts, processes, `/healthz`",
    )
    live_read_queue: int = setting(
        "PCW_LIVE_READ_QUEUE",
        "64",
        _number(int, 0, 100_000),
        (WEB,),
        "live reads that may wait for one of those; past that, 503 with `Retry-After`",
    )
    range_readers: int = setting(
        "PCW_RANGE_READERS",
        "2",
        _number(int, 1, 64),
        (WEB,),
        "web threads reading ranges: history, usage, energy (each up to the 10 s query limit)",
    )
    range_read_queue: int = setting(
        "PCW_RANGE_READ_QUEUE",
        "8",
        _number(int, 0, 100_000),
        (WEB,),
        "range reads that may wait for one of those; past that, 503 with `Retry-After`",
    )
    history_readers: int = setting(
        "PCW_HISTORY_READERS",
        "2",
        _number(int, 1, 64),
        (WEB,),
        "range-read threads one history answer may share its GPUs between (at most"
        " `PCW_RANGE_READERS`); each of those takes one of the range reads above, and only"
        " while one is free: a busy lane reads the answer on fewer",
    )
    sign_in_at_once: int = setting(
        "PCW_SIGN_IN_AT_ONCE",
        "2",
        _number(int, 1, 64),
        (WEB,),
        "password checks (scrypt, ~50 ms and 16 MiB each) run at a time",
    )
    sign_in_queue: int = setting(
        "PCW_SIGN_IN_QUEUE",
        "16",
        _number(int, 0, 10_000),
        (WEB,),
        "password checks that may wait for one of those; past that a sign-in is answered 503"
        " with `Retry-After`",
    )
    sign_in_failures: int = setting(
        "PCW_SIGN_IN_FAILURES",
        "10",
        _number(int, 1, 1_000_000),
        (WEB,),
        "failed sign-ins a client address may have; past that it is answered 429 with"
        " `Retry-After` until its lockout ends",
    )
    sign_in_lockout_s: float = setting(
        "PCW_SIGN_IN_LOCKOUT_S",
        "300",
        _number(float, 1, 7 * 86400),
        (WEB,),
        "seconds from an address's first failed sign-in until its failures are forgotten",
    )
    sign_in_clients: int = setting(
        "PCW_SIGN_IN_CLIENTS",
        "4096",
        _number(int, 1, 1_000_000),
        (WEB,),
        "client addresses whose failures are remembered (about 300 bytes each); the one seen"
        " longest ago is forgotten first",
    )
    ws_send_buffer_bytes: int = setting(
        "PCW_WS_SEND_BUFFER_BYTES",
        "1048576",
        _number(int, 65_536, 1 << 30),
        (WEB,),
        "live messages a websocket client may leave unread (at least 64 KiB); a client with more"
        " than this unsent when the next message comes is closed with code 1013 (try again"
        " later) and its page reconnects. 1 MiB is about 3,000 GPUs' readings",
        "1048576 (1 MiB)",
    )
    writer_buffer_bytes: int = setting(
        "PCW_WRITER_BUFFER_BYTES",
        "67108864",
        _number(int, 1_048_576, 1 << 40),
        (WRITER,),
        "memory the writer may hold unstored readings in while the database fails (at least"
        " 1 MiB); past it the oldest ticks are dropped and counted. 64 MiB holds about 850 ticks"
        " of 64 GPUs with their process lists, or 5,400 ticks of 8 GPUs (90 minutes at 1 s)",
        "67108864 (64 MiB)",
    )
    writer_cache_bytes: int = setting(
        "PCW_WRITER_CACHE_BYTES",
        "4194304",
        _number(int, 1_048_576, 1 << 40),
        (WRITER,),
        "the most the writer's SQLite connection keeps of the file's pages in memory (at least"
        " 1 MiB; SQLite's own default is 2,000 KiB): the pages of the indexes each batch of"
        " ticks updates stay cached, and the cache grows only up to this",
        "4194304 (4 MiB)",
    )
    reader_cache_bytes: int = setting(
        "PCW_READER_CACHE_BYTES",
        "1048576",
        _number(int, 1_048_576, 1 << 40),
        (WEB,),
        "the most each web reader thread's SQLite connection keeps of the file's pages in"
        " memory (at least 1 MiB; SQLite's own default is 2,000 KiB). SQLite empties a reader's"
        " cache at each read once the writer has committed since its last one (every tick),"
        " so the cache serves only the pages one read reads twice. The web process holds up"
        " to (`PCW_LIVE_READERS` + `PCW_RANGE_READERS`) times this: 4 MiB at the defaults"
        " (2 + 2 readers of 1 MiB); with the writer's `PCW_WRITER_CACHE_BYTES`, at most 8 MiB"
        " of page cache for the stack",
        "1048576 (1 MiB)",
    )
    history_cache_bytes: int = setting(
        "PCW_HISTORY_CACHE_BYTES",
        "16777216",
        _number(int, 0, 1 << 40),
        (WEB,),
        "the most the web process keeps of history buckets that can no longer change (0: none),"
        " so that a long range reads only its newest buckets again. A 30-day chart of 64 GPUs"
        " in 500 points of the four charted metrics holds about 2 MB; the least recently"
        " asked is dropped first",
        "16777216 (16 MiB)",
    )
    status_endpoint: str = setting(
        "PCW_STATUS_ENDPOINT",
        "",
        _or_empty(_endpoint),
        (WRITER, WEB),
        "where the writer publishes its status to the web process; by default a Linux abstract"
        " socket named after the database's absolute path (no file, no disk, no port), so the"
        " writer and web process of one stack find each other. Set it (the same on both) when"
        " they run in different network namespaces",
        "(derived)",
    )

    alerts_off: frozenset[str] = setting(
        "PCW_ALERTS_OFF",
        "",
        _alert_names,
        (WRITER,),
        "comma-separated built-in alert rules to turn off: " + ", ".join(BUILT_IN_ALERTS),
        "(none)",
    )
    alert_rules_file: Path | None = setting(
        "PCW_ALERT_RULES_FILE",
        "",
        _optional(_existing("file")),
        (WRITER,),
        "a TOML file of your own alert rules (docs/alerts.md); a bad rule stops the writer at"
        " start with the file, line and problem",
    )
    alert_temp_margin_c: float = setting(
        "PCW_ALERT_TEMP_MARGIN_C",
        "5",
        _number(float, 0, 50),
        (WRITER,),
        "`temperature` fires this many °C below the GPU's own slowdown temperature",
    )
    alert_temp_for_s: float = setting(
        "PCW_ALERT_TEMP_FOR_S",
        "300",
        _number(float, 0, 30 * 86400),
        (WRITER,),
        "seconds a GPU stays that hot before `temperature` fires",
    )
    alert_throttle_for_s: float = setting(
        "PCW_ALERT_THROTTLE_FOR_S",
        "300",
        _number(float, 0, 30 * 86400),
        (WRITER,),
        "seconds of thermal or power-brake throttling before `throttling` fires",
    )
    alert_pcie_for_s: float = setting(
        "PCW_ALERT_PCIE_FOR_S",
        "600",
        _number(float, 0, 30 * 86400),
        (WRITER,),
        "seconds a PCIe link runs below its maximum (narrower, or slower while busy) before"
        " `pcie_link` fires",
    )
    alert_idle_for_s: float = setting(
        "PCW_ALERT_IDLE_FOR_S",
        "21600",
        _number(float, 0, 30 * 86400),
        (WRITER,),
        "seconds a GPU holds memory while idle (under `PCW_IDLE_UTIL_PCT`) before"
        " `idle_allocated` fires, naming who holds it",
    )
    alert_stale_for_s: float = setting(
        "PCW_ALERT_STALE_FOR_S",
        "60",
        _number(float, 0, 30 * 86400),
        (WRITER,),
        "seconds a host stays stale (no tick for 3 intervals + 10 s) before `host_stale` fires",
    )
    alert_writer_for_s: float = setting(
        "PCW_ALERT_WRITER_FOR_S",
        "60",
        _number(float, 0, 30 * 86400),
        (WRITER,),
        "seconds the writer stays degraded (disk full, database unusable, buffer dropping)"
        " before `writer_degraded` fires",
    )
    alert_keep_firing_s: float = setting(
        "PCW_ALERT_KEEP_FIRING_S",
        "120",
        _number(float, 0, 86400),
        (WRITER,),
        "seconds a firing alert must be clear without a break before it resolves, so that a"
        " value hovering at a threshold does not flap",
    )
    alert_xid_hold_s: float = setting(
        "PCW_ALERT_XID_HOLD_S",
        "3600",
        _number(float, 1, 30 * 86400),
        (WRITER,),
        "seconds after a GPU's last XID of a code before its `xid` alert resolves",
    )
    alert_repeat_s: float = setting(
        "PCW_ALERT_REPEAT_S",
        "14400",
        _number(float, 60, 30 * 86400),
        (WRITER,),
        "seconds between two notifications of an alert that keeps firing",
    )
    notify_urls: tuple[NotifyTarget, ...] = setting(
        "PCW_NOTIFY_URLS",
        "",
        _notify_targets,
        (WRITER, WEB),
        "where notifications go: whitespace-separated Apprise URLs (Slack, Discord, Teams,"
        " Telegram, ntfy, Gotify, Matrix, PagerDuty, `mailtos://`, `json://` webhooks, ...),"
        " each optionally prefixed with the severities it takes, `critical,warning=URL`. The"
        " URLs hold secrets: they appear in no log, API answer or page",
        "(none)",
    )
    notify_config: Path | None = setting(
        "PCW_NOTIFY_CONFIG",
        "",
        _optional(_existing("file")),
        (WRITER, WEB),
        "an Apprise configuration file (its TEXT or YAML format) of more targets, each tagged"
        " with the severities it takes",
    )
    notify_retry_max_s: float = setting(
        "PCW_NOTIFY_RETRY_MAX_S",
        "300",
        _number(float, 0.1, 86400),
        (WRITER,),
        "the longest wait between two tries of a notification whose target is down (the waits"
        " double from 5 s up to it)",
    )
    notify_give_up_s: float = setting(
        "PCW_NOTIFY_GIVE_UP_S",
        "86400",
        _number(float, 1, 30 * 86400),
        (WRITER,),
        "seconds a notification is retried before it is given up (counted and shown)",
    )

    @property
    def retention_s(self) -> float:
        """Return the raw-reading retention in seconds."""
        return self.retention_days * 86400.0


# (field name, declaration) of every setting, in declaration order.
DECLARED: tuple[tuple[str, Setting], ...] = tuple(
    (each.name, each.metadata[_SETTING]) for each in fields(Config)
)
# (variable, default, parser, doc) of every setting.
SETTINGS: tuple[tuple[str, str | None, Callable[[str], Any], str], ...] = tuple(
    (one.variable, one.default, one.parser, one.doc) for _name, one in DECLARED
)


# Values that hold secrets: a bad one is named, never shown.
SECRET_VARIABLES = frozenset({"PCW_NOTIFY_URLS"})


def _parse(environ: Mapping[str, str], variable: str, default: str, parser: Callable) -> object:
    text = environ.get(variable, default)
    try:
        return parser(text)
    except ValueError as error:
        shown = "(hidden: it holds secrets)" if variable in SECRET_VARIABLES else text
        raise ConfigError(variable, shown, str(error)) from None


def load_config(environ: Mapping[str, str]) -> Config:
    """Build the Config from an environment mapping; raise ConfigError on the first bad value."""
    derived = {
        "PCW_SUBSCRIBE": environ.get("PCW_PUB_ENDPOINT", "tcp://127.0.0.1:5556"),
        "PCW_HOST_NAME": socket.gethostname() or "localhost",
    }
    values = {
        name: _parse(environ, one.variable, derived.get(one.variable, one.default), one.parser)
        for name, one in DECLARED
    }
    return Config(**values)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_formatter(environ: Mapping[str, str]) -> logging.Formatter:
    """Return the log line formatter: UTC timestamps, or local time where TZ is set."""
    formatter = logging.Formatter(LOG_FORMAT)
    formatter.converter = time.localtime if environ.get("TZ") else time.gmtime
    return formatter


def setup_logging(level: str, environ: Mapping[str, str]) -> None:
    """Send log lines to stderr (see log_formatter); called once from each main()."""
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter(environ))
    logging.basicConfig(level=level, handlers=[handler])


def startup_config(environ: Mapping[str, str], process: str) -> Config | None:
    """Load settings and set up logging; log one clear line and return None on a bad setting."""
    try:
        config = load_config(environ)
    except ConfigError as error:
        setup_logging("INFO", environ)
        logging.getLogger(process).critical("%s cannot start, bad setting: %s", process, error)
        return None
    setup_logging(config.log_level, environ)
    return config
