"""The alert rules for Prometheus (docs/prometheus/): promtool's checks, and the series they read.

- `promtool check rules` accepts the rules file; `promtool test rules` passes its unit tests,
  which show every alert quiet before its `for`, firing after it, and resolved later.
- Each built-in alert rule (services/alerts/rules.py) has its Prometheus twin: PyCudaWatch<Name>,
  with the rule's name in `rule`, its severity, and its default `for` and keep-firing time.
- Every metric an alert's expression reads is one the web process's /metrics sends, taken from a
  real scrape of simulated GPUs (one with an XID, one with a pending row remap) and a writer.

promtool (Debian's `prometheus` package) missing: each promtool test skips saying so, or fails
where CI is set (tests/ci.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
import zmq

from common.status import write_status
from services.alerts.rules import BUILT_IN_SEVERITY, rule_specs
from services.web.app import create_app
from tests.ci import unavailable
from tests.web.conftest import create_db, make_config
from tests.web.test_dcgm_coverage import health_tick
from tests.web.test_metrics import publish_until_seen, scrape, writer_status

RULES_DIR = Path(__file__).resolve().parent.parent / "docs" / "prometheus"
RULES = RULES_DIR / "pycudawatch-alerts.rules.yml"
UNIT_TESTS = RULES_DIR / "pycudawatch-alerts.test.yml"
PROMTOOL_TIMEOUT_S = 120


# What a PromQL expression holds besides metric names: comments, strings, label matchers and
# ranges, the label lists of by/without/on/ignoring/group_left/group_right, numbers and
# durations (0x08, 0.01, 5m), keywords, and function names (followed by an opening bracket).
_COMMENT = re.compile(r"#[^\n]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACKETED = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"\b(?:0x[0-9a-fA-F]+|\d[\w.]*)")
_NAME = re.compile(r"(?<![\w:])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
# A sample line of the text exposition: its metric name, then labels or the value.
_SAMPLE_NAME = re.compile(r"^([A-Za-z_:][\w:]*)[{ ]", re.MULTILINE)
# promtool test rules names each failed expectation in a line "alertname: NAME, time: T,".
_FAILED_EXPECTATION = re.compile(r"^\s*alertname: .*, time: .*$", re.MULTILINE)
_DURATION_PART = re.compile(r"(\d+)([hms])")
_OFFSET = re.compile(r"\boffset\s+(\w+)")
_SECONDS = {"h": 3600, "m": 60, "s": 1}


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects."""
    text = _STRING.sub(" ", _COMMENT.sub(" ", expr))
    text = _NUMBER.sub(" ", _LABEL_LIST.sub(" ", _BRACKETED.sub(" ", text)))
    return {name for name in _NAME.findall(text) if name not in _KEYWORDS}


def alert_rules() -> dict[str, dict]:
    """Return the alerts of the rules file by name."""
    [group] = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert group["name"] == "pycudawatch"
    return {rule["alert"]: rule for rule in group["rules"] if "alert" in rule}


