"""Settings from the PCW_* environment, parsed once at start into a frozen Config."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SOURCES = ("nvml", "simulated", "none")
VACUUM_MODES = ("incremental", "full")
ZMQ_TRANSPORTS = ("tcp://", "ipc://", "inproc://")


class ConfigError(ValueError):
    """A setting has a value that is not allowed; the message names variable, value and rule."""

    def __init__(self, variable: str, value: str, allowed: str) -> None:
        super().__init__(f"{variable}={value!r} is not allowed: {allowed}")
        self.variable = variable


@dataclass(frozen=True)
class Config:
    """Every setting of every process; each field's name carries its unit."""

    source: str
    sim_gpus: int
    sim_names: tuple[str, ...]
    interval_s: float
    db_path: Path
    retention_days: float
    maintenance_s: float
    pub_endpoint: str
    replay_ticks: int
    subscribe: tuple[str, ...]
    web_host: str
    web_port: int
    host_name: str
    log_level: str
    sim_mig_gpus: tuple[int, ...] = ()
    sim_idle_gpus: tuple[int, ...] = ()
    sim_process_names: tuple[str, ...] = ()
    sim_lost_gpus: tuple[int, ...] = ()
    proc_root: Path = Path("/proc")
    vacuum: str = "incremental"
    curve_secret_key_file: Path | None = None
    curve_hub_key_file: Path | None = None
    curve_sampler_keys_dir: Path | None = None
    allow_plaintext: bool = False
    auth_file: Path | None = None
    idle_util_pct: float = 5.0
    idle_after_s: float = 1800.0
    energy_price_per_kwh: float | None = None
    currency: str = ""
    live_readers: int = 2
    live_read_queue: int = 64
    range_readers: int = 2
    range_read_queue: int = 8
    sign_in_at_once: int = 2
    sign_in_queue: int = 16
    sign_in_failures: int = 10
    sign_in_lockout_s: float = 300.0
    sign_in_clients: int = 4096
    writer_buffer_bytes: int = 64 * 1024 * 1024
    status_endpoint: str = ""

    @property
    def retention_s(self) -> float:
        """Return the raw-reading retention in seconds."""
        return self.retention_days * 86400.0


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


