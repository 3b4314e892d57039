"""Alert notifications reach real receivers, once, through outages and a killed writer.

The real stack (sampler on simulated GPUs, writer, web) over ZeroMQ and SQLite sends through
Apprise to receivers on loopback: an SMTP server (aiosmtpd) and a JSON webhook (tests/receivers).
What is asserted is what the people on call would notice: the mail and the webhook arrive, name
the rule and the GPU and carry the notification's idempotency key; a receiver that was down gets
every notification once it is back; a writer killed mid-send sends again with the same key, so
that the receiver drops the duplicate; a full disk under a due notification does not make the
sender send it again and again; each built-in rule fires and resolves; a hovering value does not
flap.

Each test's delivery figures (sent, retried, duplicated, lost, and the seconds from the reading
to the receiver) are printed at the end of the module and written as JSON under pytest's tmp
folder, and to the file named by PCW_TEST_FIGURES_PATH where that is set.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import statistics
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.config import load_config
from common.health import LIMITING_REASONS_MASK
from common.messages import GpuHealth, GpuLimits, GpuReading, Tick
from common.status import read_status
from services.alerts.evaluator import Evaluator
from services.sampler.simulated_nvml import SimulatedNvml
from tests.receivers import Received, SmtpReceiver, WebhookReceiver
from tests.stack import Stack, wait_until

FIGURES_VAR = "PCW_TEST_FIGURES_PATH"
QUICK = {
    "PCW_INTERVAL_S": "1",
    "PCW_NOTIFY_RETRY_MAX_S": "1",  # a failed try is tried again a second later
    "PCW_ALERT_XID_HOLD_S": "1",
}
FIRING_TIMEOUT_S = 30.0
DISK_FULL_S = 5.0


# -- figures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict]]:
    """Collect each test's delivery figures; print and write them once the module is done."""
    collected: dict[str, dict] = {}
    yield collected
    text = json.dumps(collected, indent=2, sort_keys=True)
    print(f"\nalert delivery figures:\n{text}")
    (tmp_path_factory.mktemp("figures") / "delivery_figures.json").write_text(text)
    if target := os.environ.get(FIGURES_VAR):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(text)


def delivery_figures(stack: Stack, received: Received) -> dict[str, object]:
    """Return what the file says was sent and what the receiver got, and how fast.

    sent: deliveries marked sent; retried: those sent after more than one try; duplicated:
    arrivals of a key already received; lost: stored notifications whose key never arrived;
    reading_to_receiver_s: from the reading that caused a notification to its first arrival.
    """
    stored = dict(stack.query("SELECT idempotency_key, reading_ts FROM notifications"))
    rows = stack.query("SELECT state, attempts FROM deliveries")
    counts = received.keys()
    first = received.first_ts()
    latencies = sorted(first[key] - ts for key, ts in stored.items() if key in first)
    figures: dict[str, object] = {
        "stored": len(stored),
        "received": len(received.arrivals),
        "sent": sum(state == "sent" for state, _ in rows),
        "retried": sum(state == "sent" and attempts > 1 for state, attempts in rows),
        "duplicated": sum(n - 1 for key, n in counts.items() if key is not None and n > 1),
        "lost": sum(key not in counts for key in stored),
    }
    if latencies:
        figures["reading_to_receiver_s"] = {
            "count": len(latencies),
            "min": round(latencies[0], 3),
            "median": round(statistics.median(latencies), 3),
            "max": round(latencies[-1], 3),
        }
    return figures


def record(figures: dict[str, dict], name: str, stack: Stack, received: Received) -> dict:
    """Store and print one test's figures; return them."""
    found = delivery_figures(stack, received)
    figures[name] = found
    print(f"{name}: {json.dumps(found, sort_keys=True)}")
    return found


# -- the file and the API ----------------------------------------------------------------------


def rows(stack: Stack, sql: str) -> list[tuple]:
    """Return a query's rows, none before the writer has made the file and its tables."""
    try:
        return stack.query(sql)
    except sqlite3.OperationalError:
        return []


