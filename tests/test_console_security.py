"""The console against hostile HTTP (issue 10): foreign Host names (DNS rebinding), foreign
origins, idle and flooding connections, token guessing, weak tokens, sessions, paths in answers."""

from __future__ import annotations

import base64
import logging
import random
import socket
import time

import httpx
import pytest
from starlette.testclient import TestClient

from kiosk.config import ConsoleConfig, parse_config
from kiosk.contract.errors import ConfigError
from kiosk.service.console import server as server_module
from kiosk.service.console.app import (
    FailureLimiter,
    Sessions,
    check_binding,
    create_app,
    redact_paths,
    token_bits,
)
from kiosk.service.console.server import FloodFilter, ThreadedServer, connection_cap
from tests import test_service_loop
from tests.test_service_loop import GOOD, make_config, replay, state_is, wait_for

started = test_service_loop.started  # the fixture that starts (and stops) services

TOKEN = "k7Qp2xZr9LmW4vTb8NcY"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PORT = 8080
HOSTILE = [
    f"attacker.example:{PORT}",
    "attacker.example",
    f"localhost.attacker.example:{PORT}",
    f"127.0.0.1.nip.io:{PORT}",
    f"127.0.0.2:{PORT}",
    f"[::2]:{PORT}",
    "[::1",
    "",
]
ROUTES = [
    ("GET", "/health"),
    ("GET", "/"),
    ("GET", "/static/console.js"),
    ("GET", "/api/state"),
    ("GET", "/preview.mjpg"),
    ("GET", "/api/review.jpg"),
    ("GET", "/api/captures"),
    ("GET", "/api/captures/20261121T150135Z-3b6ff043852c"),
    ("GET", "/login?token=x"),
    ("POST", "/api/accept"),
    ("POST", "/api/retake"),
    ("POST", "/api/reload"),
]


@pytest.fixture
def service(tmp_path, started):
    return started(make_config(tmp_path), replay([GOOD]))


def local(app, **kw) -> TestClient:
    return TestClient(app, base_url=f"http://localhost:{PORT}", **kw)


def raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """One request on a fresh socket; the answer's first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def closed(sock: socket.socket, wait_s: float) -> bool:
    """Whether the server closed this connection within `wait_s` (recv sees end of stream)."""
    sock.settimeout(wait_s)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("host", HOSTILE)
def test_a_foreign_host_reaches_no_route(service, host):
    # The default console (loopback, no token) is the one DNS rebinding reaches.
    with local(create_app(service, ConsoleConfig())) as client:
        for method, path in ROUTES:
            origin = {"origin": f"http://{host}"} if method == "POST" else {}
            response = client.request(method, path, headers={"host": host, **origin})
            assert response.status_code == 400, (method, path, response.text)


@pytest.mark.parametrize(
    "host",
    ["localhost", f"localhost:{PORT}", f"127.0.0.1:{PORT}", f"[::1]:{PORT}", "LocalHost:1"],
)
def test_loopback_names_are_served(service, host):
    with local(create_app(service, ConsoleConfig())) as client:
        assert client.get("/health", headers={"host": host}).status_code == 200
        assert client.get("/static/console.js", headers={"host": host}).status_code == 200


def test_bind_address_and_configured_names_are_served(service):
    console = ConsoleConfig(
        host="0.0.0.0", token=TOKEN, allowed_hosts=["kiosk-3.local", "192.168.1.20", "fe80::1"]
    )
    check_binding(console)
    with local(create_app(service, console)) as client:
        for host in ["kiosk-3.local:8080", "192.168.1.20", "[fe80::1]:8080", "localhost"]:
            assert client.get("/health", headers={"host": host}).status_code == 200, host
        for host in ["kiosk-4.local", "0.0.0.0:8080", "192.168.1.21"]:
            assert client.get("/health", headers={"host": host}).status_code == 400, host
    with local(create_app(service, ConsoleConfig(host="192.168.1.20", token=TOKEN))) as client:
        assert client.get("/health", headers={"host": "192.168.1.20:8080"}).status_code == 200


def test_rebinding_cannot_accept_and_download_over_a_socket(service):
    """The issue's attack, byte for byte: Accept with a rebinding Host and matching Origin, then
    download the photo; the same requests with a loopback Host still work."""
    server = ThreadedServer(create_app(service, ConsoleConfig()))
    try:
        port = server.port
        wait_for(state_is(service, "review"))

        def accept(host: str) -> bytes:
            return raw(
                port,
                f"POST /api/accept HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode(),
            )

        assert accept(f"attacker.example:{port}").startswith(b"HTTP/1.1 400")
        assert service.store.list() == []
        answer = accept(f"127.0.0.1:{port}")
        assert answer.startswith(b"HTTP/1.1 200"), answer
        capture_id = service.store.list()[0]["id"]
        for host, status in [("attacker.example", b"400"), ("localhost", b"200")]:
            answer = raw(
                port,
                f"GET /api/captures/{capture_id} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Connection: close\r\n\r\n".encode(),
            )
            assert answer.startswith(b"HTTP/1.1 " + status), answer[:100]
        # No Host at all: HTTP/1.0 may omit it (h11 refuses that in HTTP/1.1 itself).
        for version in (b"1.0", b"1.1"):
            answer = raw(port, b"GET /health HTTP/" + version + b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"origin": f"http://attacker.example:{PORT}"}, 403),
        ({"origin": f"http://127.0.0.1.nip.io:{PORT}"}, 403),
        ({"origin": "http://localhost:3000"}, 403),  # another local web page (other port)
        ({"origin": f"https://localhost:{PORT}"}, 200),  # (browsers name the scheme they used)
        ({"origin": "null"}, 403),
        ({"origin": f"file://localhost:{PORT}"}, 403),
        ({"referer": f"http://attacker.example:{PORT}/page"}, 403),
        ({"referer": f"http://localhost:{PORT}/"}, 200),
        ({"origin": f"http://localhost:{PORT}"}, 200),
        ({"origin": f"http://127.0.0.1:{PORT}"}, 200),  # another allowed name, same console
        ({"origin": f"http://[::1]:{PORT}"}, 200),
        ({"origin": f"http://localhost:{PORT}", "host": f"localhost:{PORT + 1}"}, 403),
        ({}, 200),  # not a browser (curl with the token)
    ],
)
def test_origin_and_referer_are_checked_against_the_allowed_names(service, headers, status):
    with local(create_app(service, ConsoleConfig(token=TOKEN))) as client:
        response = client.post("/api/reload", headers={**AUTH, **headers})
        assert response.status_code == status, response.text


def test_idle_slow_and_kept_alive_connections_are_closed(service):
    console = ConsoleConfig(idle_timeout_s=0.5)
    server = ThreadedServer(create_app(service, console))
    try:
        silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")  # never finishes
        slow_body = socket.create_connection(("127.0.0.1", server.port))
        slow_body.sendall(
            b"POST /api/retake HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n{"
        )
        kept = socket.create_connection(("127.0.0.1", server.port))
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):  # the whole answer, then the connection is left open
            answer += kept.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 3.0
        for sock in [*silent, slow, slow_body, kept]:
            assert closed(sock, max(0.01, deadline - time.monotonic()))
            sock.close()
        # A prompt client is served as before.
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        server.stop()


def test_a_connection_flood_leaves_health_answering_and_logs_once(service, caplog):
    console = ConsoleConfig(max_connections=8, idle_timeout_s=60.0)
    server = ThreadedServer(create_app(service, console))
    flood: list[socket.socket] = []
    try:
        with caplog.at_level(logging.WARNING, logger="kiosk.service.console.server"):
            flood = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
            for _ in range(5):  # a new connection each time: each must get past the flood
                assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
            time.sleep(0.2)
            still_open = sum(not closed(sock, 0.01) for sock in flood)
        assert still_open <= console.max_connections
        shed = [r for r in caplog.records if "console connections open" in r.getMessage()]
        assert len(shed) == 1  # a flood is one line, not one per connection
    finally:
        for sock in flood:
            sock.close()
        server.stop()


def test_connection_cap_stays_under_a_quarter_of_the_file_limit(monkeypatch):
    monkeypatch.setattr(server_module.resource, "getrlimit", lambda kind: (128, 4096))
    assert connection_cap(500) == 32
    assert connection_cap(16) == 16


def test_preview_viewers_are_capped_and_released(service):
    server = ThreadedServer(create_app(service, ConsoleConfig(max_preview_viewers=1)))
    try:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            with client.stream("GET", "/preview.mjpg") as first:
                assert first.status_code == 200
                chunks = first.iter_bytes()  # (kept: a dropped iterator closes the stream)
                next(chunks)
                second = client.get("/preview.mjpg")
                assert second.status_code == 503 and "viewers" in second.json()["error"]
            # The first viewer left: its slot is free again.
            wait_for(lambda: _stream_status(client) == 200)
    finally:
        server.stop()


def _stream_status(client: httpx.Client) -> int:
    with client.stream("GET", "/preview.mjpg") as stream:
        return stream.status_code


def test_wrong_tokens_are_rate_limited_per_client(service, caplog):
    app = create_app(service, ConsoleConfig(token=TOKEN, max_token_failures=3))
    wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
    with caplog.at_level(logging.WARNING, logger="kiosk.service.console.app"):
        with local(app, client=("10.0.0.7", 50000)) as guesser:
            codes = [guesser.get("/api/captures", headers=wrong).status_code for _ in range(3)]
            assert codes == [401, 401, 401]
            refused = guesser.get("/api/captures", headers=AUTH)  # even the right token now
            assert refused.status_code == 429
            assert 50 <= int(refused.headers["retry-after"]) <= 60
            assert guesser.get("/login", params={"token": TOKEN}).status_code == 429
            assert guesser.get("/api/state", headers=wrong).status_code == 429  # no oracle
        with local(app, client=("10.0.0.8", 50000)) as operator:
            assert operator.get("/api/captures", headers=AUTH).status_code == 200
    assert TOKEN not in caplog.text


def test_failure_limiter_forgets_after_its_window():
    limiter = FailureLimiter(limit=2, window_s=0.2)
    limiter.failed("a")
    assert limiter.retry_after("a") == 0.0
    limiter.failed("a")
    assert 0.0 < limiter.retry_after("a") <= 0.2
    assert limiter.retry_after("b") == 0.0
    time.sleep(0.25)
    assert limiter.retry_after("a") == 0.0


@pytest.mark.parametrize(
    "token",
    [
        "a" * 16,
        "a" * 40,
        "1111111111111111",
        "0123456789abcdef",
        "0123456789abcdef0123",
        "abcdefghijklmnopqrstuvwxyz",
        "abababababababababababab",
        "q7x2mq7x2mq7x2mq7x2m",
        "password12345678",
        random.Random(8).getrandbits(64).to_bytes(8, "big").hex(),  # 64 random bits: too few
    ],
)
def test_weak_tokens_are_refused_at_start(token):
    with pytest.raises(ConfigError, match=r"too easy to guess|at least 16"):
        check_binding(ConsoleConfig(token=token))


def test_random_tokens_pass_the_strength_check():
    rng = random.Random(16)  # seeded: about 1 in 200,000 random hex tokens scores under 80
    for _ in range(500):
        raw = rng.getrandbits(128).to_bytes(16, "big")
        assert token_bits(raw.hex()) >= 80  # `openssl rand -hex 16`
        assert token_bits(base64.urlsafe_b64encode(raw).rstrip(b"=").decode()) >= 80
    check_binding(ConsoleConfig(token=TOKEN))


def test_allowed_hosts_from_toml_must_be_names():
    for bad in ([1], ["kiosk.local:80"], ["*.local"], [""]):
        with pytest.raises(ConfigError, match="allowed_hosts"):
            check_binding(parse_config({"console": {"allowed_hosts": bad}}).console)


def test_login_starts_a_session_that_expires(service):
    console = ConsoleConfig(token=TOKEN)
    object.__setattr__(console, "session_s", 0.5)  # under the schema's 60 s floor, to wait less
    app = create_app(service, console)
    with local(app) as client:
        response = client.get("/login", params={"token": TOKEN}, follow_redirects=False)
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("kiosk_session=") and TOKEN not in cookie
        assert "Max-Age=1;" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        session = {"cookie": cookie.split(";")[0]}
    with local(app) as client:
        assert client.get("/api/captures", headers=session).status_code == 200
        assert client.get("/api/state", headers=session).json()["authorized"]
        time.sleep(0.6)  # the cookie is replayed as is: only the server knows it expired
        assert client.get("/api/captures", headers=session).status_code == 401
        assert not client.get("/api/state", headers=session).json()["authorized"]
        for old in ("kiosk_token", "kiosk_session"):  # the old cookie held the token itself
            assert (
                client.get("/api/captures", headers={"cookie": f"{old}={TOKEN}"}).status_code == 401
            )


def test_sessions_are_random_and_bounded():
    sessions = Sessions(lifetime_s=60.0)
    ids = [sessions.start() for _ in range(100)]
    assert len(set(ids)) == 100 and all(len(sid) >= 40 for sid in ids)
    assert sessions.valid(ids[-1]) and not sessions.valid(ids[0])  # oldest dropped past 64
    assert not sessions.valid("")


def test_no_filesystem_path_in_any_answer(tmp_path, started):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = parse_config(
        {"store": {"dir": str(blocker / "store"), "key_file": str(tmp_path / "key")}}
    )
    service = started(config, replay([GOOD]))
    wait_for(lambda: service.store_error)
    assert str(tmp_path) in service.store_error  # what the log and the journal get
    with local(create_app(service, ConsoleConfig())) as client:
        answers = [
            client.get("/health"),
            client.get("/api/state"),
            client.get("/api/captures"),
            client.get("/api/captures/20261121T150135Z-3b6ff043852c"),
        ]
    assert answers[2].status_code == 503
    for answer in answers:
        assert str(tmp_path) not in answer.text, answer.text
    assert "…/" in answers[0].text


def test_unknown_capture_404_names_no_path(service):
    with local(create_app(service, ConsoleConfig())) as client:
        response = client.get("/api/captures/20261121T150135Z-3b6ff043852c")
    assert response.status_code == 404
    assert str(service.store.root) not in response.text and "no capture" in response.text


def test_redact_paths_keeps_file_names_and_urls():
    text = "model file /opt/kiosk/models/eyes.tflite: I/O error; see http://kiosk.local/health"
    assert redact_paths({"a": [text]}) == {
        "a": ["model file …/eyes.tflite: I/O error; see http://kiosk.local/health"]
    }


def test_flood_filter_lets_one_line_through_per_interval():
    flood = FloodFilter(interval_s=0.2)
    records = [
        logging.LogRecord("x", logging.WARNING, __file__, 1, "401: %s from %s", ("GET", i), None)
        for i in range(100)
    ]
    assert sum(flood.filter(r) for r in records) == 1
    other = logging.LogRecord("x", logging.WARNING, __file__, 1, "other %s", (1,), None)
    assert flood.filter(other)  # another kind of message is not held back
    time.sleep(0.25)
    last = logging.LogRecord("x", logging.WARNING, __file__, 1, "401: %s from %s", ("GET", 0), None)
    assert flood.filter(last) and "99 more like this" in last.getMessage()
