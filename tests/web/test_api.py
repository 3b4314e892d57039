"""The JSON API over the fixture file: shapes, hand-computed buckets, and every refusal."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import sqlite3

import pytest

from common.metrics import CORE_METRIC_NAMES, METRIC_NAMES
from services.web.app import create_app
from services.web.gpu_reads import LATEST_SQL
from services.web.history_reads import history_sql
from services.web.keys import COUNTERS, STORE
from services.web.middlewares import COMPRESS_IN_THREAD_BYTES
from services.web.store import StoreError
from tests.web.conftest import (
    T0,
    UUID_A,
    UUID_B,
    UUID_C,
    add_gpu,
    add_sample,
    create_db,
    make_config,
)

GPU_KEYS = {
    "host",
    "gpu_index",
    "gpu_uuid",
    "gpu_name",
    "pci_bus_id",
    "driver_version",
    "first_ts",
    "last_ts",
    "latest",
    "error_since_ts",
    "interval_s",
    "stale",
    "stale_since_ts",
    "host_stale",
    "host_last_seen_ts",
    "processes",
    "mig_devices",
    "idle",
    "cuda_version",
    "health",
    "limits",
    "findings",
    "last_xid",
}


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


def nulls_except(**values: float) -> dict[str, float | None]:
    """Return a {metric: value} dict with every metric not named None."""
    return {name: values.get(name) for name in METRIC_NAMES}


def core_nulls_except(**values: float) -> dict[str, float | None]:
    """The same for the metrics history answers when none is named: the reading's own."""
    return {name: values.get(name) for name in CORE_METRIC_NAMES}


async def test_gpus_lists_every_gpu_with_its_latest_reading(client):
    response = await client.get("/api/v1/gpus")
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"gpus", "simulated", "interval_s", "idle_util_pct", "idle_after_s"}
    assert body["simulated"] is False
    assert body["interval_s"] == 10.0
    gpus = body["gpus"]
    assert [(g["host"], g["gpu_index"], g["gpu_uuid"]) for g in gpus] == [
        ("alpha", 0, UUID_A),
        ("alpha", 1, UUID_B),
        ("beta", 0, UUID_C),
    ]
    assert all(set(g) == GPU_KEYS for g in gpus)
    first = gpus[0]
    assert first["gpu_name"] == "NVIDIA Test GPU"
    assert first["pci_bus_id"] == "0000:00:00.0"
    assert first["driver_version"] == "550.54"
    assert (first["first_ts"], first["last_ts"]) == (T0 - 10, T0 + 300)
    assert first["latest"] == {
        "ts": T0 + 300,
        "error": None,
        **nulls_except(util_gpu_pct=77, temp_c=61),
    }
    assert gpus[1]["gpu_name"] == "<b>GPU & co</b>"  # JSON carries text as is; the page escapes


async def test_simulated_source_is_said_plainly(aiohttp_client, db_path):
    client = await aiohttp_client(create_app(make_config(db_path, PCW_SOURCE="simulated")))
    assert (await (await client.get("/api/v1/gpus")).json())["simulated"] is True


async def test_the_deprecated_rows_shape_still_answers_one_object_per_bucket(client):
    response = await client.get(
        "/api/v1/history",
        params={"from": str(T0), "to": str(T0 + 300), "points": "5", "shape": "rows"},
    )
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"from", "to", "step_s", "series"}
    assert (body["from"], body["to"], body["step_s"]) == (T0, T0 + 300, 60)
    # C's readings are all long before the range, so it is not among "all GPUs"
    assert [s["gpu_uuid"] for s in body["series"]] == [UUID_A, UUID_B]
    series_a = body["series"][0]
    assert {k: v for k, v in series_a.items() if k != "buckets"} == {
        "gpu_uuid": UUID_A,
        "host": "alpha",
        "gpu_index": 0,
        "gpu_name": "NVIDIA Test GPU",
    }
    buckets = series_a["buckets"]
    assert [b["ts"] for b in buckets] == [T0 + 60 * k for k in range(5)]
    assert [b["count"] for b in buckets] == [3, 0, 2, 1, 1]  # the errored row counts
    first = buckets[0]
    assert first["mean"] == core_nulls_except(
        util_gpu_pct=15.0, temp_c=51.0, power_w=105.25, mem_used_bytes=2000.0
    )
    assert first["max"] == core_nulls_except(
        util_gpu_pct=20, temp_c=52, power_w=110.5, mem_used_bytes=3000
    )
    assert first["mean"]["fan_pct"] is None  # null in every row: null, never 0
    assert buckets[1] == {"ts": T0 + 60, "count": 0, "mean": None, "max": None}  # the gap
    assert buckets[2]["mean"] == core_nulls_except(util_gpu_pct=45.0, fan_pct=40.0)
    assert buckets[2]["max"] == core_nulls_except(util_gpu_pct=60, fan_pct=40)
    assert buckets[3]["mean"]["util_gpu_pct"] == 0  # a zero stays a zero
    assert buckets[4]["max"]["util_gpu_pct"] == 100  # T0+299.5 in, T0+300 out
    counts_b = [b["count"] for b in body["series"][1]["buckets"]]
    assert counts_b == [0, 0, 1, 0, 0]