# (variable, default, parser, help): the table that README's settings table mirrors.
SETTINGS: tuple[tuple[str, str | None, Callable[[str], object], str], ...] = (
    (
        "PCW_SOURCE",
        "nvml",
        _choice(SOURCES),
        "nvml: real GPUs; simulated: demo GPUs; none: no local GPUs (a hub)",
    ),
    ("PCW_SIM_GPUS", "2", _number(int, 1, 64), "number of simulated GPUs"),
    ("PCW_SIM_NAMES", "", _names, "';'-separated names for the simulated GPUs"),
    ("PCW_INTERVAL_S", "60", _number(float, 0.1, 86400), "seconds between ticks"),
    ("PCW_DB_PATH", "db/gpu_stats.db", _path, "the SQLite file"),
    ("PCW_RETENTION_DAYS", "30", _number(float, 0.001, 36500), "days of readings kept"),
    ("PCW_MAINTENANCE_S", "3600", _number(float, 1, 7 * 86400), "seconds between purges"),
    (
        "PCW_VACUUM",
        "incremental",
        _choice(VACUUM_MODES),
        "incremental: each purge gives back the pages it freed; full: VACUUM every purge",
    ),
    ("PCW_PUB_ENDPOINT", "tcp://127.0.0.1:5556", _endpoint, "where the sampler publishes"),
    ("PCW_REPLAY_TICKS", "1440", _number(int, 1, 10_000_000), "ticks a sampler keeps for replay"),
    ("PCW_SUBSCRIBE", None, _endpoints, "sampler endpoints the writer and web connect to"),
    ("PCW_WEB_HOST", "0.0.0.0", _non_empty, "address the web process listens on"),
    ("PCW_WEB_PORT", "8000", _number(int, 1, 65535), "port the web process listens on"),
    ("PCW_HOST_NAME", None, _non_empty, "host label on every reading"),
    ("PCW_LOG_LEVEL", "INFO", _choice(LOG_LEVELS), "log level"),
    ("PCW_SIM_MIG_GPUS", "", _indexes, "indexes of simulated GPUs in MIG mode"),
    ("PCW_SIM_IDLE_GPUS", "", _indexes, "indexes of simulated GPUs held idle by a notebook"),
    (
        "PCW_SIM_PROCESS_NAMES",
        "",
        _names,
        "';'-separated names for the simulated GPUs' training processes",
    ),
    ("PCW_SIM_LOST_GPUS", "", _indexes, "indexes of simulated GPUs lost before the start"),
    ("PCW_PROC_ROOT", "/proc", _path, "where the sampler reads processes' names and owners"),
    (
        "PCW_CURVE_SECRET_KEY_FILE",
        "",
        _optional(_existing("file")),
        "this process's secret CURVE certificate; set, ZeroMQ traffic is encrypted",
    ),
    ("PCW_CURVE_HUB_KEY_FILE", "", _optional(_existing("file")), "sampler: the hub's public key"),
    (
        "PCW_CURVE_SAMPLER_KEYS_DIR",
        "",
        _optional(_existing("folder")),
        "hub: folder of the samplers' public certificates it accepts",
    ),
    ("PCW_ALLOW_PLAINTEXT", "0", _flag, "1: let a sampler publish unencrypted off loopback"),
    ("PCW_AUTH_FILE", "", _optional(_existing("file")), "users and password hashes (basic auth)"),
    ("PCW_IDLE_UTIL_PCT", "5", _number(float, 0, 100), "utilization under which a GPU is idle"),
    ("PCW_IDLE_AFTER_S", "1800", _number(float, 0, 30 * 86400), "idle seconds before a flag"),
    (
        "PCW_ENERGY_PRICE_PER_KWH",
        "",
        _optional(_number(float, 0, 1e6)),
        "price of a kWh, to show energy's cost",
    ),
    ("PCW_CURRENCY", "", _label, "label shown with costs, such as EUR"),
    (
        "PCW_LIVE_READERS",
        "2",
        _number(int, 1, 64),
        "web threads reading the live view (GPUs, hosts, processes, health)",
    ),
    ("PCW_LIVE_READ_QUEUE", "64", _number(int, 0, 100_000), "live reads that may wait; then 503"),
    (
        "PCW_RANGE_READERS",
        "2",
        _number(int, 1, 64),
        "web threads reading ranges (history, usage, energy)",
    ),
    ("PCW_RANGE_READ_QUEUE", "8", _number(int, 0, 100_000), "range reads that may wait; then 503"),
    ("PCW_SIGN_IN_AT_ONCE", "2", _number(int, 1, 64), "password checks run at a time"),
    ("PCW_SIGN_IN_QUEUE", "16", _number(int, 0, 10_000), "password checks that may wait; then 503"),
    (
        "PCW_SIGN_IN_FAILURES",
        "10",
        _number(int, 1, 1_000_000),
        "failed sign-ins per client address before 429",
    ),
    (
        "PCW_SIGN_IN_LOCKOUT_S",
        "300",
        _number(float, 1, 7 * 86400),
        "seconds from an address's first failure until it may try again",
    ),
    (
        "PCW_SIGN_IN_CLIENTS",
        "4096",
        _number(int, 1, 1_000_000),
        "client addresses whose failures are remembered",
    ),
    (
        "PCW_WRITER_BUFFER_BYTES",
        "67108864",
        _number(int, 1_048_576, 1 << 40),
        "memory the writer may hold readings in while the database fails; past it the oldest go",
    ),
    (
        "PCW_STATUS_ENDPOINT",
        "",
        _optional(_endpoint),
        "where the writer publishes its status to the web process (default: derived from the DB)",
    ),
)


