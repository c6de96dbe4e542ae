"""The console's HTTP surface: token checks, malformed requests, the MJPEG preview, /health."""

from __future__ import annotations

import dataclasses
import logging
import socket
import typing

import cv2
import httpx
import numpy as np
import pytest

from kiosk.config import ConsoleConfig
from kiosk.contract.errors import ConfigError
from kiosk.service.console.app import check_binding, create_app
from kiosk.service.console.server import ThreadedServer
from tests import test_service_loop
from tests.test_service_loop import GOOD, make_config, replay, state_is, wait_for

started = test_service_loop.started  # the fixture that starts (and stops) services

TOKEN = "k7Qp2xZr9LmW4vTb8NcY"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def service(tmp_path, started):
    return started(make_config(tmp_path), replay([GOOD]))


@pytest.fixture
def client(service):
    server = ThreadedServer(create_app(service, ConsoleConfig(token=TOKEN, max_body_bytes=4096)))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"host": "0.0.0.0"}, "set console.token"),
        ({"host": "192.168.1.20", "token": ""}, "set console.token"),
        ({"token": "short"}, "at least 16 characters"),
        ({"token": "0123456789abcdef"}, "too easy to guess"),
        ({"host": "0.0.0.0", "token": TOKEN}, "console.allowed_hosts"),
        ({"allowed_hosts": ["kiosk.local:8080"]}, "not a host name"),
        ({"allowed_hosts": ["*"]}, "not a host name"),
        ({"allowed_hosts": ["http://kiosk.local"]}, "not a host name"),
        ({"idle_timeout_s": 0.0}, "console.idle_timeout_s"),
        ({"max_connections": 1}, "console.max_connections"),
    ],
)
def test_binding_beyond_loopback_needs_a_token(settings, message):
    """The schema refuses these when the config is built, so nothing can bind with them."""
    with pytest.raises(ConfigError, match=message):
        check_binding(ConsoleConfig(**settings))


def test_binding_allowed():
    check_binding(ConsoleConfig())
    check_binding(ConsoleConfig(host="::1"))
    check_binding(ConsoleConfig(host="192.168.1.20", token=TOKEN))
    names = ["kiosk-3.local", "192.168.1.20", "fe80::1"]
    check_binding(ConsoleConfig(host="0.0.0.0", token=TOKEN, allowed_hosts=names))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/accept"),
        ("POST", "/api/retake"),
        ("POST", "/api/reload"),
        ("GET", "/api/captures"),
        ("GET", "/api/captures/20261121T150135Z-3b6ff043852c"),
        ("GET", "/preview.mjpg"),
        ("GET", "/api/review.jpg"),
    ],
)
def test_protected_routes_refuse_without_the_token_and_log_it(client, caplog, method, path):
    with caplog.at_level(logging.WARNING, logger="kiosk.service.console.app"):
        assert client.request(method, path).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
        assert client.request(method, path, headers=wrong).status_code == 401
    assert sum(f"401: {method} {path}" in r.getMessage() for r in caplog.records) == 2
    assert TOKEN not in caplog.text


def test_state_and_health_are_open(client):
    state = client.get("/api/state").json()
    assert state["token_required"] and not state["authorized"]
    assert client.get("/health").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="prompt"' in page.text
    assert client.get("/static/console.js").status_code == 200


def test_accept_with_bearer_token_stores_and_lists(client, service):
    wait_for(state_is(service, "review"))
    session = service.snapshot()["session"]
    still = client.get("/api/review.jpg", headers=AUTH)
    assert cv2.imdecode(np.frombuffer(still.content, np.uint8), 1).shape == (48, 64, 3)
    response = client.post("/api/accept", json={"session": session}, headers=AUTH)
    assert response.status_code == 200, response.text
    capture_id = response.json()["capture_id"]
    listed = client.get("/api/captures", headers=AUTH).json()["captures"]
    assert [c["id"] for c in listed] == [capture_id]
    image = client.get(f"/api/captures/{capture_id}", headers=AUTH)
    assert image.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(image.content, np.uint8), 1).shape == (48, 64, 3)
    assert client.get("/api/captures/nonsense", headers=AUTH).status_code == 404
    assert client.get("/api/review.jpg", headers=AUTH).status_code == 404  # nothing to review
    assert client.post("/api/retake", headers=AUTH).status_code == 409  # nothing under review