async def test_history_shape_and_hand_computed_buckets(client):
    response = await client.get(
        "/api/v1/history", params={"from": str(T0), "to": str(T0 + 300), "points": "5"}
    )
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"from", "to", "step_s", "ts", "series"}
    assert (body["from"], body["to"], body["step_s"]) == (T0, T0 + 300, 60)
    assert body["ts"] == [T0 + 60 * k for k in range(5)]  # the bucket starts, once
    # C's readings are all long before the range, so it is not among "all GPUs"
    assert [s["gpu_uuid"] for s in body["series"]] == [UUID_A, UUID_B]
    series_a = body["series"][0]
    assert {k: v for k, v in series_a.items() if k not in ("count", "mean", "max")} == {
        "gpu_uuid": UUID_A,
        "host": "alpha",
        "gpu_index": 0,
        "gpu_name": "NVIDIA Test GPU",
    }
    assert series_a["count"] == [3, 0, 2, 1, 1]  # the errored row counts
    mean, top = series_a["mean"], series_a["max"]
    assert set(mean) == set(top) == set(CORE_METRIC_NAMES)
    assert mean["util_gpu_pct"] == [15, None, 45, 0, 100]  # a zero stays a zero; the gap: null
    assert top["util_gpu_pct"] == [20, None, 60, 0, 100]  # T0+299.5 in, T0+300 out
    assert mean["temp_c"][0] == 51 and top["temp_c"][0] == 52
    assert mean["power_w"][0] == 105.25 and top["power_w"][0] == 110.5
    assert mean["mem_used_bytes"][0] == 2000 and top["mem_used_bytes"][0] == 3000
    assert mean["fan_pct"] == [None, None, 40, None, None]  # null in every row: null, never 0
    assert all(values[1] is None for values in (*mean.values(), *top.values()))  # the gap
    assert body["series"][1]["count"] == [0, 0, 1, 0, 0]


async def test_history_means_are_rounded_to_what_the_metric_carries(client):
    """A mean of whole percents is whole (half away from zero); watts keep two decimals."""
    response = await client.get(
        "/api/v1/history",
        params={"gpu": UUID_A, "from": str(T0 + 30), "to": str(T0 + 330), "points": "5"},
    )
    body = await response.json()
    assert body["step_s"] == 120  # 60 s would need 6 aligned buckets
    assert body["ts"] == [T0 - 60 + 120 * k for k in range(4)]
    (series,) = body["series"]
    assert series["count"][0] == 4  # T0-10 lies before `from` but inside the first bucket
    assert series["mean"]["util_gpu_pct"][0] == round((99 + 10 + 20) / 3) == 43
    assert isinstance(series["mean"]["util_gpu_pct"][0], int)
    assert series["max"]["util_gpu_pct"][0] == 99
    assert series["max"]["util_gpu_pct"][3] == 77
    rows = await client.get(
        "/api/v1/history",
        params={
            "gpu": UUID_A,
            "from": str(T0 + 30),
            "to": str(T0 + 330),
            "points": "5",
            "shape": "rows",
        },
    )
    buckets = (await rows.json())["series"][0]["buckets"]
    assert buckets[0]["mean"]["util_gpu_pct"] == pytest.approx((99 + 10 + 20) / 3)
    for k, bucket in enumerate(buckets):
        if bucket["mean"] is not None and bucket["mean"]["power_w"] is not None:
            assert series["mean"]["power_w"][k] == round(bucket["mean"]["power_w"], 2)


