"""Hostile input: no query string, path, method or websocket frame makes a 500 or stops the feed.

PCW_FUZZ_EXAMPLES (default 10,000) sets how many requests the HTTP fuzz sends; the parser fuzz
checks a quarter as many queries, the ZeroMQ fuzz a tenth as many messages, and the websocket
fuzz opens a twentieth as many connections.
The HTTP fuzz drives one in-process server through one event loop from a synchronous
hypothesis test, so that every example costs one request, not a server start.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from yarl import URL

from common.messages import TOPIC, Tick
from common.metrics import METRIC_NAMES
from services.web.app import create_app
from services.web.buckets import bucket_span, choose_step_s
from services.web.feed import LiveFeed
from services.web.keys import COUNTERS, FEED, HUB
from services.web.params import (
    HISTORY_PARAMETERS,
    MAX_EPOCH_S,
    MAX_POINTS,
    ParamError,
    parse_history_query,
)
from services.web.websocket import WS_MAX_MESSAGE_BYTES
from tests.fuzzing import FUZZ_EXAMPLES
from tests.web.conftest import (
    T0,
    UUID_A,
    UUID_B,
    UUID_C,
    add_gpu,
    add_sample,
    create_db,
    host_tick,
    make_config,
    make_tick,
)

WS_FUZZ_EXAMPLES = max(50, FUZZ_EXAMPLES // 20)
PARSER_FUZZ_QUERIES = max(100, FUZZ_EXAMPLES // 4)
# Examples that go through a server are not shrunk: each costs real requests, and shrinking a
# failure would take hypothesis's full five minutes. The failure names the request instead.
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)
HTTP_BATCH = 10
NOW_S = T0 + 3600.0

# -- what a hostile client sends ---------------------------------------------------------------
#
# Hypothesis spends a fraction of a millisecond on each draw, and 10,000 requests must fit in
# about a minute on two cores; st.text is one draw however long the text. So a query or path is
# drawn as text over an alphabet of code points, each standing for a token below (a parameter,
# a boundary value, a broken percent escape ...): one cheap draw gives a long hostile query,
# and hypothesis still shrinks it token by token.

QUERY_TOKENS = (
    *(f"{name}=" for name in (*HISTORY_PARAMETERS, "form", "", "gpu[]", "FROM", "from%20")),
    *("&", "&", "&&", "=", ";", "+", "#"),
    *(str(digit) for digit in range(10)),
    *(".", "-", "e", "E", "e+", "e-", "x", "_", "%20", "%09", "%2B", "%2D", "%2E"),
    *("0", "1", "-1", "5", "500", "2000", "2001", "1.5", ".5", "5.", "1e308", "1e400", "1e11"),
    *("1e-9", "nan", "NaN", "inf", "-inf", "Infinity", "0x10", "1_0", "99999999999999999999"),
    *(repr(T0), repr(T0 + 300), repr(T0 + 299.5), repr(T0 - 86400 * 40), repr(NOW_S)),
    *(UUID_A, UUID_B, UUID_C, "GPU-live", "GPU-nope", "GPU-", "x" * 97),
    *METRIC_NAMES[:4],
    *("%", "%F", "%FF", "%fe", "%00", "%ED%A0%80", "%C0%AF", "%zz", "%25", "%26", "%3D", "%23"),
    *("%C3%A9", "%D9%A3", "%EF%BC%91", "%F0%9F%94%A5", "%E2%80%AE", "'", '"', "<", ">", "\\"),
)
PATH_TOKENS = (
    *("/", "/", "//", "api", "v1", "history", "gpus", "healthz", "ws", "static", "metrics"),
    *("app.js", "app.css", "favicon.svg", "vendor", "bootstrap", "index.html", ".gz"),
    *(".", "..", "%2e%2e", "%2F", "%2f", "%5C", "\\", "%00", "%FF", "%", "~", ";", ":"),
    *("x", "1", "A", "%20", "%C3%A9", "@", "!", "$", "'", "(", ")", "*", ",", "+", "="),
)


def token_text(tokens: tuple[str, ...], max_tokens: int) -> st.SearchStrategy[str]:
    """Return a strategy of strings made of up to max_tokens tokens, drawn in one draw."""
    first = 0x4E00  # a range of letters: a characters() alphabet is drawn as one string
    alphabet = st.characters(min_codepoint=first, max_codepoint=first + len(tokens) - 1)
    return st.text(alphabet=alphabet, max_size=max_tokens).map(
        lambda text: "".join(tokens[ord(char) - first] for char in text)
    )


def range_query(from_s: float, span_s: float, points: int | None, gpu: str | None) -> str:
    pairs = [("from", repr(from_s)), ("to", repr(from_s + span_s))]
    pairs += [("points", str(points))] if points is not None else []
    pairs += [("gpu", gpu)] if gpu is not None else []
    return urllib.parse.urlencode(pairs)


# Well-formed ranges, most near the stored readings: these reach the SQL and the bucketing.
range_queries = st.builds(
    range_query,
    from_s=st.one_of(st.floats(T0 - 1e7, T0 + 1e3), st.floats(0, MAX_EPOCH_S)),
    span_s=st.floats(1e-6, 1e9),
    points=st.none() | st.integers(1, MAX_POINTS),
    gpu=st.sampled_from([None, None, UUID_A, UUID_B, UUID_C, "GPU-live", "GPU-nope"]),
)
# Any text a script could put in a value, percent-encoded as UTF-8.
text_queries = st.tuples(st.sampled_from(HISTORY_PARAMETERS), st.text(max_size=30)).map(
    lambda pair: urllib.parse.urlencode([pair])
)
token_queries = token_text(QUERY_TOKENS, 24)
queries = st.one_of(token_queries, token_queries, range_queries, text_queries)
ROUTES = ["/api/v1/history"] * 6 + ["/api/v1/gpus", "/healthz", "/ws", "/"]
paths = st.one_of(
    st.sampled_from(ROUTES),
    st.tuples(
        st.sampled_from(["/", "/api/v1/", "/static/", "/static/vendor/"]),
        token_text(PATH_TOKENS, 12),
    ).map("".join),
)
methods = st.sampled_from(["GET"] * 24 + ["HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
requests = st.tuples(methods, paths, queries)

# The parser fuzz calls parse_history_query directly, with names and values of any code points.
INTERESTING_VALUES = [
    "",
    "0",
    "-0",
    "1",
    "1.5",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "1e400",
    "1e11",
    "99999999999999999999",
    "2000",
    "2001",
    "0x10",
    "1_000",
    " 1",
    "1 ",
    "\u0663",  # an Arabic-Indic 3: float() takes it, the API must not
    "\uff11",  # a fullwidth 1: the same
    repr(T0),
    repr(NOW_S),
    UUID_A,
    "x" * 97,
    "\x00",
    "\ud800",
    *METRIC_NAMES,
]
names = st.one_of(st.sampled_from([*HISTORY_PARAMETERS, "form", ""]), st.text(max_size=8))


# -- the HTTP fuzz -----------------------------------------------------------------------------


@dataclass
class Served:
    """One in-process server and client, driven from synchronous code through one loop."""

    runner: asyncio.Runner
    client: TestClient

    def send_all(self, requests: list[tuple[str, str]]) -> list[tuple[int, str, bytes]]:
        """Send each (method, target) at once, the target byte for byte (never re-quoted).

        Return each answer's status, content type and body.
        """
        base = f"http://{self.client.host}:{self.client.port}"

        async def one(method: str, target: str) -> tuple[int, str, bytes]:
            url = URL(base + target, encoded=True)
            # no gzip, so that the body read is the body sent
            headers = {"Accept-Encoding": "identity"}
            async with self.client.session.request(method, url, headers=headers) as response:
                return response.status, response.content_type, await response.read()

        async def every() -> list[tuple[int, str, bytes]]:
            return await asyncio.gather(*(one(method, target) for method, target in requests))

        return self.runner.run(every())


async def started_client(app: web.Application) -> TestClient:
    """Start the app on a free port (what the aiohttp_client fixture does) and a client for it."""
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    """Serve a file with GPUs that read fine, are lost, or never read, and a live tick."""
    path = tmp_path / "fuzz.db"
    conn = create_db(path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, T0, T0 + 600)
    add_gpu(conn, 2, UUID_B, "alpha", 1, T0, T0 + 600)
    add_gpu(conn, 3, UUID_C, "<b>beta</b>", 0, T0, T0)
    for k in range(61):
        add_sample(conn, 1, T0 + 10 * k, util_gpu_pct=k % 101, temp_c=40 + k % 30)
        add_sample(conn, 2, T0 + 10 * k, error="GPU is lost" if k > 30 else None, util_gpu_pct=1)
    conn.close()
    with asyncio.Runner() as runner:
        app = create_app(make_config(path))
        client = runner.run(started_client(app))
        app[FEED].handle(host_tick(T0 + 700, {UUID_B: "GPU is lost", "GPU-live": None}).to_frames())
        try:
            yield Served(runner, client)
        finally:
            runner.run(client.close())


def check_answer(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    """Assert what any client may rely on, whatever it sent."""
    route = path if path in ROUTES else None
    if method not in ("GET", "HEAD"):
        assert status in (404, 405), status
    elif route == "/healthz":
        assert status in (200, 503), status
    elif route == "/ws":
        assert status == 400, status  # no upgrade asked for
    elif route == "/":
        assert status == 200, status
    elif route is not None:
        assert status in (200, 400, 404), status
    else:
        # A file under /static/ can be hit by chance; aiohttp refuses a path that leaves it.
        assert status in (200, 400, 403, 404), status
    if method == "HEAD":
        assert body == b""
        return
    if route is None and path.startswith("/static/") and status == 404 and body == b"":
        return  # a file that is not there: aiohttp's static files answer 404 with no body
    if route == "/healthz" and status in (200, 503):
        assert content_type == "application/json"
        assert json.loads(body)["status"] in ("ok", "degraded", "down")
    elif status >= 400 or route not in (None, "/"):
        assert content_type == "application/json", (status, content_type, body[:200])
        answer = json.loads(body)
        assert isinstance(answer, dict)
        assert ("error" in answer) == (status >= 400), answer
        if status == 200 and route == "/api/v1/history":
            check_history(answer)
        if status == 200 and route == "/api/v1/gpus":
            for gpu in answer["gpus"]:
                in_error = gpu["latest"] is not None and gpu["latest"]["error"] is not None
                assert (gpu["error_since_ts"] is not None) == in_error, gpu


def check_history(answer: dict) -> None:
    assert 0 <= answer["from"] < answer["to"] <= MAX_EPOCH_S
    step_s = answer["step_s"]
    if "ts" not in answer:  # shape=rows
        for series in answer["series"]:
            buckets = series["buckets"]
            assert 1 <= len(buckets) <= MAX_POINTS
            assert all(bucket["ts"] % step_s == 0 for bucket in buckets)
        return
    assert 1 <= len(answer["ts"]) <= MAX_POINTS
    assert all(ts % step_s == 0 for ts in answer["ts"])
    for series in answer["series"]:
        assert len(series["count"]) == len(answer["ts"])


def test_no_request_makes_the_web_process_fail(served):
    """PCW_FUZZ_EXAMPLES requests (10,000 by default) against one running app.

    Each example is a batch of HTTP_BATCH requests sent at once: hypothesis's own cost per
    example is then shared, and the store's worker threads see concurrent reads.
    """
    statuses: Counter[int] = Counter()
    counters = served.client.app[COUNTERS]

    @settings(
        max_examples=math.ceil(FUZZ_EXAMPLES / HTTP_BATCH),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        phases=NO_SHRINKING,
    )
    @given(batch=st.lists(requests, min_size=HTTP_BATCH, max_size=HTTP_BATCH))
    def one(batch: list[tuple[str, str, str]]) -> None:
        targets = [(method, f"{path}?{query}" if query else path) for method, path, query in batch]
        answers = served.send_all(targets)
        for (method, path, _query), (_method, target), answer in zip(
            batch, targets, answers, strict=True
        ):
            status, content_type, body = answer
            statuses[status] += 1
            try:
                check_answer(method, path, status, content_type, body)
            except AssertionError as error:
                raise AssertionError(f"{method} {target}: {error}") from None
        assert counters.internal_errors == 0, targets

    started = time.monotonic()
    one()
    elapsed_s = time.monotonic() - started
    cases = sum(statuses.values())
    print(f"HTTP fuzz: {cases} requests in {elapsed_s:.1f} s: {dict(sorted(statuses.items()))}")
    assert cases >= FUZZ_EXAMPLES
    # The fuzz must reach past the parser, not only be refused by it.
    for status in (200, 400, 404):
        assert statuses[status] >= FUZZ_EXAMPLES // 50, dict(statuses)
    health = json.loads(served.send_all([("GET", "/healthz")])[0][2])
    assert health["internal_errors"] == 0


any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)  # surrogates too
raw_pairs = st.lists(
    st.tuples(names, st.one_of(st.sampled_from(INTERESTING_VALUES), any_text)), max_size=6
)
token_pairs = token_queries.map(
    lambda text: urllib.parse.parse_qsl(text, keep_blank_values=True, errors="surrogateescape")
)
PARSER_BATCH = 10


@settings(max_examples=math.ceil(PARSER_FUZZ_QUERIES / PARSER_BATCH), deadline=None)
@given(
    batch=st.lists(st.one_of(raw_pairs, token_pairs), min_size=PARSER_BATCH, max_size=PARSER_BATCH),
    now_s=st.one_of(st.just(NOW_S), st.floats(min_value=0, max_value=MAX_EPOCH_S)),
)
def test_the_history_parser_accepts_a_query_or_names_its_fault(batch, now_s):
    """Queries of any code points: a checked query whose buckets fit, or a ParamError, never
    another exception. (What HTTP can carry is fuzzed through HTTP above; this adds lone
    surrogates and the like, which no request can send.)"""
    for pairs in batch:
        try:
            parsed = parse_history_query(MultiDict(pairs), now_s=now_s)
        except ParamError as error:
            assert str(error)
            continue
        assert 0 <= parsed.from_s < parsed.to_s <= MAX_EPOCH_S, pairs
        assert 1 <= parsed.points <= MAX_POINTS
        assert set(parsed.metrics) <= set(METRIC_NAMES) and parsed.metrics
        step_s = choose_step_s(parsed.from_s, parsed.to_s, parsed.points)
        first, count = bucket_span(parsed.from_s, parsed.to_s, step_s)
        assert 1 <= count <= parsed.points, pairs
        assert first * step_s <= parsed.from_s and parsed.to_s <= (first + count) * step_s


# -- the websocket fuzz ------------------------------------------------------------------------

WS_KEY = base64.b64encode(b"pyCudaWatch fuzz").decode()
OPCODES = {"continuation": 0x0, "text": 0x1, "binary": 0x2, "close": 0x8, "ping": 0x9, "pong": 0xA}


def ws_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    claimed_length: int | None = None,
    key: bytes = b"\x01\x02\x03\x04",
) -> bytes:
    """Return one websocket frame as the client side writes it (RFC 6455, section 5.2).

    claimed_length: the length put in the header when it should lie about the payload.
    """
    length = len(payload) if claimed_length is None else claimed_length
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if masked:
        payload = bytes(byte ^ key[k % 4] for k, byte in enumerate(payload))
        head += key
    return head + payload


def close_code(received: bytes) -> int | None:
    """Return the code of the server's close frame in what it sent, None if it sent none."""
    at = 0
    while at + 2 <= len(received):
        opcode, length = received[at] & 0xF, received[at + 1] & 0x7F
        at += 2
        if length == 126:
            (length,) = struct.unpack("!H", received[at : at + 2])
            at += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", received[at : at + 8])
            at += 8
        if opcode == OPCODES["close"]:
            return struct.unpack("!H", received[at : at + 2])[0] if length >= 2 else None
        at += length
    return None


