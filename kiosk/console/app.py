"""The operator console: one Starlette app serving the page, its state, the preview and /health.

Routes (docs/service.md has the full table):

    GET  /                    the console page (static/index.html)
    GET  /api/state           JSON the page polls: prompt, state, verdict, forensics, camera
    GET  /preview.mjpg        live preview, multipart/x-mixed-replace JPEG, boxes drawn on it  [T]
    GET  /api/review.jpg      the full-resolution photo under review (downscaled to 1280 px)  [T]
    POST /api/accept          store the photo under review ({"session": n} optional)          [T]
    POST /api/retake          discard it                                                      [T]
    POST /api/reload          reload the model bundle; a failing bundle is not swapped in     [T]
    GET  /api/captures        stored captures (metadata)                                      [T]
    GET  /api/captures/{id}   one stored capture, decrypted JPEG                              [T]
    GET  /login?token=...     sets the session cookie and redirects to /
    GET  /health              {"status", "models", "bundle", "camera", "state"}; 503: checks cannot run

[T]: needs the console token when one is configured — `Authorization: Bearer <token>` or the
`kiosk_token` cookie that /login sets (HttpOnly, SameSite=Strict). Without a token the console
must bind to a loopback address (`check_binding`). Refusals are logged with client address, method
and path (never the token). POSTs from a page of another origin are refused (403).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiosk.config import ConsoleConfig
from kiosk.errors import ConfigError
from kiosk.service.camera import downscale
from kiosk.service.loop import KioskService, Overlay
from kiosk.service.state import Accept, Retake
from kiosk.store import StoreError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "kiosk_token"
MIN_TOKEN_CHARS = 16
BOUNDARY = "frame"
COMMAND_TIMEOUT_S = 30.0
REVIEW_WIDTH = 1280
GREEN, RED, AMBER = (40, 200, 40), (230, 50, 50), (255, 190, 0)


def check_binding(console: ConsoleConfig) -> None:
    """Refuse a console reachable from the network without a token, or with a guessable one."""
    if console.token and len(console.token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"console.token must have at least {MIN_TOKEN_CHARS} characters "
            "(e.g. `openssl rand -hex 16`)"
        )
    if not console.token and not _is_loopback(console.host):
        raise ConfigError(
            f"console.host = {console.host!r} exposes the console beyond this machine: set "
            "console.token (e.g. `openssl rand -hex 16`) or bind to 127.0.0.1"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before any route sees it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await _plain(413 if length.isdigit() else 400, "request body too large", send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await _plain(413, "request body too large", send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _plain(status: int, text: str, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


class PreviewEncoder:
    """Draws the overlay and encodes JPEG once per frame, whatever the number of viewers."""

    def __init__(self, quality: int = 80) -> None:
        self.quality = quality
        self._lock = threading.Lock()
        self._cached: tuple[int, bytes] | None = None

    def encode(self, index: int, image: np.ndarray, overlay: Overlay | None) -> bytes:
        with self._lock:
            if self._cached is not None and self._cached[0] == index:
                return self._cached[1]
        jpeg = _jpeg(draw_overlay(image, overlay), self.quality)
        with self._lock:
            self._cached = (index, jpeg)
        return jpeg


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("frame could not be encoded as JPEG")
    return encoded.tobytes()


def draw_overlay(image: np.ndarray, overlay: Overlay | None) -> np.ndarray:
    """Face boxes (green: every check passed, red: not) and the eye/mouth regions (amber)."""
    if overlay is None:
        return image
    canvas = image.copy()
    thickness = max(2, round(image.shape[1] / 320))
    colour = GREEN if overlay.passing else RED
    for x0, y0, x1, y1 in overlay.faces:
        cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), colour, thickness)
    for _, (x0, y0, x1, y1) in overlay.regions:
        cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), AMBER, 1)
    return canvas


def create_app(service: KioskService, console: ConsoleConfig) -> Starlette:
    """The console for a started (or about to be started) service."""
    encoder = PreviewEncoder()
    token = console.token

    def authorized(request: Request) -> bool:
        if not token:
            return True
        header = request.headers.get("authorization", "")
        offered = header[7:] if header.lower().startswith("bearer ") else ""
        offered = offered or request.cookies.get(COOKIE, "")
        return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())

    def require_token(request: Request) -> None:
        if not authorized(request):
            client = request.client.host if request.client else "?"
            log.warning(
                "401: %s %s from %s without a valid token", request.method, request.url.path, client
            )
            raise HTTPException(401, "operator token required (Authorization: Bearer, or /login)")

    def same_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
            client = request.client.host if request.client else "?"
            log.warning(
                "403: %s %s from %s with origin %s",
                request.method,
                request.url.path,
                client,
                origin,
            )
            raise HTTPException(403, "cross-origin request refused")

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def state(request: Request) -> Response:
        snapshot = service.snapshot()
        snapshot["token_required"] = bool(token)
        snapshot["authorized"] = authorized(request)
        return JSONResponse(snapshot, headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        status, body = service.health()
        return JSONResponse(body, status_code=status)

    async def login(request: Request) -> Response:
        offered = request.query_params.get("token", "")
        if not token or not hmac.compare_digest(offered.encode(), token.encode()):
            client = request.client.host if request.client else "?"
            log.warning("401: login from %s with a wrong token", client)
            raise HTTPException(401, "wrong token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def command(request: Request, event: Accept | Retake | None) -> Response:
        require_token(request)
        same_origin(request)
        session = await _session_of(request)
        future = service.request(event, session)
        try:
            result = await anyio.to_thread.run_sync(lambda: future.result(COMMAND_TIMEOUT_S))
        except TimeoutError:
            raise HTTPException(503, "the service loop did not answer; try again") from None
        return JSONResponse(result, status_code=200 if result["accepted"] else 409)

    async def accept(request: Request) -> Response:
        return await command(request, Accept())

    async def retake(request: Request) -> Response:
        return await command(request, Retake())

    async def reload(request: Request) -> Response:
        return await command(request, None)

    async def captures(request: Request) -> Response:
        require_token(request)
        limit_text = request.query_params.get("limit", "100")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise HTTPException(400, "limit must be a whole number from 1 to 1000")
        store = _store(service)
        records = await anyio.to_thread.run_sync(store.list, int(limit_text))
        return JSONResponse({"captures": records})

    async def capture_image(request: Request) -> Response:
        require_token(request)
        store = _store(service)
        try:
            jpeg = await anyio.to_thread.run_sync(
                store.load_image, request.path_params["capture_id"]
            )
        except StoreError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def review_still(request: Request) -> Response:
        require_token(request)
        review = service.review_image()
        if review is None:
            raise HTTPException(404, "no photo under review")
        jpeg = await anyio.to_thread.run_sync(_jpeg, downscale(review[1], REVIEW_WIDTH), 90)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def preview(request: Request) -> Response:
        require_token(request)
        period = 1.0 / console.preview_fps

        async def parts() -> AsyncIterator[bytes]:
            last = -1
            while not service.stopped:
                started = time.monotonic()
                got = await anyio.to_thread.run_sync(service.wait_preview, last, 1.0)
                if got is None:
                    continue
                frame, overlay = got
                last = frame.index
                jpeg = await anyio.to_thread.run_sync(
                    encoder.encode, frame.index, frame.image, overlay
                )
                yield (
                    (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                        f"X-Frame-Index: {frame.index}\r\nX-Grabbed: {frame.grabbed:.6f}\r\n\r\n"
                    ).encode()
                    + jpeg
                    + b"\r\n"
                )
                await anyio.sleep(max(0.0, period - (time.monotonic() - started)))

        return StreamingResponse(
            parts(),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

    routes = [
        Route("/", index),
        Route("/api/state", state),
        Route("/health", health),
        Route("/login", login),
        Route("/preview.mjpg", preview),
        Route("/api/review.jpg", review_still),
        Route("/api/accept", accept, methods=["POST"]),
        Route("/api/retake", retake, methods=["POST"]),
        Route("/api/reload", reload, methods=["POST"]),
        Route("/api/captures", captures),
        Route("/api/captures/{capture_id}", capture_image),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _json_error})
    app.add_middleware(BodyLimit, limit=console.max_body_bytes)
    return app


async def _session_of(request: Request) -> int | None:
    """The optional `{"session": n}` body: the photo the operator saw (a stale click is refused)."""
    body = await request.body()
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, "request body is not valid JSON") from None
    if not isinstance(data, dict) or set(data) - {"session"}:
        raise HTTPException(422, 'body must be {"session": <number>} or empty')
    session = data.get("session")
    if session is not None and (not isinstance(session, int) or isinstance(session, bool)):
        raise HTTPException(422, "session must be a whole number")
    return session


def _store(service: KioskService) -> Any:
    if service.store is None:
        raise HTTPException(503, f"capture store unavailable: {service.store_error}")
    return service.store


async def _json_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