async def test_history_of_named_gpus_and_metrics(client):
    response = await client.get(
        "/api/v1/history",
        params=[
            ("gpu", UUID_C),
            ("gpu", UUID_A),
            ("gpu", UUID_A),
            ("metric", "temp_c"),
            ("metric", "util_gpu_pct"),
            ("from", str(T0)),
            ("to", str(T0 + 300)),
            ("points", "5"),
        ],
    )
    body = await response.json()
    assert [s["gpu_uuid"] for s in body["series"]] == [UUID_A, UUID_C]
    first = body["series"][0]
    assert list(first["mean"]) == ["util_gpu_pct", "temp_c"]  # in the order of METRIC_NAMES
    assert (first["mean"]["util_gpu_pct"][0], first["mean"]["temp_c"][0]) == (15, 51)
    named = body["series"][1]  # named: shown, all gaps
    assert named["count"] == [0] * 5
    assert named["mean"] == named["max"] == {"util_gpu_pct": [None] * 5, "temp_c": [None] * 5}


@pytest.mark.parametrize(
    ("from_s", "to_s", "points"),
    [
        (T0, T0 + 300, 5),
        (T0 + 1, T0 + 301, 5),
        (T0 + 30, T0 + 330, 5),
        (T0 - 86400 * 30, T0, 500),
        (T0 - 86400 * 30 + 7, T0 + 0.5, 2000),
        (T0 - 86400 * 400, T0, 7),
        (T0, T0 + 0.001, 1),
        (59.0, 61.0, 1),
    ],
)
async def test_history_never_returns_more_buckets_than_points(client, from_s, to_s, points):
    response = await client.get(
        "/api/v1/history",
        params={"gpu": UUID_A, "from": repr(from_s), "to": repr(to_s), "points": str(points)},
    )
    assert response.status == 200
    body = await response.json()
    starts = body["ts"]
    assert 1 <= len(starts) <= points
    (series,) = body["series"]
    assert len(series["count"]) == len(starts)
    assert all(len(values) == len(starts) for values in series["mean"].values())
    step_s = body["step_s"]
    assert starts[0] <= from_s < starts[0] + step_s
    assert starts[-1] < to_s <= starts[-1] + step_s
    assert all(ts % step_s == 0 for ts in starts)
    assert all(b - a == step_s for a, b in itertools.pairwise(starts))


async def test_history_defaults_to_the_last_hour_in_500_points(client):
    body = await (await client.get("/api/v1/history")).json()
    assert body["to"] - body["from"] == 3600
    assert body["step_s"] == 10  # 3600 s / 500 points = 7.2 s, the next nice width
    assert body["series"] == []  # the fixture's readings are from 2023


BAD_HISTORY_QUERIES = [
    ("from=abc", "from"),
    ("from=", "from"),
    ("from=nan", "from"),
    ("from=NaN", "from"),
    ("from=inf", "from"),
    ("from=-inf", "from"),
    ("from=1e400", "from"),
    ("from=-5", "from"),
    ("from=1e12", "from"),
    ("from=0x10", "from"),
    ("from=%201700000000", "from"),
    ("from=1_700_000_000", "from"),
    ("from=%D9%A3", "from"),  # an Arabic-Indic digit: float() takes it, the API does not
    ("to=abc", "to"),
    ("to=Infinity", "to"),
    (f"from={T0 + 10}&to={T0}", "from"),
    (f"from={T0}&to={T0}", "from"),
    ("to=0", "from"),
    ("points=0", "points"),
    ("points=2001", "points"),
    ("points=-1", "points"),
    ("points=1.5", "points"),
    ("points=abc", "points"),
    ("points=", "points"),
    ("points=1e3", "points"),
    ("points=99999999999999999999", "points"),
    ("points=5&points=6", "points"),
    ("from=1&from=2", "from"),
    ("gpu=", "gpu"),
    ("gpu=" + "x" * 97, "gpu"),
    ("gpu=GPU-a%00b", "gpu"),
    ("metric=bogus", "metric"),
    ("metric=", "metric"),
    ("form=1", "form"),
    ("gpus=x", "gpus"),
    ("shape=table", "shape"),
    ("shape=", "shape"),
    ("shape=rows&shape=columns", "shape"),
]