async def raw_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open /ws over a plain TCP connection, so that any bytes can follow the handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            "GET /ws HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def send_raw_frames(port: int, frames: list[bytes], then_close: bool = True) -> bytes:
    """Send frames on a fresh /ws connection, end it, and return all the server sent."""
    reader, writer = await raw_websocket(port)
    try:
        for frame in frames:
            writer.write(frame)
        if then_close:
            writer.write(ws_frame(OPCODES["close"], struct.pack("!H", 1000)))
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # a frame that claims more bytes than sent ends at EOF
    except ConnectionError:
        pass  # the server already hung up on what came first
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


frame_payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(str.encode),
    st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", b"{}", b'{"type":"subscribe"}', b"\x00" * 4]),
    st.integers(min_value=WS_MAX_MESSAGE_BYTES - 2, max_value=3 * WS_MAX_MESSAGE_BYTES).map(
        lambda n: b"x" * n
    ),
)
# Frames a client may send: data (UTF-8 or not), pings and pongs, fragments; all masked.
fair_frames = st.one_of(
    st.builds(
        ws_frame,
        opcode=st.sampled_from([0x1, 0x2]),
        payload=frame_payloads,
        fin=st.booleans() | st.just(True),
        key=st.binary(min_size=4, max_size=4),
    ),
    st.builds(ws_frame, opcode=st.sampled_from([0x9, 0xA]), payload=st.binary(max_size=125)),
    st.builds(ws_frame, opcode=st.just(0x0), payload=frame_payloads, fin=st.booleans()),
)
# Frames no client should send: any opcode, reserved bits, unmasked, lengths that lie.
foul_frames = st.builds(
    ws_frame,
    opcode=st.integers(0, 15),
    payload=frame_payloads,
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    masked=st.booleans(),
    claimed_length=st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=1 << 17),
        st.sampled_from([(1 << 63) - 1, 1 << 32, WS_MAX_MESSAGE_BYTES + 1]),
    ),
    key=st.binary(min_size=4, max_size=4),
)
raw_frames = st.one_of(fair_frames, fair_frames, fair_frames, foul_frames)