def stored_keys(stack: Stack) -> list[str]:
    """Return the idempotency keys of the stored notifications, oldest first."""
    sql = "SELECT idempotency_key FROM notifications ORDER BY notification_id"
    return [key for (key,) in rows(stack, sql)]


def deliveries(stack: Stack) -> dict[str, tuple[str, int]]:
    """Return {idempotency key: (delivery state, attempts)} (one target per test)."""
    return {
        key: (state, attempts)
        for key, state, attempts in rows(
            stack,
            "SELECT n.idempotency_key, d.state, d.attempts FROM deliveries AS d"
            " JOIN notifications AS n USING (notification_id)",
        )
    }


def all_sent(stack: Stack, at_least: int = 1) -> bool:
    """Return whether at_least notifications are stored and each delivery is marked sent."""
    keys, sent = stored_keys(stack), deliveries(stack)
    return len(keys) >= at_least and all(sent.get(key, ("", 0))[0] == "sent" for key in keys)


def events(stack: Stack) -> list[tuple[str, str, int | None]]:
    """Return the stored transitions as (rule, state, GPU index), oldest first."""
    return rows(stack, "SELECT rule, state, gpu_index FROM alert_events ORDER BY ts, event_id")


def writer_state(stack: Stack) -> str | None:
    """Return the writer's state ("ok", "degraded") from its status file, None before one."""
    status = read_status(stack.db_path)
    return None if status is None else status.state


def alerts_api(stack: Stack) -> dict:
    """Return GET /api/v1/alerts."""
    with urllib.request.urlopen(stack.web_url + "/api/v1/alerts", timeout=10) as response:
        return json.loads(response.read())


# -- 1, 2: the mail and the webhook ------------------------------------------------------------


def test_a_firing_alert_arrives_as_mail_naming_rule_and_gpu_with_its_key(tmp_path, figures):
    with SmtpReceiver() as smtp:
        env = {
            **QUICK,
            "PCW_SIM_GPUS": "3",
            "PCW_SIM_REMAP_GPUS": "2",  # an A100 with rows pending remap: `ecc` fires at once
            "PCW_NOTIFY_URLS": smtp.url("gpu-alerts@lab.example", "oncall@lab.example"),
        }
        with Stack(tmp_path, env, supervised=False) as stack:
            wait_until(lambda: all_sent(stack), FIRING_TIMEOUT_S, "the mail to be sent", stack)
            wait_until(lambda: smtp.arrivals, 5, "the mail at the SMTP server", stack)
            ((key,),) = stack.query("SELECT idempotency_key FROM notifications")
            ((uuid,),) = stack.query("SELECT gpu_uuid FROM alert_states WHERE rule = 'ecc'")
            record(figures, "smtp", stack, smtp)

    (mail,) = smtp.arrivals
    assert mail.title.startswith("[FIRING critical] ecc: GPU 2 of testhost"), mail.title
    assert "rows pending remap" in mail.title
    assert mail.fields == {"from": "gpu-alerts@lab.example", "to": "oncall@lab.example"}
    lines = mail.body.strip().splitlines()
    # the plain-text body keeps its lines: a reader (or a filter) finds the GPU and the key
    assert f"GPU 2 of testhost: NVIDIA A100-SXM4-40GB ({uuid})" in lines, mail.body
    assert lines[-1] == f"notification key: {key}", mail.body
    assert mail.key == key


