"""The alert routes of the web process: the alerts now and their history, silences, the test
notification, /metrics and /healthz, over a file holding alerts as the writer stores them."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

import pytest

from services.alerts.engine import AlertState, Outcome, Subject, Transition
from services.web.app import create_app
from services.web.keys import ALERTS
from services.writer.alert_store import store_outcome
from tests.web.conftest import UUID_A, make_config

NOW = time.time()
HOT = AlertState(
    "temperature",
    "warning",
    Subject(f"alpha/{UUID_A}", "alpha", UUID_A, 0, "NVIDIA H100"),
    "firing",
    NOW - 600,
    NOW - 5,
    91.0,
    "GPU 0 of alpha is at 91 °C",
    NOW - 300,
    NOW - 300,
)
LOST = AlertState(
    "gpu_error",
    "critical",
    Subject("beta/GPU-lost", "beta", "GPU-lost", 1, "NVIDIA A100"),
    "firing",
    NOW - 900,
    NOW - 900,
    None,
    "GPU 1 of beta is in error: GPU is lost",
    NOW - 900,
    NOW - 900,
)
WAITING = AlertState(
    "throttling",
    "warning",
    Subject(f"alpha/{UUID_A}", "alpha", UUID_A, 0, "NVIDIA H100"),
    "pending",
    NOW - 20,
    NOW - 5,
    32.0,
    "GPU 0 of alpha is throttled: HW thermal",
)


def store_alerts(db_path: Path) -> None:
    """Write two firing alerts, one pending, and a resolved one, as the writer would."""
    outcome = Outcome(
        {HOT.key: HOT, LOST.key: LOST, WAITING.key: WAITING},
        [
            Transition("firing", NOW - 900, LOST),
            Transition("firing", NOW - 300, HOT),
            Transition("firing", NOW - 7200, HOT),
            Transition("resolved", NOW - 7000, HOT),
        ],
    )
    with sqlite3.connect(db_path, isolation_level=None) as conn:
        conn.execute("BEGIN")
        store_outcome(conn, outcome)
        conn.execute("COMMIT")


@pytest.fixture
async def client(aiohttp_client, db_path):
    store_alerts(db_path)
    return await aiohttp_client(create_app(make_config(db_path)))


async def test_the_alerts_now_and_their_transitions_newest_first(client):
    response = await client.get("/api/v1/alerts")
    body = await response.json()

    assert response.status == 200
    assert [(a["rule"], a["state"]) for a in body["active"]] == [
        ("gpu_error", "firing"),  # critical first, then the longest-standing
        ("temperature", "firing"),
        ("throttling", "pending"),
    ]
    assert body["active"][0]["severity"] == "critical"
    assert [(e["rule"], e["state"]) for e in body["events"]] == [
        ("temperature", "firing"),
        ("gpu_error", "firing"),
        ("temperature", "resolved"),
        ("temperature", "firing"),
    ]
    assert body["deliveries"] == {
        "targets": 0,
        "queued": 0,
        "sent": 0,
        "retried": 0,
        "given_up": 0,
        "silenced": 0,
    }


@pytest.mark.parametrize(
    ("query", "states"),
    [
        ("state=resolved", {"resolved"}),
        ("state=firing", {"firing"}),
    ],
)
async def test_the_state_filter_keeps_only_that_state(client, query, states):
    body = await (await client.get(f"/api/v1/alerts?{query}")).json()

    assert {event["state"] for event in body["events"]} == states
    assert all(alert["state"] == "firing" for alert in body["active"]) or query != "state=firing"


async def test_pending_alerts_only_and_a_range_that_leaves_out_the_old_spell(client):
    pending = await (await client.get("/api/v1/alerts?state=pending")).json()
    recent = await (await client.get(f"/api/v1/alerts?from={NOW - 3600}")).json()

    assert [a["rule"] for a in pending["active"]] == ["throttling"]
    assert pending["events"] == []
    assert [(e["rule"], e["state"]) for e in recent["events"]] == [
        ("temperature", "firing"),
        ("gpu_error", "firing"),
    ]


@pytest.mark.parametrize(
    "query",
    [
        "state=burning",
        "from=yesterday",
        f"from={NOW}&to={NOW - 10}",
        "colour=red",
        "rule=",
        "host=",
    ],
)
async def test_a_bad_query_is_a_400_with_a_json_error(client, query):
    response = await client.get(f"/api/v1/alerts?{query}")

    assert response.status == 400
    assert (await response.json())["error"]


async def test_a_silence_is_stored_shown_on_its_alert_and_ended(client):
    response = await client.post(
        "/api/v1/silences", json={"key": HOT.key, "duration_s": 3600, "comment": "known fan"}
    )
    made = await response.json()
    body = await (await client.get("/api/v1/alerts")).json()
    hot = next(alert for alert in body["active"] if alert["key"] == HOT.key)

    assert response.status == 201
    assert made["until_ts"] == pytest.approx(time.time() + 3600, abs=5)
    assert [s["silence_id"] for s in body["silences"]] == [made["silence_id"]]
    assert hot["silenced_until_ts"] == made["until_ts"]
    assert all(
        alert["silenced_until_ts"] is None for alert in body["active"] if alert["key"] != HOT.key
    )

    ended = await client.post(f"/api/v1/silences/{made['silence_id']}/end", json={})
    again = await client.post(f"/api/v1/silences/{made['silence_id']}/end", json={})
    after = await (await client.get("/api/v1/alerts")).json()

    assert ended.status == 200
    assert again.status == 404
    assert after["silences"] == []


async def test_a_silence_of_a_whole_host_covers_each_of_its_alerts(client):
    await client.post("/api/v1/silences", json={"host": "alpha", "duration_s": 600})
    body = await (await client.get("/api/v1/alerts")).json()

    silenced = {a["rule"] for a in body["active"] if a["silenced_until_ts"] is not None}
    assert silenced == {"temperature", "throttling"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"duration_s": 600}, 400),  # names nothing
        ({"key": HOT.key, "duration_s": -1}, 400),
        ({"key": HOT.key, "duration_s": 1e12}, 400),
        ({"key": HOT.key}, 400),
        ({"key": HOT.key, "duration_s": 60, "admin": True}, 400),
        ({"gpu": "", "duration_s": 60}, 400),
    ],
)
async def test_a_bad_silence_is_refused_with_a_json_error(client, body, status):
    response = await client.post("/api/v1/silences", json=body)

    assert response.status == status
    assert (await response.json())["error"]


async def test_a_post_from_another_site_or_as_a_form_is_refused(client):
    forged = await client.post(
        "/api/v1/silences",
        json={"key": HOT.key, "duration_s": 60},
        headers={"Origin": "http://evil.example"},
    )
    form = await client.post("/api/v1/silences", data={"key": HOT.key, "duration_s": "60"})
    body = await (await client.get("/api/v1/alerts")).json()

    assert forged.status == 403
    assert form.status == 415
    assert body["silences"] == []


async def test_a_test_notification_needs_a_target(client):
    response = await client.post("/api/v1/notifications/test", json={})

    assert response.status == 409
    assert "PCW_NOTIFY_URLS" in (await response.json())["error"]


async def test_a_test_notification_is_stored_for_the_sender(aiohttp_client, db_path):
    app = create_app(make_config(db_path, PCW_NOTIFY_URLS="json://127.0.0.1:9/hook"))
    client = await aiohttp_client(app)

    response = await client.post("/api/v1/notifications/test", json={})
    body = await response.json()
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT kind, severity, body FROM notifications").fetchall()

    assert response.status == 202
    assert body["targets"] == 1
    assert [(kind, severity) for kind, severity, _ in rows] == [("test", "test")]
    assert rows[0][2].endswith(f"notification key: pcw-test-{body['notification_id']}")


async def test_metrics_count_firing_alerts_per_rule_and_list_each_alert(client):
    await client.app[ALERTS].look()
    text = await (await client.get("/metrics")).text()

    assert 'pycudawatch_alerts_firing{rule="temperature",severity="warning"} 1.0' in text
    assert 'pycudawatch_alerts_firing{rule="gpu_error",severity="critical"} 1.0' in text
    assert 'pycudawatch_alerts_firing{rule="xid",severity="critical"} 0.0' in text
    assert 'pycudawatch_alerts_firing{rule="throttling",severity="warning"} 0.0' in text  # pending
    line = next(line for line in text.splitlines() if line.startswith("pycudawatch_alert{"))
    assert 'state="firing"' in line or 'state="pending"' in line
    assert text.count("\npycudawatch_alert{") == 3


async def test_healthz_is_the_same_with_firing_alerts_as_without(aiohttp_client, tmp_path):
    from tests.web.conftest import create_db, fill_fixture

    answers = []
    for name, with_alerts in (("quiet.db", False), ("alerting.db", True)):
        path = tmp_path / name
        conn = create_db(path)
        fill_fixture(conn)
        conn.close()
        if with_alerts:
            store_alerts(path)
        client = await aiohttp_client(create_app(make_config(path)))
        response = await client.get("/healthz")
        body = await response.json()
        problems = [re.sub(r"[0-9]+", "N", text) for text in body["problems"]]
        answers.append((response.status, problems))

    assert answers[0] == answers[1]


@pytest.mark.parametrize("silence_id", ["²", "1e3", "-1", "9" * 19, "abc"])
async def test_a_silence_id_that_is_not_a_plain_number_is_a_400(client, silence_id):
    response = await client.post(f"/api/v1/silences/{silence_id}/end", json={})

    assert response.status == 400
    assert (await response.json())["error"]


async def test_a_firing_alerts_new_reading_reaches_the_websockets(client, db_path):
    watch = client.app[ALERTS]  # its own task looks every second too: either may see a change
    await watch.look()
    assert not await watch.look()  # nothing changed
    assert "93 °C" not in (watch.message or "")

    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE alert_states SET last_ts = last_ts + 60, value = 93,"
            " message = 'GPU 0 of alpha is at 93 °C' WHERE alert_key = ?",
            (HOT.key,),
        )
    deadline = time.monotonic() + 10
    while "93 °C" not in (watch.message or "") and time.monotonic() < deadline:
        await watch.look()
        await asyncio.sleep(0.05)

    assert "GPU 0 of alpha is at 93 °C" in (watch.message or "")