@pytest.fixture
def live_served(tmp_path, publisher) -> Iterator[tuple[Served, object]]:
    """Serve a live app fed by a real ZeroMQ publisher; return it and the publisher socket."""
    pub, endpoint = publisher
    path = tmp_path / "ws.db"
    create_db(path).close()
    with asyncio.Runner() as runner:
        client = runner.run(started_client(create_app(make_config(path, PCW_SUBSCRIBE=endpoint))))
        try:
            yield Served(runner, client), pub
        finally:
            runner.run(client.close())


async def tick_arrives(ws: aiohttp.ClientWebSocketResponse, host: str, seq: int) -> None:
    """Read until the tick `seq` of `host`; copies of earlier ones (sent while joining) pass."""
    while True:
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.TEXT, message
        body = json.loads(message.data)
        if body["type"] == "tick" and body["tick"]["host"] == host:
            assert body["tick"]["seq"] <= seq, body["tick"]["seq"]
            if body["tick"]["seq"] == seq:
                return


async def join_feed(pub, ws: aiohttp.ClientWebSocketResponse, host: str) -> None:
    """Publish tick 0 of `host` until `ws` gets it: PUB drops everything until the SUB joins."""
    for _attempt in range(200):
        pub.send_multipart(make_tick(host=host, seq=0, ts=time.time()).to_frames())
        try:
            await asyncio.wait_for(tick_arrives(ws, host, 0), 0.05)
            return
        except TimeoutError:
            continue
    raise AssertionError("the client never got a tick")