def test_a_json_webhook_gets_firing_and_resolved_with_the_key_in_message(tmp_path, figures):
    with WebhookReceiver() as hook:
        env = {
            **QUICK,
            "PCW_SIM_GPUS": "2",
            "PCW_SIM_XID_GPUS": "1",  # an XID 13 at once; resolved a second after (XID_HOLD_S)
            "PCW_NOTIFY_URLS": hook.url,
        }
        with Stack(tmp_path, env, supervised=False) as stack:
            wait_until(
                lambda: all_sent(stack, at_least=2), FIRING_TIMEOUT_S, "firing + resolved", stack
            )
            wait_until(lambda: len(hook.arrivals) >= 2, 5, "two webhook calls", stack)
            stored = dict(stack.query("SELECT kind, idempotency_key FROM notifications"))
            found = record(figures, "json_webhook", stack, hook)

    firing, resolved = hook.arrivals[:2]
    assert firing.title.startswith("[FIRING critical] xid: GPU 1 of testhost reported XID 13")
    assert resolved.title.startswith("[RESOLVED critical] xid: GPU 1 of testhost")
    assert firing.fields["type"] == "failure" and resolved.fields["type"] == "success"
    assert firing.body.splitlines()[-1] == f"notification key: {stored['firing']}"
    assert (firing.key, resolved.key) == (stored["firing"], stored["resolved"])
    assert (found["duplicated"], found["lost"]) == (0, 0)


# -- 3: a receiver that is down ----------------------------------------------------------------


def test_a_receiver_down_gets_every_notification_once_when_it_is_back(tmp_path, figures):
    hook = WebhookReceiver()
    hook.status = 503  # listening, but refusing: a proxy in front of a dead service
    with hook:
        env = {
            **QUICK,
            "PCW_SIM_GPUS": "4",
            "PCW_SIM_REMAP_GPUS": "1,2,3",  # three `ecc` alerts at once
            "PCW_SIM_XID_GPUS": "1",  # and an XID firing, then resolved
            "PCW_NOTIFY_URLS": hook.url,
        }
        with Stack(tmp_path, env, supervised=False) as stack:

            def tried(times: int, count: int) -> bool:
                found = [n for state, n in deliveries(stack).values() if state == "queued"]
                return sum(n >= times for n in found) >= count

            wait_until(lambda: tried(1, 4), FIRING_TIMEOUT_S, "4 refused tries", stack)
            hook.close()  # and now the port is closed too: the host is down
            wait_until(lambda: tried(3, 4), 20, "two more tries of each, refused", stack)
            refused_posts = hook.posts
            hook.status = 200
            hook.open()
            wait_until(lambda: all_sent(stack, at_least=5), 20, "every delivery sent", stack)
            time.sleep(1.5)  # a late duplicate would come within a retry's wait
            keys, sent = stored_keys(stack), deliveries(stack)
            api = alerts_api(stack)
            found = record(figures, "receiver_down_then_up", stack, hook)

    counts = hook.keys()
    assert refused_posts >= 4, "the receiver was tried while it refused"
    assert sorted(counts) == sorted(keys), "every notification arrived, nothing else did"
    assert all(n == 1 for n in counts.values()), f"a notification arrived twice: {counts}"
    retried = [key for key, (_, attempts) in sent.items() if attempts > 1]
    assert len(retried) >= 4, sent
    assert all(state == "sent" for state, _ in sent.values())
    assert api["deliveries"] == {
        "targets": 1,
        "queued": 0,
        "sent": len(keys),
        "retried": len(retried),
        "given_up": 0,
        "silenced": 0,
    }
    assert (found["duplicated"], found["lost"]) == (0, 0)


# -- 4: the writer killed between storing and sending ------------------------------------------


