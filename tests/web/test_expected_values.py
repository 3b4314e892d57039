"""Expected values written out here, never read back from the code under test.

The security headers and the auth challenge are pinned as text; the database size, the bucket
widths, the empty-bucket filler and union_s are computed by hand in the comments; the history
read from rollups is compared with a plain GROUP BY over the raw readings written below.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import sqlite3
from pathlib import Path

import pytest

from common.dbfile import database_bytes
from common.messages import GpuReading, Tick
from common.metrics import METRIC_NAMES
from services.web.app import create_app
from services.web.auth import PasswordHash, parse_basic
from services.web.buckets import bucket_span, choose_step_s, empty_buckets
from services.web.history_reads import history_sql, rollup_level
from services.web.usage import UsageSpan, covered, union_s
from services.writer.store import Store
from tests.web.conftest import make_config

DAY_S = 86400

# -- security headers, one by one -------------------------------------------------------------

PINNED_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": (
        "camera=(), microphone=(), geolocation=(), usb=(), payment=(), display-capture=()"
    ),
    "Server": "pyCudaWatch",
}


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


@pytest.mark.parametrize("name", sorted(PINNED_HEADERS))
@pytest.mark.parametrize(("url", "status"), [("/", 200), ("/api/v1/gpus", 200), ("/nope", 404)])
async def test_each_security_header_has_its_pinned_value(client, name, url, status):
    response = await client.get(url)
    assert response.status == status
    assert response.headers.getall(name) == [PINNED_HEADERS[name]]


# -- the auth challenge and the Basic header ---------------------------------------------------
# A cheap scrypt (N=2, r=1, p=1) keeps these tests fast; the key is computed here with hashlib.
SALT = b"pinned-salt"


def cheap_hash(password: str) -> str:
    key = hashlib.scrypt(password.encode(), salt=SALT, n=2, r=1, p=1, dklen=16)
    salt, key_text = base64.b64encode(SALT).decode(), base64.b64encode(key).decode()
    return f"scrypt$2$1$1${salt}${key_text}"


def basic(text: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}


@pytest.fixture
async def auth_client(aiohttp_client, config, tmp_path):
    users = tmp_path / "users"
    users.write_text(f"alice:{cheap_hash('s3cret:x')}\n")
    return await aiohttp_client(create_app(make_config(config.db_path, PCW_AUTH_FILE=str(users))))


@pytest.mark.parametrize(
    "headers",
    [{}, basic("alice:wrong"), basic("bob:s3cret:x"), basic("alice"), {"Authorization": "x"}],
)
async def test_the_challenge_is_pinned_and_every_failure_gets_it(auth_client, headers):
    response = await auth_client.get("/api/v1/gpus", headers=headers)
    assert response.status == 401
    assert response.headers.getall("WWW-Authenticate") == [
        'Basic realm="pyCudaWatch", charset="UTF-8"'
    ]
    assert (await response.json()) == {"error": "Unauthorized: GET /api/v1/gpus: sign in"}


async def test_the_refusal_names_at_most_200_characters_of_the_path(auth_client):
    path = "/" + "p" * 299
    response = await auth_client.get(path)
    assert response.status == 401
    assert (await response.json()) == {"error": f"Unauthorized: GET {path[:200]}: sign in"}


async def test_the_right_password_passes_and_health_says_only_its_status(auth_client):
    response = await auth_client.get("/api/v1/gpus", headers=basic("alice:s3cret:x"))
    assert response.status == 200
    assert "WWW-Authenticate" not in response.headers
    health = await auth_client.get("/healthz")
    assert (health.status, await health.json()) == (503, {"status": "unhealthy"})
    health = await auth_client.head("/healthz")
    assert health.status == 503
    refused = await auth_client.post("/healthz")
    assert refused.status == 401


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic YWxpY2U6cHc=", ("alice", "pw")),  # base64("alice:pw")
        ("basic YWxpY2U6cHc=", ("alice", "pw")),  # the scheme is case-insensitive
        ("  Basic   YWxpY2U6cHc=  ", ("alice", "pw")),
        ("Basic YWxpY2U6cDp3", ("alice", "p:w")),  # base64("alice:p:w"): the first ':' splits
        ("Basic OnB3", ("", "pw")),  # base64(":pw")
        ("Basic YWxpY2U6", ("alice", "")),  # base64("alice:")
        ("Basic YWxpY2U=", None),  # base64("alice"): no ':'
        ("Bearer YWxpY2U6cHc=", None),
        ("BasicYWxpY2U6cHc=", None),
        ("Basic YWxpY2U6cHc", None),  # not padded: not valid base64
        ("Basic //79", None),  # bytes ff fe fd: not UTF-8
        ("Basic", None),
        ("Basic YWxp!Y2U6cHc=", None),  # a character outside base64 is refused, not skipped
        ("Basic YWxpY2U6cMO8", ("alice", "p\u00fc")),  # base64("alice:p\xc3\xbc"), UTF-8
    ],
)
def test_the_basic_header_is_parsed_as_written_by_hand(header, expected):
    assert parse_basic(header) == expected


SALT_B64 = base64.b64encode(b"s").decode()
KEY16_B64 = base64.b64encode(bytes(16)).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"scrypt$2$1$1${SALT_B64}${KEY16_B64}",
        f"scrypt$1048576$8$16${SALT_B64}${KEY16_B64}",  # N 2^20, r 8, p 16: 1.1 GB, allowed
        f"scrypt$1024$32$1${SALT_B64}${KEY16_B64}",
        f"  scrypt$4$1$1${SALT_B64}${KEY16_B64}\n",
        # 132 x 31 x (2^19 + 1) + 2^20 = 2,146,439,164 bytes: just under 2^31 - 1
        f"scrypt$524288$31$1${SALT_B64}${KEY16_B64}",
    ],
)
def test_hashes_within_the_limits_are_accepted(text):
    parsed = PasswordHash.parse(text)
    assert (parsed.salt, parsed.key) == (b"s", bytes(16))


BAD_PARAMETERS = "N must be a power of 2 up to 1048576, r 1-32, p 1-16"
NOT_NUMBERS = "N, r and p must be integers, salt and key base64"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"scrypt$3$1$1${SALT_B64}${KEY16_B64}", BAD_PARAMETERS),
        (f"scrypt$x$1$1${SALT_B64}${KEY16_B64}", NOT_NUMBERS),
        (f"scrypt$2$1$1$c2Fs!dA==${KEY16_B64}", NOT_NUMBERS),  # "!" is not skipped
        (f"scrypt$2$1$1${SALT_B64}$AAAAAAAA!AAAAAAAAAAAAAA==", NOT_NUMBERS),
        (f"scrypt$2$1$1$${KEY16_B64}", "the salt is empty or the key shorter than 16 bytes"),
        (
            f"scrypt$1048576$32$1${SALT_B64}${KEY16_B64}",
            "N x r is too large: scrypt would need over 2 GiB to check it",
        ),
        (f"bcrypt$2$1$1${SALT_B64}${KEY16_B64}", "not a scrypt$N$r$p$salt$key hash"),
    ],
)
def test_a_refused_hash_says_why(text, why):
    with pytest.raises(ValueError) as error:
        PasswordHash.parse(text)
    assert str(error.value) == why


@pytest.mark.parametrize(
    "text",
    [
        f"scrypt$1$1$1${SALT_B64}${KEY16_B64}",  # N 1
        f"scrypt$3$1$1${SALT_B64}${KEY16_B64}",  # not a power of 2
        f"scrypt$0$1$1${SALT_B64}${KEY16_B64}",
        f"scrypt$2097152$1$1${SALT_B64}${KEY16_B64}",  # 2^21
        f"scrypt$2$0$1${SALT_B64}${KEY16_B64}",
        f"scrypt$2$33$1${SALT_B64}${KEY16_B64}",
        f"scrypt$2$1$0${SALT_B64}${KEY16_B64}",
        f"scrypt$2$1$17${SALT_B64}${KEY16_B64}",
        # 132 x 32 x (2^20 + 1) + 2^20 bytes is over 2^31 - 1
        f"scrypt$1048576$32$1${SALT_B64}${KEY16_B64}",
        f"scrypt$2$1$1$${KEY16_B64}",  # no salt
        f"scrypt$2$1$1${SALT_B64}${base64.b64encode(bytes(15)).decode()}",  # key of 15 bytes
        f"bcrypt$2$1$1${SALT_B64}${KEY16_B64}",
        f"scrypt$2$1$1${SALT_B64}${KEY16_B64}$",
        f"scrypt$2$1${SALT_B64}${KEY16_B64}",
        f"scrypt$x$1$1${SALT_B64}${KEY16_B64}",
        f"scrypt$2$1$1$!!${KEY16_B64}",
    ],
)
def test_hashes_outside_the_limits_are_refused(text):
    with pytest.raises(ValueError):
        PasswordHash.parse(text)


def test_a_hash_matches_its_password_only():
    parsed = PasswordHash.parse(cheap_hash("pw"))
    assert parsed.matches("pw")
    assert not parsed.matches("pw ")
    assert not parsed.matches("")


# -- the database size -------------------------------------------------------------------------


def test_the_database_size_is_the_file_and_its_wal(tmp_path):
    path = tmp_path / "gpu_stats.db"
    assert database_bytes(path) is None
    path.write_bytes(b"x" * 12_288)
    assert database_bytes(path) == 12_288  # no -wal: the file alone
    (tmp_path / "gpu_stats.db-wal").write_bytes(b"w" * 4_152)
    (tmp_path / "gpu_stats.db-shm").write_bytes(b"s" * 32_768)  # not counted
    assert database_bytes(path) == 12_288 + 4_152


# -- bucket widths and the empty-bucket filler -------------------------------------------------


@pytest.mark.parametrize(
    ("from_s", "to_s", "step_s", "expected"),
    [
        (120, 300, 60, (2, 3)),  # [120, 300): buckets 2, 3, 4
        (125, 301, 60, (2, 4)),  # floor(125 / 60) = 2, ceil(301 / 60) = 6
        (120, 120, 60, (2, 1)),  # an empty range still has one bucket
        (-90, 30, 60, (-2, 3)),  # floor(-1.5) = -2, ceil(0.5) = 1
        (0.5, 0.75, 1, (0, 1)),
    ],
)
def test_bucket_span_by_hand(from_s, to_s, step_s, expected):
    assert bucket_span(from_s, to_s, step_s) == expected


@pytest.mark.parametrize(
    ("from_s", "to_s", "points", "expected"),
    [
        (0, 3600, 60, 60),  # 60 buckets of 60 s fit exactly
        (0, 3601, 60, 120),  # 61 of 60 s do not; 31 of 120 s do
        (30, 3630, 60, 120),  # aligned: 60 s gives buckets 0..60, 61 of them
        (0, 10, 10, 1),
        (0, 11, 10, 2),
        (0, 100 * DAY_S, 10, 10 * DAY_S),  # 100 days in 10 buckets
        (0, 20 * DAY_S, 10, 2 * DAY_S),  # past the ladder the search starts at 2 days
        (0, 15 * DAY_S, 10, 2 * DAY_S),
        (DAY_S / 2, 100.5 * DAY_S, 10, 11 * DAY_S),  # 10 days: buckets 0..10; 11: 0..9
        (0.5 * DAY_S, 3.5 * DAY_S, 1, 4 * DAY_S),  # 3 days: buckets 0, 1; 4 days: bucket 0
        # no candidate within 64 days of 1000 fits 2 buckets: width span / (points - 1)
        (10000.5 * DAY_S, 12000.5 * DAY_S, 2, 2000 * DAY_S),
        # one point and no candidate fits: one bucket from the epoch, 12001 days wide
        (10000.5 * DAY_S, 12000.5 * DAY_S, 1, 12001 * DAY_S),
    ],
)
def test_choose_step_by_hand(from_s, to_s, points, expected):
    assert choose_step_s(from_s, to_s, points) == expected


def test_empty_buckets_by_hand():
    assert empty_buckets(3, 2, 60) == [
        {"ts": 180, "count": 0, "mean": None, "max": None},
        {"ts": 240, "count": 0, "mean": None, "max": None},
    ]
    assert empty_buckets(-1, 1, 10) == [{"ts": -10, "count": 0, "mean": None, "max": None}]
    assert empty_buckets(5, 0, 60) == []


# -- union_s and coverage ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intervals", "expected_s"),
    [
        ([], 0.0),
        ([(0, 10)], 10.0),
        ([(0, 10), (20, 30)], 20.0),  # apart
        ([(0, 10), (5, 15)], 15.0),  # overlapping: [0, 15)
        ([(5, 15), (0, 10)], 15.0),  # in any order
        ([(0, 10), (10, 20)], 20.0),  # touching
        ([(0, 30), (5, 10), (12, 20)], 30.0),  # inside another
        ([(0, 10), (0, 10)], 10.0),  # twice
        ([(0, 10), (2, 4), (8, 12), (20, 21)], 13.0),  # [0, 12) and [20, 21)
        ([(-5, -1), (-3, 2)], 7.0),  # [-5, 2)
        ([(3, 3)], 0.0),
    ],
)
def test_union_s_by_hand(intervals, expected_s):
    assert union_s(intervals) == expected_s


def test_a_span_covers_its_ticks_and_one_interval_inside_the_range():
    span = UsageSpan("G", "alice", start_ts=100.0, end_ts=160.0, interval_s=60.0, used_mem_bytes=1)
    assert covered(span, 0.0, 1000.0) == (100.0, 220.0)  # [100, 160 + 60)
    assert covered(span, 150.0, 200.0) == (150.0, 200.0)
    assert covered(span, 220.0, 300.0) is None  # it ends where the range starts
    assert covered(span, 0.0, 100.0) is None
    assert covered(span, 219.0, 300.0) == (219.0, 220.0)


# -- history from rollups against a plain GROUP BY over the raw readings -----------------------
START_TS = 1_790_006_400.0  # a multiple of 7200
INTERVAL_S = 10.0


@pytest.fixture(scope="module")
def history_db(tmp_path_factory) -> Path:
    rng = random.Random(18)
    path = tmp_path_factory.mktemp("history") / "gpu_stats.db"
    ticks = []
    for seq in range(2600):  # 7.2 hours, with a 25-minute gap
        if 900 <= seq < 1050:
            continue
        gpus = [
            GpuReading(
                index=i,
                uuid=f"GPU-h{i}",
                name="H",
                error="GPU is lost" if rng.random() < 0.03 else None,
                util_gpu_pct=rng.randint(0, 100),
                temp_c=None if rng.random() < 0.4 else rng.randint(30, 90),
                power_w=rng.uniform(50, 700),
                mem_used_bytes=rng.randint(0, 80 << 30),
            )
            for i in range(2)
        ]
        ticks.append(
            Tick(
                host="h",
                sampler_id="s",
                seq=seq,
                ts=START_TS + seq * INTERVAL_S,
                interval_s=INTERVAL_S,
                gpus=gpus,
            )
        )
    store = Store(path)
    for start in range(0, len(ticks), 113):
        store.write(ticks[start : start + 113])
    store.close()
    return path


def naive_history(conn, gpu_id: int, step_s: int, low_s: float, high_s: float) -> list[tuple]:
    aggregates = ", ".join(f"avg({m}), max({m})" for m in METRIC_NAMES)
    return conn.execute(
        f"SELECT CAST(ts / {step_s} AS INTEGER), count(*), {aggregates} FROM samples "
        "WHERE gpu_id = ? AND ts >= ? AND ts < ? GROUP BY 1 ORDER BY 1",
        (gpu_id, low_s, high_s),
    ).fetchall()


def close_enough(mine: tuple, theirs: tuple) -> bool:
    return len(mine) == len(theirs) and all(
        (a is None and b is None)
        or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9))
        for a, b in zip(mine, theirs, strict=True)
    )


@pytest.mark.parametrize("step_s", [60, 120, 600, 1200, 1800, 3600, 7200, 10800])
def test_history_from_rollups_equals_a_plain_group_by_of_the_readings(history_db, step_s):
    level_s = rollup_level(step_s, INTERVAL_S)
    assert level_s is not None
    conn = sqlite3.connect(f"file:{history_db}?mode=ro", uri=True)
    low_s, high_s = START_TS - 7200, START_TS + 8 * 3600  # both multiples of every step
    for gpu_id in (1, 2):
        params = (step_s, int(high_s // step_s), gpu_id, low_s, high_s)
        rolled = conn.execute(history_sql(METRIC_NAMES, level_s), params).fetchall()
        naive = naive_history(conn, gpu_id, step_s, low_s, high_s)
        assert len(rolled) == len(naive) > 0
        for mine, theirs in zip(rolled, naive, strict=True):
            assert tuple(mine[:2]) == tuple(theirs[:2])  # bucket number and readings
            assert close_enough(tuple(mine[2:]), tuple(theirs[2:])), (step_s, mine[0])
    conn.close()