def test_no_websocket_frame_harms_the_server_or_other_clients(live_served):
    """Random frames (text, binary, control, fragments, reserved bits, unmasked, lying lengths,
    oversized) on fresh connections; after each, a watching client still gets the next tick."""
    served, pub = live_served
    app, runner, port = served.client.app, served.runner, served.client.port
    watcher = runner.run(served.client.ws_connect("/ws"))
    first = runner.run(watcher.receive(timeout=5))
    assert json.loads(first.data)["type"] == "snapshot"
    sent: Counter[str] = Counter()
    closes: Counter[int | None] = Counter()

    async def tick_reaches_watcher(seq: int) -> None:
        pub.send_multipart(make_tick(host="fuzz", seq=seq, ts=time.time()).to_frames())
        await asyncio.wait_for(tick_arrives(watcher, "fuzz", seq), 5)

    runner.run(join_feed(pub, watcher, "fuzz"))

    @settings(
        max_examples=WS_FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        phases=NO_SHRINKING,
    )
    @given(frames=st.lists(raw_frames, min_size=1, max_size=4))
    def one(frames: list[bytes]) -> None:
        sent["examples"] += 1
        closes[close_code(runner.run(send_raw_frames(port, frames)))] += 1
        runner.run(tick_reaches_watcher(sent["examples"]))
        assert app[COUNTERS].internal_errors == 0
        assert app[FEED].internal_errors == 0

    started = time.monotonic()
    one()
    elapsed_s = time.monotonic() - started
    print(f"websocket fuzz: {sent['examples']} connections in {elapsed_s:.1f} s, closed {closes}")
    # The frames reach the size limit and the protocol checks, not only the happy path.
    assert closes[aiohttp.WSCloseCode.MESSAGE_TOO_BIG] >= WS_FUZZ_EXAMPLES // 50
    assert closes[aiohttp.WSCloseCode.PROTOCOL_ERROR] >= WS_FUZZ_EXAMPLES // 50
    runner.run(wait_for(lambda: app[HUB].client_count == 1))  # every fuzz connection is gone
    assert app[HUB].dropped_clients == 0  # the watcher was never too slow: nothing was held up
    runner.run(watcher.close())