def test_a_writer_killed_mid_send_sends_again_with_the_same_key(tmp_path, figures):
    with WebhookReceiver() as hook:
        hook.hold()  # the receiver takes the POST and hangs before it answers
        env = {
            **QUICK,
            "PCW_SIM_GPUS": "2",
            "PCW_SIM_REMAP_GPUS": "1",  # one `ecc` alert at once
            "PCW_NOTIFY_URLS": hook.url,
        }
        with Stack(tmp_path, env, supervised=False) as stack:
            assert hook.arrived.wait(FIRING_TIMEOUT_S), stack.logs()[-3000:]
            # the POST is in flight: the delivery is stored, not yet marked sent
            assert [state for state, _ in deliveries(stack).values()] == ["queued"]
            assert stack.stop("writer", signal.SIGKILL) == -signal.SIGKILL
            hook.release()
            stack.start("writer")
            wait_until(lambda: len(hook.arrivals) >= 2, 30, "the notification again", stack)
            wait_until(lambda: all_sent(stack), 10, "the delivery marked sent", stack)
            time.sleep(1.5)  # a third arrival would come within a retry's wait
            keys, sent = stored_keys(stack), deliveries(stack)
            found = record(figures, "writer_killed_mid_send", stack, hook)

    (key,) = keys
    first, second = hook.arrivals
    # at least once, with the same key: the receiver drops the second by its key
    assert first.key == second.key == key
    assert first.title == second.title and first.body == second.body
    assert {arrival.key for arrival in hook.arrivals} == set(keys)
    # the try the kill cut off is counted (recorded before it was made): two tries, one sent
    assert sent == {key: ("sent", 2)}, "nothing stored stays queued"
    assert found["duplicated"] == 1 and found["lost"] == 0


def test_a_writer_killed_before_the_receiver_got_it_sends_it_once_after_restart(tmp_path, figures):
    hook = WebhookReceiver()  # not listening yet: its port is closed
    env = {
        **QUICK,
        "PCW_SIM_GPUS": "2",
        "PCW_SIM_REMAP_GPUS": "1",
        "PCW_NOTIFY_URLS": hook.url,
    }
    with Stack(tmp_path, env, supervised=False) as stack:

        def stored_and_refused() -> bool:
            return any(n >= 1 for _, n in deliveries(stack).values())

        wait_until(stored_and_refused, FIRING_TIMEOUT_S, "a stored, refused notification", stack)
        assert stack.stop("writer", signal.SIGKILL) == -signal.SIGKILL
        with hook:
            stack.start("writer")
            wait_until(lambda: all_sent(stack), 30, "the delivery sent after the restart", stack)
            wait_until(lambda: hook.arrivals, 5, "the notification at the receiver", stack)
            time.sleep(1.5)
            keys = stored_keys(stack)
            found = record(figures, "writer_killed_receiver_down", stack, hook)

    assert hook.keys() == {keys[0]: 1} and len(keys) == 1
    assert found["retried"] == 1 and (found["duplicated"], found["lost"]) == (0, 0)