@pytest.mark.parametrize(("query", "named"), BAD_HISTORY_QUERIES)
async def test_history_refuses_bad_parameters_with_400(client, query, named):
    response = await client.get("/api/v1/history?" + query)
    assert response.status == 400, await response.text()
    body = await response.json()
    assert set(body) == {"error"}
    assert named in body["error"]
    assert client.app[COUNTERS].internal_errors == 0


@pytest.mark.parametrize(
    "query",
    ["gpu=%FF", "gpu=%ED%A0%80", "%FF=1", "from=%FF", "metric=%00", "gpu=%", "gpu=a&&&=&", "=x"],
)
async def test_odd_encodings_are_refused_not_failed(client, query):
    response = await client.get("/api/v1/history?" + query)
    assert response.status in (400, 404)
    assert "error" in await response.json()
    assert client.app[COUNTERS].internal_errors == 0


async def test_history_of_an_unknown_gpu_is_404(client):
    response = await client.get("/api/v1/history", params=[("gpu", UUID_A), ("gpu", "GPU-nope")])
    assert response.status == 404
    assert "GPU-nope" in (await response.json())["error"]


async def test_unknown_routes_and_methods_answer_json(client):
    response = await client.get("/api/v1/nope")
    assert response.status == 404
    assert "error" in await response.json()
    response = await client.post("/api/v1/gpus", data=b"x")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    assert "error" in await response.json()


async def test_large_json_is_gzipped(client):
    response = await client.get("/api/v1/history", params={"from": str(T0), "to": str(T0 + 300)})
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Vary"] == "Accept-Encoding"
    assert (await response.json())["series"]  # the client inflated it


async def test_a_body_gzipped_in_a_thread_is_the_body_sent_plain(client):
    params = {"from": str(T0), "to": str(T0 + 2000), "points": "2000"}
    plain = await client.get("/api/v1/history", params=params, headers={"Accept-Encoding": ""})
    assert "Content-Encoding" not in plain.headers
    body = await plain.read()
    assert len(body) > COMPRESS_IN_THREAD_BYTES
    zipped = await client.get("/api/v1/history", params=params, auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()) == body


async def test_query_plans_use_the_key_never_a_scan(db_path):
    conn = sqlite3.connect(db_path)
    plans = {
        "latest": (LATEST_SQL, (1,)),
        "history": (history_sql(METRIC_NAMES), (60, 5, 1, T0, T0 + 300)),
    }
    for name, (sql, parameters) in plans.items():
        plan = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, parameters))
        assert "USING PRIMARY KEY (gpu_id=?" in plan, (name, plan)
        assert "SCAN" not in plan, (name, plan)
    latest_plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + LATEST_SQL, (1,)))
    assert "TEMP B-TREE" not in latest_plan  # read from the end of the key, not sorted
    conn.close()