async def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("what", "frames"),
    [
        ("one text frame over the limit", [ws_frame(0x1, b"x" * (WS_MAX_MESSAGE_BYTES + 1))]),
        ("one binary frame over the limit", [ws_frame(0x2, b"\0" * (WS_MAX_MESSAGE_BYTES + 1))]),
        (
            "fragments that add up to over the limit",
            [ws_frame(0x1, b"x" * 3000, fin=False), ws_frame(0x0, b"x" * 3000)],
        ),
        (
            "a header that claims 2**63 - 1 bytes",
            [ws_frame(0x2, b"", claimed_length=(1 << 63) - 1)],
        ),
    ],
)
async def test_an_oversized_message_closes_only_its_own_connection(
    aiohttp_client, tmp_path, publisher, what, frames
):
    pub, endpoint = publisher
    path = tmp_path / "big.db"
    create_db(path).close()
    client = await aiohttp_client(create_app(make_config(path, PCW_SUBSCRIBE=endpoint)))
    other = await client.ws_connect("/ws")
    assert json.loads((await other.receive(timeout=5)).data)["type"] == "snapshot"
    started = time.monotonic()
    received = await send_raw_frames(client.port, frames, then_close=False)
    assert close_code(received) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG, (what, received[-40:])
    assert time.monotonic() - started < 5  # refused at once, never read to the end
    await join_feed(pub, other, "big")
    assert client.app[COUNTERS].internal_errors == 0
    await other.close()