def _parse(environ: Mapping[str, str], variable: str, default: str, parser: Callable) -> object:
    text = environ.get(variable, default)
    try:
        return parser(text)
    except ValueError as error:
        raise ConfigError(variable, text, str(error)) from None


def load_config(environ: Mapping[str, str]) -> Config:
    """Build the Config from an environment mapping; raise ConfigError on the first bad value."""
    defaults = {
        "PCW_SUBSCRIBE": environ.get("PCW_PUB_ENDPOINT", "tcp://127.0.0.1:5556"),
        "PCW_HOST_NAME": socket.gethostname() or "localhost",
    }
    values = {
        variable: _parse(environ, variable, defaults.get(variable, default), parser)
        for variable, default, parser, _help in SETTINGS
    }
    return Config(
        source=values["PCW_SOURCE"],
        sim_gpus=values["PCW_SIM_GPUS"],
        sim_names=values["PCW_SIM_NAMES"],
        interval_s=values["PCW_INTERVAL_S"],
        db_path=values["PCW_DB_PATH"],
        retention_days=values["PCW_RETENTION_DAYS"],
        maintenance_s=values["PCW_MAINTENANCE_S"],
        pub_endpoint=values["PCW_PUB_ENDPOINT"],
        replay_ticks=values["PCW_REPLAY_TICKS"],
        subscribe=values["PCW_SUBSCRIBE"],
        web_host=values["PCW_WEB_HOST"],
        web_port=values["PCW_WEB_PORT"],
        host_name=values["PCW_HOST_NAME"],
        log_level=values["PCW_LOG_LEVEL"],
        sim_mig_gpus=values["PCW_SIM_MIG_GPUS"],
        sim_idle_gpus=values["PCW_SIM_IDLE_GPUS"],
        sim_process_names=values["PCW_SIM_PROCESS_NAMES"],
        sim_lost_gpus=values["PCW_SIM_LOST_GPUS"],
        proc_root=values["PCW_PROC_ROOT"],
        vacuum=values["PCW_VACUUM"],
        curve_secret_key_file=values["PCW_CURVE_SECRET_KEY_FILE"],
        curve_hub_key_file=values["PCW_CURVE_HUB_KEY_FILE"],
        curve_sampler_keys_dir=values["PCW_CURVE_SAMPLER_KEYS_DIR"],
        allow_plaintext=values["PCW_ALLOW_PLAINTEXT"],
        auth_file=values["PCW_AUTH_FILE"],
        idle_util_pct=values["PCW_IDLE_UTIL_PCT"],
        idle_after_s=values["PCW_IDLE_AFTER_S"],
        energy_price_per_kwh=values["PCW_ENERGY_PRICE_PER_KWH"],
        currency=values["PCW_CURRENCY"],
        live_readers=values["PCW_LIVE_READERS"],
        live_read_queue=values["PCW_LIVE_READ_QUEUE"],
        range_readers=values["PCW_RANGE_READERS"],
        range_read_queue=values["PCW_RANGE_READ_QUEUE"],
        sign_in_at_once=values["PCW_SIGN_IN_AT_ONCE"],
        sign_in_queue=values["PCW_SIGN_IN_QUEUE"],
        sign_in_failures=values["PCW_SIGN_IN_FAILURES"],
        sign_in_lockout_s=values["PCW_SIGN_IN_LOCKOUT_S"],
        sign_in_clients=values["PCW_SIGN_IN_CLIENTS"],
        writer_buffer_bytes=values["PCW_WRITER_BUFFER_BYTES"],
        status_endpoint=values["PCW_STATUS_ENDPOINT"] or "",
    )


def setup_logging(level: str) -> None:
    """Send log lines to stderr with UTC timestamps; called once from each main()."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def startup_config(environ: Mapping[str, str], process: str) -> Config | None:
    """Load settings and set up logging; log one clear line and return None on a bad setting."""
    try:
        config = load_config(environ)
    except ConfigError as error:
        setup_logging("INFO")
        logging.getLogger(process).critical("%s cannot start, bad setting: %s", process, error)
        return None
    setup_logging(config.log_level)
    return config