def test_a_full_disk_under_a_due_notification_does_not_flood_the_receiver(tmp_path, figures):
    hook = WebhookReceiver()
    hook.status = 503  # the notification waits in the outbox, due again each second
    with hook:
        env = {
            **QUICK,
            "PCW_SIM_GPUS": "2",
            "PCW_SIM_REMAP_GPUS": "1",
            "PCW_ALERTS_OFF": "writer_degraded",  # only the one notification is due
            "PCW_NOTIFY_URLS": hook.url,
        }
        with Stack(tmp_path, env, supervised=False) as stack:
            wait_until(
                lambda: any(n >= 1 for _, n in deliveries(stack).values()),
                FIRING_TIMEOUT_S,
                "a stored, refused notification",
                stack,
            )
            writer_pid = stack.processes["writer"].pid
            resource.prlimit(writer_pid, resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
            wait_until(lambda: writer_state(stack) == "degraded", 20, "a degraded writer", stack)
            hook.status = 200  # the receiver is back while the file still refuses writes
            time.sleep(DISK_FULL_S)
            while_full = hook.keys()
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(writer_pid, resource.RLIMIT_FSIZE, unlimited)
            wait_until(lambda: all_sent(stack), 30, "the delivery marked sent", stack)
            time.sleep(1.5)
            (key,) = stored_keys(stack)
            found = record(figures, "disk_full_while_due", stack, hook)

    # a try is recorded before it is made: while the disk is full none is made (no page every
    # second for hours), and once the file takes writes again the message goes out once
    assert sum(while_full.values()) <= 1, f"{sum(while_full.values())} copies while full"
    assert hook.keys() == {key: 1}
    assert found["duplicated"] == 0


# -- 5: every built-in rule, on simulated GPUs -------------------------------------------------

HOT, XID_GPU, REMAP, NARROW, IDLE, LOST = range(6)
PLAN_CANDIDATES = 1000
THROTTLE_STREAK_S = 3  # throttled on this many ticks in a row: `throttling` fires (FOR_S=1)
FIRST_STREAK_S, LAST_STREAK_S = 3, 20  # seconds from now within which that streak starts
STALE_WAIT_S = 16.0  # a host is stale 3 intervals + 10 s after its last tick
PHASE_B_S = (12, 45)  # seconds after the streak in which the healthy GPUs must be busy


class SimulatedHost:
    """The sampler's simulated GPUs of one host, read at any moment a test sets."""

    def __init__(self, host: str) -> None:
        self.at_s = 0.0
        self.sim = SimulatedNvml(6, host=host, clock=lambda: self.at_s, hot_gpus=(HOT,))
        self.sim.nvmlInit()
        self.handles = [self.sim.nvmlDeviceGetHandleByIndex(i) for i in range(6)]

    def throttled(self, at_s: float) -> bool:
        """Return whether the hot GPU is throttled and past `temperature`'s threshold at at_s."""
        self.at_s = at_s
        hot = self.handles[HOT]
        slowdown = self.sim.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
        fires_at_c = self.sim.nvmlDeviceGetTemperatureThreshold(hot, slowdown) - 5
        mask = self.sim.nvmlDeviceGetCurrentClocksEventReasons(hot)
        hot_enough = self.sim.nvmlDeviceGetTemperature(hot, 0) >= fires_at_c + 1
        return hot_enough and bool(mask & LIMITING_REASONS_MASK)

    def busy(self, index: int, at_s: float) -> bool:
        """Return whether GPU index trains (utilization 60 % or more) at at_s."""
        self.at_s = at_s
        return self.sim.nvmlDeviceGetUtilizationRates(self.handles[index]).gpu >= 60


def throttle_streak_start(gpus: SimulatedHost, now_s: float) -> int | None:
    """Return in how many seconds the hot GPU's first streak of throttled ticks starts."""
    streak = 0
    for second in range(FIRST_STREAK_S, LAST_STREAK_S + THROTTLE_STREAK_S):
        tick_s = int(now_s) + second
        # read a little after the aligned tick, or a little later still
        streak = streak + 1 if all(gpus.throttled(tick_s + d) for d in (0.02, 0.3)) else 0
        if streak == THROTTLE_STREAK_S:
            return second - THROTTLE_STREAK_S + 1
    return None


def plan_host(now_s: float) -> tuple[str, int]:
    """Return a simulated host whose GPUs suit the scenario from now_s, and when it throttles.

    The simulator follows a training cycle on the wall clock, per host and GPU, and a wave
    shared by every GPU: a hot GPU reaches its thermal slowdown only near the wave's crest.
    A host is chosen (its name seeds the cycles) whose hot GPU is throttled on
    THROTTLE_STREAK_S ticks in a row soon, and whose GPUs NARROW and IDLE train (busy) when the
    sampler comes back healthy, so that `pcie_link` and `idle_allocated` are seen cleared.
    """
    for number in range(PLAN_CANDIDATES):
        host = f"alerting-{number}"
        gpus = SimulatedHost(host)
        start = throttle_streak_start(gpus, now_s)
        if start is None:
            continue
        later = [
            now_s + start + quarter / 4 for quarter in range(4 * PHASE_B_S[0], 4 * PHASE_B_S[1])
        ]
        if all(gpus.busy(NARROW, at_s) and gpus.busy(IDLE, at_s) for at_s in later):
            return host, start
    raise AssertionError(f"none of {PLAN_CANDIDATES} simulated hosts suits the scenario now")


def test_each_built_in_rule_fires_and_resolves_on_simulated_gpus(tmp_path, figures):
    host, throttles_in_s = plan_host(time.time())
    faults = {
        "PCW_SIM_HOT_GPUS": str(HOT),  # temperature, throttling
        "PCW_SIM_XID_GPUS": str(XID_GPU),  # xid
        "PCW_SIM_REMAP_GPUS": str(REMAP),  # ecc (an A100)
        "PCW_SIM_DEGRADED_LINK_GPUS": str(NARROW),  # pcie_link (x8 of x16)
        "PCW_SIM_IDLE_GPUS": str(IDLE),  # idle_allocated (carol's notebook)
    }
    with WebhookReceiver() as hook:
        env = {
            **QUICK,
            **faults,
            "PCW_HOST_NAME": host,
            "PCW_SIM_GPUS": "6",
            "PCW_SIM_LOST_GPUS": str(LOST),  # gpu_error
            "PCW_ALERT_TEMP_FOR_S": "1",
            "PCW_ALERT_THROTTLE_FOR_S": "1",
            "PCW_ALERT_PCIE_FOR_S": "1",
            "PCW_ALERT_IDLE_FOR_S": "1",
            "PCW_ALERT_STALE_FOR_S": "0",
            "PCW_ALERT_WRITER_FOR_S": "0",
            "PCW_ALERT_KEEP_FIRING_S": "3",
            "PCW_NOTIFY_URLS": hook.url,
        }
        with Stack(tmp_path, env, supervised=False) as stack:
            stack.wait_web()
            gpu_rules = {
                ("temperature", HOT), ("throttling", HOT), ("xid", XID_GPU), ("ecc", REMAP),
                ("pcie_link", NARROW), ("idle_allocated", IDLE), ("gpu_error", LOST),
            }  # fmt: skip

            def fired(wanted: set[tuple[str, int | None]]) -> bool:
                seen = {(rule, gpu) for rule, state, gpu in events(stack) if state == "firing"}
                return wanted <= seen

            wait_until(
                lambda: fired(gpu_rules) and ("xid", "resolved", XID_GPU) in events(stack),
                throttles_in_s + 15,
                "every GPU rule to fire",
                stack,
            )
            # the sampler stops: the host goes stale; it comes back with healthy GPUs but the
            # lost one (a GPU lost before the start is known by a stand-in key only)
            assert stack.stop("sampler") == 0
            wait_until(lambda: fired({("host_stale", None)}), STALE_WAIT_S, "host_stale", stack)
            for name in faults:
                del stack.env[name]
            stack.start("sampler")

            def resolved(rules: set[str]) -> bool:
                last = {rule: state for rule, state, _ in events(stack)}
                return all(last.get(rule) == "resolved" for rule in rules)

            back = {"host_stale", "temperature", "throttling", "ecc", "pcie_link", "idle_allocated"}
            wait_until(lambda: resolved(back), 15, "the healthy GPUs' alerts to resolve", stack)

            # the disk refuses the writer's writes: writer_degraded is sent from memory (what
            # was due is sent first: a full disk under a due delivery is the test below)
            wait_until(lambda: all_sent(stack), 10, "the resolved alerts sent", stack)
            writer_pid = stack.processes["writer"].pid
            resource.prlimit(writer_pid, resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
            wait_until(
                lambda: hook.titled("[FIRING critical] writer_degraded"),
                20,
                "writer_degraded at the receiver",
                stack,
            )
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(writer_pid, resource.RLIMIT_FSIZE, unlimited)
            wait_until(lambda: resolved({"writer_degraded"}), 20, "the writer to recover", stack)
            wait_until(lambda: all_sent(stack), 10, "every notification sent", stack)
            api = alerts_api(stack)
            transitions = events(stack)
            found = record(figures, "built_in_rules", stack, hook)

    every_rule = {rule for rule, _ in gpu_rules} | {"host_stale", "writer_degraded"}
    for rule in every_rule:
        states = [state for r, state, _ in transitions if r == rule]
        assert "firing" in states, (rule, transitions)
        if rule == "gpu_error":
            # the lost GPU is still lost: its alert fires on, once
            assert states == ["firing"], transitions
        else:
            assert states[-1] == "resolved", (rule, transitions)
    # what the API shows: only the lost GPU's alert is active; the rest are in its history
    assert [(a["rule"], a["gpu_index"], a["state"]) for a in api["active"]] == [
        ("gpu_error", LOST, "firing")
    ]
    shown = {(e["rule"], e["state"]) for e in api["events"]}
    assert {(rule, "firing") for rule in every_rule} <= shown
    assert {(rule, "resolved") for rule in every_rule - {"gpu_error"}} <= shown

    # and the person on call got each of them: firing, and resolved
    def got(word: str, rule: str) -> bool:
        return any(
            a.title.startswith(f"[{word} ") and f"] {rule}:" in a.title for a in hook.arrivals
        )

    assert all(got("FIRING", rule) for rule in every_rule), hook.arrivals
    assert all(got("RESOLVED", rule) for rule in every_rule - {"gpu_error"}), hook.arrivals
    # the writer's own alert says once what failed, sent from memory while the file refused
    (degraded,) = hook.titled("[FIRING critical] writer_degraded:")
    assert degraded.title.count("cannot store readings") == 1, degraded.title
    assert "disk I/O error" in degraded.title
    assert api["deliveries"]["queued"] == 0 and api["deliveries"]["given_up"] == 0
    assert found["lost"] == 0 and found["duplicated"] == 0


# -- 6: a hovering value does not flap ---------------------------------------------------------

TICK_S = 10.0
SLOWDOWN_C = 89  # an H100: `temperature` fires at 84 °C (margin 5), clears under 81 °C


def temperature_tick(seq: int, temp_c: int) -> Tick:
    """Return a tick of one H100 at temp_c, seq ticks of TICK_S after the first."""
    reading = GpuReading(
        index=0,
        uuid="GPU-00000000-0000-0000-0000-000000000001",
        name="NVIDIA H100 80GB HBM3",
        util_gpu_pct=95,
        temp_c=temp_c,
        health=GpuHealth(clocks_event_reasons=0),
        limits=GpuLimits(temp_slowdown_c=SLOWDOWN_C),
    )
    return Tick("node-1", "run-1", seq, 1_700_000_000.0 + seq * TICK_S, TICK_S, gpus=[reading])


@pytest.mark.parametrize(
    ("for_s", "hover_c"),
    [
        (0, (84, 83)),  # 1 °C around where it fires
        (30, (84, 83)),  # the same, after 30 s hot enough to fire
        (0, (84, 80)),  # across both lines: cleared on every other tick, never for 120 s
    ],
)
def test_a_temperature_hovering_at_the_threshold_fires_once_and_resolves_once(for_s, hover_c):
    config = load_config({"PCW_ALERT_KEEP_FIRING_S": "120", "PCW_ALERT_TEMP_FOR_S": str(for_s)})
    evaluator = Evaluator(config, (), clock=lambda: 1_700_000_000.0)
    evaluator.load((), {}, {})
    warm_up = [86] * (int(for_s / TICK_S) + 1)
    hover = [hover_c[seq % 2] for seq in range(50)]
    cool = [60] * 14  # 130 s well below: cleared for longer than keep_firing_s
    temps = warm_up + hover + cool
    notifications, transitions = [], []
    for seq, temp_c in enumerate(temps):
        outcome = evaluator.evaluate([temperature_tick(seq, temp_c)], {"run-1": ("node-1", seq)})
        evaluator.committed()
        notifications += [(n.kind, seq) for n in outcome.notifications]
        transitions += [(t.state, seq) for t in outcome.transitions]

    fired_at = len(warm_up) - 1
    cleared_from = max(seq for seq, temp_c in enumerate(temps) if temp_c >= 81) + 1
    resolved_at = cleared_from + 12  # the first tick 120 s after the last one not cleared
    assert transitions == [("firing", fired_at), ("resolved", resolved_at)]
    assert notifications == transitions