def seconds(duration: str) -> int:
    """Return the seconds of a Prometheus duration ("7h15m", "2m30s")."""
    assert re.fullmatch(r"(\d+[hms])+", duration), duration
    return sum(int(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


def camel_case(rule: str) -> str:
    """Return "GpuError" for "gpu_error"."""
    return "".join(word.capitalize() for word in rule.split("_"))


@pytest.fixture
def promtool() -> str:
    """Return the path of promtool; skip without it (fail where CI is set)."""
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool is not installed (apt-get install prometheus)")
    return path


def run_promtool(promtool: str, *args: str) -> tuple[int, str]:
    """Run promtool; return its exit status and its output, stdout then stderr."""
    result = subprocess.run(
        [promtool, *args],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def failed_expectations(report: str) -> list[str]:
    """Return each failed expectation promtool test rules reports ("alertname: ..., time: ...")."""
    return [line.strip() for line in _FAILED_EXPECTATION.findall(report)]


# -- promtool ------------------------------------------------------------------------------------


def test_promtool_accepts_the_rules_file_and_finds_every_alert(promtool):
    status, report = run_promtool(promtool, "check", "rules", str(RULES))

    assert status == 0, report
    assert f"SUCCESS: {len(alert_rules())} rules found" in report, report


def test_every_alert_passes_its_promtool_unit_tests(promtool):
    status, report = run_promtool(promtool, "test", "rules", str(UNIT_TESTS))

    failed = failed_expectations(report)
    assert (status, failed) == (0, []), report
    assert "SUCCESS" in report, report


def test_a_failed_unit_test_is_reported_with_promtools_own_text(promtool, tmp_path):
    # The check above can fail: an alert expected where none fires is named, with its time.
    broken = tmp_path / "broken.test.yml"
    broken.write_text(
        f"rule_files: [{RULES}]\n"
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        "      - series: 'pycudawatch_writer_degraded{instance=\"hub:8000\"}'\n"
        "        values: '0x10'\n"
        "    alert_rule_test:\n"
        "      - eval_time: 5m\n"
        "        alertname: PyCudaWatchWriterDegraded\n"
        "        exp_alerts: [{exp_labels: {instance: 'hub:8000'}}]\n",
        encoding="utf-8",
    )

    status, report = run_promtool(promtool, "test", "rules", str(broken))

    assert status == 1, report
    assert failed_expectations(report) == ["alertname: PyCudaWatchWriterDegraded, time: 5m,"]


# -- what the unit tests and the rules file hold ------------------------------------------------


def test_the_unit_tests_show_every_alert_quiet_then_firing_then_resolved():
    suite = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    assert suite["rule_files"] == [RULES.name]
    shown: dict[str, set[str]] = {name: set() for name in alert_rules()}
    for group in suite["tests"]:
        by_alert: dict[str, list[tuple[int, set[frozenset]]]] = {}
        for case in group["alert_rule_test"]:
            firing = {frozenset(alert["exp_labels"].items()) for alert in case["exp_alerts"]}
            by_alert.setdefault(case["alertname"], []).append((seconds(case["eval_time"]), firing))
        for name, cases in by_alert.items():
            expected = [firing for _, firing in sorted(cases, key=lambda case: case[0])]
            if not expected[0]:
                shown[name].add("quiet")
            if any(expected):
                shown[name].add("firing")
            if any(
                alert not in later
                for at, firing in enumerate(expected)
                for alert in firing
                for later in expected[at + 1 :]
            ):
                shown[name].add("resolved")

    assert shown == {name: {"quiet", "firing", "resolved"} for name in alert_rules()}


def test_each_built_in_rule_has_a_prometheus_alert_of_its_name_severity_and_timing(tmp_path):
    alerts = alert_rules()
    specs = rule_specs(make_config(tmp_path / "gpu_stats.db"), ())  # every default

    assert set(alerts) == {f"PyCudaWatch{camel_case(rule)}" for rule in BUILT_IN_SEVERITY}
    assert set(specs) == set(BUILT_IN_SEVERITY)
    for rule, spec in specs.items():
        alert = alerts[f"PyCudaWatch{camel_case(rule)}"]
        assert alert["labels"] == {"severity": spec.severity, "rule": rule}, rule
        assert seconds(alert.get("for", "0s")) == spec.for_s, rule
        if spec.event:  # held after each event: the window the expression looks back over
            assert "keep_firing_for" not in alert, rule
            assert [seconds(d) for d in _OFFSET.findall(alert["expr"])] == [spec.keep_firing_s]
        else:
            assert seconds(alert.get("keep_firing_for", "0s")) == spec.keep_firing_s, rule


def test_metric_names_are_read_from_selectors_not_functions_labels_or_numbers():
    expr = """
        max by (host) (rate(a_total{job="x"}[5m] offset 1h)) > 3  # not_a_metric here
        unless on (host) label_replace(b, "host", "$1", "Hostname", "(.+)")
        and floor(c / 0x08) % 2 == 1 or d * on (UUID) group_left () e > 0.01
    """

    assert metric_names(expr) == {"a_total", "b", "c", "d", "e"}


# -- the rules against a real /metrics ----------------------------------------------------------


@pytest.fixture
def publisher(zmq_context) -> Iterator[tuple[zmq.Socket, str]]:
    """Return a ZeroMQ PUB socket bound to a free loopback port, and its endpoint."""
    socket = zmq_context.socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind("tcp://127.0.0.1:*")
    yield socket, socket.getsockopt(zmq.LAST_ENDPOINT).decode()
    socket.close(linger=0)


async def test_every_metric_an_alert_reads_is_one_metrics_sends(
    aiohttp_client, tmp_path, publisher
):
    db_path = tmp_path / "gpu_stats.db"
    create_db(db_path).close()
    client = await aiohttp_client(create_app(make_config(db_path, PCW_SUBSCRIBE=publisher[1])))
    write_status(db_path, writer_status())
    # four simulated GPUs: one has reported an XID, one has a row remap pending
    await publish_until_seen(client.app, publisher[0], health_tick("node-a", 3))

    sent = set(_SAMPLE_NAME.findall(await scrape(client)))

    reads = {name: metric_names(rule["expr"]) for name, rule in alert_rules().items()}
    assert all(reads.values())
    assert {name: names - sent for name, names in reads.items()} == {name: set() for name in reads}