# -- the ZeroMQ fuzz ---------------------------------------------------------------------------

GOOD_TICK = make_tick(host="alpha", seq=1, ts=T0 + 400, gpu_count=2, util_gpu_pct=5).to_frames()


def flipped(payload: bytes, at: int, byte: int) -> bytes:
    at %= len(payload)
    return payload[:at] + bytes([byte]) + payload[at + 1 :]


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
    | st.floats()
    | st.text(max_size=10)
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=6,
)
tick_like = st.fixed_dictionaries(
    {},
    optional={
        name: msgpack_values
        for name in ("host", "sampler_id", "seq", "ts", "interval_s", "error", "gpus", "extra")
    },
)
payloads = st.one_of(
    st.binary(max_size=200),
    tick_like.map(msgspec.msgpack.encode),
    msgpack_values.map(msgspec.msgpack.encode),
    st.builds(flipped, st.just(GOOD_TICK[2]), st.integers(0, 10_000), st.integers(0, 255)),
    st.integers(0, len(GOOD_TICK[2])).map(lambda n: GOOD_TICK[2][:n]),
)
messages = st.one_of(
    st.tuples(st.just(TOPIC), st.sampled_from([b"1", b"1", b"2", b"", b"01"]), payloads).map(list),
    st.lists(st.binary(max_size=40), min_size=1, max_size=5),
)
ZMQ_BATCH = 10


@settings(max_examples=max(10, FUZZ_EXAMPLES // 10 // ZMQ_BATCH), deadline=None)
@given(batch=st.lists(messages, min_size=ZMQ_BATCH, max_size=ZMQ_BATCH))
def test_no_zeromq_message_makes_the_feed_fail(batch):
    """Any frames: a tick sent on to the browsers, or counted and dropped; never an exception,
    and the next good tick still goes through."""
    sent: list[str] = []
    feed = LiveFeed(on_message=sent.append)
    for frames in [*batch, GOOD_TICK]:
        malformed, published = feed.malformed_messages, len(sent)
        if feed.handle(frames):
            assert feed.malformed_messages == malformed
            assert len(sent) == published + 1
            tick = json.loads(sent[-1])["tick"]
            decoded = Tick.from_frames(frames)
            stored = {reading.uuid: reading.metric_values() for reading in decoded.gpus}
            wire = msgspec.json.decode(msgspec.json.encode(decoded))
            readings = {reading["uuid"]: reading for reading in wire.pop("gpus")}
            assert {**tick, "gpus": None} == {**wire, "gpus": None}
            assert {gpu["gpu_uuid"] for gpu in tick["gpus"]} == set(readings)
            for gpu in tick["gpus"]:  # each GPU as /api/v1/gpus lists it
                reading = readings[gpu["gpu_uuid"]]
                latest = {"ts": wire["ts"], "error": reading["error"]}
                latest |= dict(zip(METRIC_NAMES, stored[gpu["gpu_uuid"]], strict=True))
                assert gpu["latest"] == latest
                assert (gpu["host"], gpu["gpu_index"]) == (wire["host"], reading["index"])
        else:
            assert feed.malformed_messages == malformed + 1
            assert len(sent) == published  # nothing reached a browser
    assert json.loads(sent[-1])["tick"]["seq"] == 1  # the good tick, last