def test_login_sets_a_cookie_that_authorizes(client, service):
    assert client.get("/login", params={"token": "nope"}).status_code == 401
    response = client.get("/login", params={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert TOKEN not in cookie  # a session id, not the token
    assert client.get("/api/state").json()["authorized"]
    wait_for(state_is(service, "review"))
    assert client.post("/api/retake").status_code == 200
    assert service.store.list() == []


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/api/accept", {"content": b"{not json"}, 400),
        ("POST", "/api/accept", {"content": b"\xff\xfe"}, 400),
        ("POST", "/api/accept", {"json": [1, 2]}, 422),
        ("POST", "/api/accept", {"json": {"session": "one"}}, 422),
        ("POST", "/api/accept", {"json": {"session": 1, "extra": 2}}, 422),
        ("POST", "/api/accept", {"content": b"x" * 10_000}, 413),
        ("POST", "/api/accept", {"content": iter([b"x" * 1000] * 5)}, 413),  # chunked, no length
        ("POST", "/api/accept", {"headers": {"origin": "http://evil.example"}}, 403),
        ("GET", "/api/accept", {}, 405),
        ("PUT", "/api/retake", {}, 405),
        ("DELETE", "/api/captures", {}, 405),
        ("POST", "/health", {}, 405),
        ("GET", "/api/captures", {"params": {"limit": "-1"}}, 400),
        ("GET", "/api/captures", {"params": {"limit": "lots"}}, 400),
        ("GET", "/api/captures", {"params": {"limit": "²"}}, 400),  # isdigit(), int() fails
        ("GET", "/api/captures", {"params": {"limit": "٣"}}, 400),  # Arabic-Indic 3
        ("POST", "/api/accept", {"content": b"[" * 2000 + b"]" * 2000}, 400),  # RecursionError
        ("POST", "/api/accept", {"headers": {"referer": "http://evil.example/x"}}, 403),
        ("GET", "/nowhere", {}, 404),
    ],
)
def test_malformed_requests_get_4xx_and_the_service_keeps_running(
    client, service, method, path, kwargs, status
):
    headers = {**AUTH, **kwargs.pop("headers", {})}
    response = client.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert client.get("/health").status_code == 200
    assert service.snapshot()["loop_age_s"] < 1.0


def test_console_over_a_real_socket(service):
    config = dataclasses.replace(ConsoleConfig(), token=TOKEN)
    server = ThreadedServer(create_app(service, config))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"GARBAGE \x00\x01 nonsense\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"POST /api/accept HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=5) as http:
            assert http.get("/health").status_code == 200
            with http.stream("GET", "/preview.mjpg") as stream:
                assert stream.headers["content-type"].startswith("multipart/x-mixed-replace")
                chunk = b""
                for piece in stream.iter_bytes():
                    chunk += piece
                    if chunk.count(b"--frame") >= 2:
                        break
        head, _, rest = chunk.partition(b"\r\n\r\n")
        assert b"X-Frame-Index:" in head and b"X-Grabbed:" in head
        length = int(
            next(h for h in head.split(b"\r\n") if h.startswith(b"Content-Length")).split(b":")[1]
        )
        preview = cv2.imdecode(np.frombuffer(rest[:length], np.uint8), 1)
        assert preview.shape == (24, 32, 3)  # the low-resolution stream
    finally:
        server.stop()


# ---- issue 14: prompts table, retake/resume, records, loopback trust, TLS cookie -----------------
def test_messages_and_favicon(client):
    from kiosk.config import ConsoleConfig as Console
    from kiosk.contract.reasons import LANGUAGES

    table = client.get("/api/messages").json()
    assert table["default"] == "en" and set(table["messages"]) == set(LANGUAGES) >= {"en", "de"}
    assert set(table["messages"]["de"]) == set(table["messages"]["en"])
    # The config's choice is exactly the languages the table has.
    assert set(typing.get_args(typing.get_type_hints(Console)["language"])) == set(LANGUAGES)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")


def test_retake_reason_resume_and_accept_with_case_reference(client, service):
    wait_for(state_is(service, "review"))
    assert client.post("/api/resume", headers=AUTH).status_code == 409  # nothing to resume
    response = client.post("/api/retake", json={"reason": "expression"}, headers=AUTH)
    assert response.json()["state"] == "hold"
    assert client.get("/api/state").json()["hold"] == {
        "waiting": True,
        "for_operator": True,
        "left_s": None,
    }
    assert client.post("/api/resume", headers=AUTH).json()["state"] == "present"
    wait_for(state_is(service, "review"))
    long_ref = {"case_ref": "x" * 65}
    assert client.post("/api/accept", json=long_ref, headers=AUTH).status_code == 422
    assert client.post("/api/retake", json={"case_ref": "A-1"}, headers=AUTH).status_code == 422
    response = client.post("/api/accept", json={"case_ref": " A-2024-17 "}, headers=AUTH)
    assert response.status_code == 200, response.text
    [record] = client.get("/api/captures", headers=AUTH).json()["captures"]
    office = record["office"]
    assert (office["case_ref"], office["operator"], office["retakes"]) == (
        "A-2024-17",
        "token",
        ["expression"],
    )


def test_trust_loopback_lets_the_kiosk_screen_in_without_a_token(service):
    from starlette.testclient import TestClient

    config = ConsoleConfig(token=TOKEN, trust_loopback=True)
    server = ThreadedServer(create_app(service, config))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as local:  # from 127.0.0.1
            assert local.get("/api/captures").status_code == 200
            assert local.get("/api/state").json()["authorized"] is True
    finally:
        server.stop()
    remote = TestClient(create_app(service, config), base_url="http://localhost")  # "testclient"
    assert remote.get("/api/captures").status_code == 401


def test_session_cookie_is_secure_under_tls_and_names_the_operator(service):
    from starlette.testclient import TestClient

    config = ConsoleConfig(token=TOKEN, ssl_certfile="cert.pem", ssl_keyfile="key.pem")
    app = create_app(service, config)
    browser = TestClient(app, base_url="https://localhost")
    response = browser.get(
        "/login", params={"token": TOKEN, "operator": "desk 2"}, follow_redirects=False
    )
    assert "Secure" in response.headers["set-cookie"]
    assert browser.get("/api/state").json()["operator"] == "desk 2"
    with pytest.raises(ConfigError, match="ssl_keyfile"):
        ConsoleConfig(ssl_certfile="cert.pem")
