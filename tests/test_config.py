"""Settings: every default, good values, and a clear ConfigError for each bad one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from common.config import SETTINGS, Config, ConfigError, load_config


def test_every_default_when_nothing_is_set():
    config = load_config({})

    assert config == Config(
        source="nvml",
        sim_gpus=2,
        sim_names=(),
        interval_s=60.0,
        db_path=Path("db/gpu_stats.db"),
        retention_days=30.0,
        maintenance_s=3600.0,
        pub_endpoint="tcp://127.0.0.1:5556",
        replay_ticks=1440,
        subscribe=("tcp://127.0.0.1:5556",),
        web_host="0.0.0.0",
        web_port=8000,
        host_name=socket.gethostname(),
        log_level="INFO",
    )
    assert config.retention_s == 30 * 86400


def test_good_values_are_parsed_with_their_types():
    config = load_config(
        {
            "PCW_SOURCE": " Simulated ",
            "PCW_SIM_GPUS": "8",
            "PCW_SIM_NAMES": "Lab A100; Lab H100",
            "PCW_INTERVAL_S": "0.1",
            "PCW_DB_PATH": "/var/lib/pcw/stats.db",
            "PCW_RETENTION_DAYS": "1.5",
            "PCW_MAINTENANCE_S": "600",
            "PCW_PUB_ENDPOINT": "ipc:///tmp/pcw.sock",
            "PCW_REPLAY_TICKS": "10080",
            "PCW_SUBSCRIBE": "tcp://node1:5556, tcp://node2:5556,tcp://node1:5556",
            "PCW_WEB_HOST": "127.0.0.1",
            "PCW_WEB_PORT": "65535",
            "PCW_HOST_NAME": "gpu-node-07",
            "PCW_LOG_LEVEL": "debug",
        }
    )

    assert config.source == "simulated"
    assert config.sim_gpus == 8 and isinstance(config.sim_gpus, int)
    assert config.sim_names == ("Lab A100", "Lab H100")
    assert config.interval_s == 0.1
    assert config.db_path == Path("/var/lib/pcw/stats.db")
    assert config.retention_days == 1.5
    assert config.retention_s == 1.5 * 86400
    assert config.maintenance_s == 600.0
    assert config.pub_endpoint == "ipc:///tmp/pcw.sock"
    assert config.replay_ticks == 10080 and isinstance(config.replay_ticks, int)
    assert config.subscribe == ("tcp://node1:5556", "tcp://node2:5556")  # duplicates dropped
    assert config.web_host == "127.0.0.1"
    assert config.web_port == 65535 and isinstance(config.web_port, int)
    assert config.host_name == "gpu-node-07"
    assert config.log_level == "DEBUG"


def test_memory_bounds_default_to_their_mebibytes_and_take_bytes():
    defaults = load_config({})
    config = load_config(
        {
            "PCW_REPLAY_BYTES": "1048576",
            "PCW_WRITER_CACHE_BYTES": " 33554432 ",
            "PCW_READER_CACHE_BYTES": "2097152",
        }
    )

    assert (
        defaults.replay_bytes,
        defaults.writer_cache_bytes,
        defaults.reader_cache_bytes,
    ) == (16 << 20, 4 << 20, 1 << 20)
    assert (config.replay_bytes, config.writer_cache_bytes, config.reader_cache_bytes) == (
        1 << 20,
        32 << 20,
        2 << 20,
    )


def test_subscribe_defaults_to_the_pub_endpoint():
    config = load_config({"PCW_PUB_ENDPOINT": "tcp://10.0.0.5:7000"})

    assert config.subscribe == ("tcp://10.0.0.5:7000",)


def test_subscribe_set_explicitly_wins_over_the_pub_endpoint():
    config = load_config(
        {"PCW_PUB_ENDPOINT": "tcp://10.0.0.5:7000", "PCW_SUBSCRIBE": "tcp://hub:1234"}
    )

    assert config.pub_endpoint == "tcp://10.0.0.5:7000"
    assert config.subscribe == ("tcp://hub:1234",)


def test_lower_bounds_are_allowed():
    config = load_config(
        {
            "PCW_INTERVAL_S": "0.1",
            "PCW_SIM_GPUS": "1",
            "PCW_WEB_PORT": "1",
            "PCW_MAINTENANCE_S": "1",
        }
    )

    assert (config.interval_s, config.sim_gpus, config.web_port, config.maintenance_s) == (
        0.1,
        1,
        1,
        1.0,
    )


# (variable, bad value, a word of the rule that the message must give)
BAD_VALUES = [
    ("PCW_SOURCE", "gpu", "nvml, simulated"),
    ("PCW_SOURCE", "", "nvml, simulated"),
    ("PCW_SIM_GPUS", "0", "an integer from 1 to 64"),
    ("PCW_SIM_GPUS", "65", "an integer from 1 to 64"),
    ("PCW_SIM_GPUS", "2.5", "an integer from 1 to 64"),
    ("PCW_SIM_GPUS", "two", "an integer from 1 to 64"),
    ("PCW_SIM_NAMES", "A100;;H100", "1 to 96 printable characters"),
    ("PCW_SIM_NAMES", "x" * 97, "1 to 96 printable characters"),
    ("PCW_INTERVAL_S", "0.05", "a number from 0.1 to 86400"),
    ("PCW_INTERVAL_S", "-1", "a number from 0.1 to 86400"),
    ("PCW_INTERVAL_S", "1m", "a number from 0.1 to 86400"),
    ("PCW_INTERVAL_S", "nan", "a number from 0.1 to 86400"),
    ("PCW_INTERVAL_S", "inf", "a number from 0.1 to 86400"),
    ("PCW_DB_PATH", "  ", "a file path"),
    ("PCW_RETENTION_DAYS", "0", "a number from 0.001 to 36500"),
    ("PCW_RETENTION_DAYS", "NaN", "a number from 0.001 to 36500"),
    ("PCW_RETENTION_DAYS", "-inf", "a number from 0.001 to 36500"),
    ("PCW_MAINTENANCE_S", "0.5", "a number from 1 to 604800"),
    ("PCW_MAINTENANCE_S", "Infinity", "a number from 1 to 604800"),
    ("PCW_PUB_ENDPOINT", "127.0.0.1:5556", "ZeroMQ endpoint"),
    ("PCW_PUB_ENDPOINT", "http://127.0.0.1:5556", "ZeroMQ endpoint"),
    ("PCW_PUB_ENDPOINT", "tcp://", "ZeroMQ endpoint"),
    ("PCW_PUB_ENDPOINT", "tcp://127.0.0.1", "port 1-65534"),
    ("PCW_PUB_ENDPOINT", "tcp://127.0.0.1:65535", "port 1-65534"),  # replay takes port + 1
    ("PCW_REPLAY_TICKS", "0", "an integer from 1 to "),
    ("PCW_REPLAY_TICKS", "1e3", "an integer from 1 to "),
    ("PCW_REPLAY_BYTES", "1048575", "an integer from 1048576"),
    ("PCW_REPLAY_BYTES", "16MiB", "an integer from 1048576"),
    ("PCW_SUBSCRIBE", " , ", "comma-separated list of ZeroMQ endpoints"),
    ("PCW_SUBSCRIBE", "tcp://a:1,udp://b:2", "ZeroMQ endpoint"),
    ("PCW_WEB_HOST", "", "a non-empty name without spaces"),
    ("PCW_WEB_PORT", "0", "an integer from 1 to 65535"),
    ("PCW_WEB_PORT", "70000", "an integer from 1 to 65535"),
    ("PCW_WEB_PORT", "http", "an integer from 1 to 65535"),
    ("PCW_HOST_NAME", "my host", "a non-empty name without spaces"),
    ("PCW_HOST_NAME", "", "a non-empty name without spaces"),
    ("PCW_LOG_LEVEL", "verbose", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("PCW_SIM_MIG_GPUS", "1,a", "GPU indexes from 0 to 63"),
    ("PCW_SIM_MIG_GPUS", "64", "GPU indexes from 0 to 63"),
    ("PCW_SIM_IDLE_GPUS", "0,-1", "GPU indexes from 0 to 63"),
    ("PCW_SIM_LOST_GPUS", "1,x", "GPU indexes from 0 to 63"),
    ("PCW_SIM_HOT_GPUS", "hot", "GPU indexes from 0 to 63"),
    ("PCW_SIM_REMAP_GPUS", "2,,3", "GPU indexes from 0 to 63"),
    ("PCW_SIM_DEGRADED_LINK_GPUS", "99", "GPU indexes from 0 to 63"),
    ("PCW_SIM_XID_GPUS", "1.5", "GPU indexes from 0 to 63"),
    ("PCW_SIM_PROCESS_NAMES", "train;;eval", "1 to 96 printable characters"),
    ("PCW_PROC_ROOT", " ", "a file path"),
    ("PCW_CURVE_SECRET_KEY_FILE", "/nonexistent/hub.key_secret", "an existing file"),
    ("PCW_CURVE_HUB_KEY_FILE", "/nonexistent/hub.key", "an existing file"),
    ("PCW_CURVE_SAMPLER_KEYS_DIR", "/nonexistent/samplers", "an existing folder"),
    ("PCW_CURVE_SAMPLER_KEYS_DIR", "/etc/hostname", "an existing folder"),
    ("PCW_ALLOW_PLAINTEXT", "maybe", "1 or 0"),
    ("PCW_AUTH_FILE", "/nonexistent/users", "an existing file"),
    ("PCW_IDLE_UTIL_PCT", "101", "a number from 0 to 100"),
    ("PCW_IDLE_AFTER_S", "-1", "a number from 0 to 2.592e+06"),
    ("PCW_ENERGY_PRICE_PER_KWH", "-0.1", "a number from 0 to 1e+06"),
    ("PCW_ENERGY_PRICE_PER_KWH", "cheap", "a number from 0 to 1e+06"),
    ("PCW_CURRENCY", "x" * 17, "at most 16 printable characters"),
    ("PCW_VACUUM", "always", "one of incremental, full"),
    ("PCW_LIVE_READERS", "0", "an integer from 1 to 64"),
    ("PCW_LIVE_READ_QUEUE", "-1", "an integer from 0 to 100000"),
    ("PCW_RANGE_READERS", "65", "an integer from 1 to 64"),
    ("PCW_RANGE_READ_QUEUE", "lots", "an integer from 0 to 100000"),
    ("PCW_HISTORY_READERS", "0", "an integer from 1 to 64"),
    ("PCW_SIGN_IN_AT_ONCE", "0", "an integer from 1 to 64"),
    ("PCW_SIGN_IN_QUEUE", "-1", "an integer from 0 to 10000"),
    ("PCW_SIGN_IN_FAILURES", "many", "an integer from 1 to 1000000"),
    ("PCW_SIGN_IN_LOCKOUT_S", "0", "a number from 1 to 604800"),
    ("PCW_SIGN_IN_CLIENTS", "0", "an integer from 1 to 1000000"),
    ("PCW_WS_SEND_BUFFER_BYTES", "1000", "an integer from 65536"),
    ("PCW_WS_SEND_BUFFER_BYTES", "1MiB", "an integer from 65536"),
    ("PCW_WRITER_BUFFER_BYTES", "1000", "an integer from 1048576"),
    ("PCW_WRITER_BUFFER_BYTES", "64MB", "an integer from 1048576"),
    ("PCW_WRITER_CACHE_BYTES", "0", "an integer from 1048576"),
    ("PCW_WRITER_CACHE_BYTES", "8MB", "an integer from 1048576"),
    ("PCW_READER_CACHE_BYTES", "-4194304", "an integer from 1048576"),
    ("PCW_READER_CACHE_BYTES", "4e6", "an integer from 1048576"),
    ("PCW_HISTORY_CACHE_BYTES", "-1", "an integer from 0 to 1099511627776"),
    ("PCW_HISTORY_CACHE_BYTES", "16MiB", "an integer from 0"),
    ("PCW_STATUS_ENDPOINT", "/tmp/status.sock", "a ZeroMQ endpoint"),
    ("PCW_ALERTS_OFF", "xid,hot", "comma-separated built-in rules from gpu_error"),
    ("PCW_ALERT_RULES_FILE", "/nonexistent/rules.toml", "an existing file"),
    ("PCW_ALERT_TEMP_MARGIN_C", "51", "a number from 0 to 50"),
    ("PCW_ALERT_TEMP_FOR_S", "-1", "a number from 0 to 2.592e+06"),
    ("PCW_ALERT_THROTTLE_FOR_S", "5m", "a number from 0 to 2.592e+06"),
    ("PCW_ALERT_PCIE_FOR_S", "nan", "a number from 0 to 2.592e+06"),
    ("PCW_ALERT_IDLE_FOR_S", "-5", "a number from 0 to 2.592e+06"),
    ("PCW_ALERT_STALE_FOR_S", "soon", "a number from 0 to 2.592e+06"),
    ("PCW_ALERT_WRITER_FOR_S", "-1", "a number from 0 to 2.592e+06"),
    ("PCW_ALERT_KEEP_FIRING_S", "86401", "a number from 0 to 86400"),
    ("PCW_ALERT_XID_HOLD_S", "0", "a number from 1 to 2.592e+06"),
    ("PCW_ALERT_REPEAT_S", "10", "a number from 60 to 2.592e+06"),
    ("PCW_NOTIFY_URLS", "hooks.example/x", "entry 1 is not a URL"),
    ("PCW_NOTIFY_CONFIG", "/nonexistent/apprise.yml", "an existing file"),
    ("PCW_NOTIFY_RETRY_MAX_S", "0", "a number from 0.1 to 86400"),
    ("PCW_NOTIFY_GIVE_UP_S", "0", "a number from 1 to 2.592e+06"),
]


@pytest.mark.parametrize(
    "value",
    ["urgent=json://user:s3cret@hooks.example/x", "json:/user:s3cret@hooks.example/x"],
)
def test_a_bad_notify_url_is_named_and_its_secret_never_shown(value):
    with pytest.raises(ConfigError) as caught:
        load_config({"PCW_NOTIFY_URLS": value})

    message = str(caught.value)
    assert message.startswith("PCW_NOTIFY_URLS=")
    assert "entry 1" in message
    assert "s3cret" not in message


def test_notify_urls_take_severities_where_given_and_all_elsewhere():
    config = load_config(
        {"PCW_NOTIFY_URLS": "critical,warning=json://a.example/x\n mailto://u:p@b.example"}
    )

    assert [(t.severities, t.url) for t in config.notify_urls] == [
        (("critical", "warning"), "json://a.example/x"),
        (("critical", "warning", "info"), "mailto://u:p@b.example"),
    ]


@pytest.mark.parametrize(("variable", "value", "rule"), BAD_VALUES)
def test_a_bad_value_names_the_variable_the_value_and_the_rule(variable, value, rule):
    with pytest.raises(ConfigError) as caught:
        load_config({variable: value})

    message = str(caught.value)
    assert caught.value.variable == variable
    shown = "'(hidden: it holds secrets)'" if variable == "PCW_NOTIFY_URLS" else repr(value)
    assert message.startswith(f"{variable}={shown}")
    assert rule in message


def test_every_setting_has_at_least_one_bad_value_tested():
    assert {variable for variable, _d, _p, _h in SETTINGS} == {v for v, _, _ in BAD_VALUES}


def test_a_bad_pub_endpoint_is_blamed_even_when_subscribe_follows_it():
    with pytest.raises(ConfigError) as caught:
        load_config({"PCW_PUB_ENDPOINT": "localhost:5556"})

    assert caught.value.variable == "PCW_PUB_ENDPOINT"


def test_config_error_is_a_value_error():
    # callers that only know ValueError still catch it
    with pytest.raises(ValueError, match="PCW_WEB_PORT"):
        load_config({"PCW_WEB_PORT": "-1"})


def test_the_environment_is_not_read_outside_the_mapping(monkeypatch):
    monkeypatch.setenv("PCW_SOURCE", "bogus")
    monkeypatch.setenv("PCW_INTERVAL_S", "0")

    config = load_config({})

    assert (config.source, config.interval_s) == ("nvml", 60.0)