async def test_the_web_process_never_writes_the_file(aiohttp_client, config, db_path):
    before = (hashlib.sha256(db_path.read_bytes()).hexdigest(), db_path.stat().st_mtime_ns)
    client = await aiohttp_client(create_app(config))
    for path in ("/api/v1/gpus", f"/api/v1/history?from={T0}&to={T0 + 300}", "/healthz"):
        assert (await client.get(path)).status in (200, 503)
    store = client.app[STORE]
    with pytest.raises(StoreError, match="readonly"):
        await store.call(lambda conn: conn.execute("DELETE FROM samples"), None)
    with pytest.raises(StoreError, match="readonly"):
        await store.call(lambda conn: conn.execute("PRAGMA user_version = 99"), None)
    after = (hashlib.sha256(db_path.read_bytes()).hexdigest(), db_path.stat().st_mtime_ns)
    assert after == before
    wal = db_path.with_name(db_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


async def test_a_file_that_appears_later_is_opened_then(aiohttp_client, tmp_path):
    db_path = tmp_path / "later" / "gpu_stats.db"
    client = await aiohttp_client(create_app(make_config(db_path)))
    body = await (await client.get("/api/v1/gpus")).json()
    assert body["gpus"] == []
    body = await (await client.get("/api/v1/history")).json()
    assert body["series"] == []
    assert (await client.get("/api/v1/history", params={"gpu": UUID_A})).status == 404
    health = await client.get("/healthz")
    assert health.status == 503
    assert any("does not exist" in p for p in (await health.json())["problems"])

    db_path.parent.mkdir()
    sqlite3.connect(db_path).close()  # the writer has created the file, not its tables yet
    assert (await (await client.get("/api/v1/gpus")).json())["gpus"] == []

    conn = create_db(db_path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, T0, T0)
    add_sample(conn, 1, T0, util_gpu_pct=42)
    body = await (await client.get("/api/v1/gpus")).json()
    assert [g["latest"]["util_gpu_pct"] for g in body["gpus"]] == [42]
    conn.close()


async def test_a_slow_query_is_stopped_with_503(aiohttp_client, tmp_path):
    db_path = tmp_path / "big.db"
    conn = create_db(db_path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, T0, T0 + 20_000)
    conn.execute("BEGIN")  # one commit, not 20,000
    conn.executemany(
        "INSERT INTO samples (gpu_id, ts, util_gpu_pct) VALUES (1, ?, ?)",
        ((T0 + k, k % 100) for k in range(20_000)),
    )
    conn.execute("COMMIT")
    conn.close()
    app = create_app(make_config(db_path), query_time_limit_s=0.0)
    client = await aiohttp_client(app)
    response = await client.get("/api/v1/history", params={"from": str(T0), "to": str(T0 + 20_000)})
    assert response.status == 503
    assert "longer than" in (await response.json())["error"]
    assert app[COUNTERS].internal_errors == 0


async def test_a_file_that_is_not_a_database_is_503_not_500(aiohttp_client, tmp_path):
    db_path = tmp_path / "junk.db"
    db_path.write_bytes(b"this is not an SQLite file" * 100)
    app = create_app(make_config(db_path))
    client = await aiohttp_client(app)
    response = await client.get("/api/v1/gpus")
    assert response.status == 503
    assert "error" in await response.json()
    assert (await client.get("/healthz")).status == 503
    assert app[COUNTERS].internal_errors == 0


async def test_index_renders_with_its_context(aiohttp_client, db_path, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "index.html").write_text(
        "{{ simulated }}|{{ host_name }}|{{ interval_s }}|{{ version }}"
    )
    config = make_config(db_path, PCW_SOURCE="simulated", PCW_HOST_NAME="<b>box</b>")
    client = await aiohttp_client(create_app(config, templates_dir=templates))
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    simulated, host, interval, version = (await response.text()).split("|")
    assert (simulated, interval) == ("True", "10.0")
    assert host == "&lt;b&gt;box&lt;/b&gt;"  # autoescape is on
    assert version


async def test_the_real_dashboard_page_renders(client):
    response = await client.get("/")
    assert response.status == 200
    assert "testhost" in await response.text()


async def test_static_files_are_cached_and_gzipped(aiohttp_client, config, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    script = "console.log('pyCudaWatch');\n" * 100
    (static / "app.js").write_text(script)
    (static / "lib.js").write_text("var lib = 1;\n" * 100)
    (static / "lib.js.gz").write_bytes(gzip.compress(b"var lib = 2;\n" * 100))
    client = await aiohttp_client(create_app(config, static_dir=static))

    response = await client.get("/static/app.js")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-cache"  # no ?v=: revalidated each time
    assert response.headers["Content-Encoding"] == "gzip"  # compressed on the fly
    assert await response.text() == script

    response = await client.get("/static/lib.js")
    assert response.headers["Content-Encoding"] == "gzip"
    assert await response.text() == "var lib = 2;\n" * 100  # the precompressed file beside it

    response = await client.get("/static/app.js", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in response.headers
    assert await response.text() == script

    assert (await client.get("/static/missing.js")).status == 404
