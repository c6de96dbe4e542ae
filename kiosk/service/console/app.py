"""The operator console: one Starlette app serving the page, its state, the preview and /health.

Routes (docs/service.md has the full table):

    GET  /                    the console page (static/index.html)
    GET  /api/state           JSON the page polls: prompt, state, verdict, forensics, camera
    GET  /api/messages        the applicant prompts per language (the page's language switch)
    GET  /preview.mjpg        live preview, multipart/x-mixed-replace JPEG, boxes drawn on it  [T]
    GET  /api/review.jpg      the full-resolution photo under review (downscaled to 1280 px)  [T]
    POST /api/accept          store the photo under review ({"session": n} optional)          [T]
    POST /api/retake          discard it ({"session": n, "reason": "..."} optional)           [T]
    POST /api/resume          after a retake: arm the next photo                              [T]
    POST /api/reload          reload the model bundle; a failing bundle is not swapped in     [T]
    GET  /api/captures        stored captures (metadata)                                      [T]
    GET  /api/captures/{id}   one stored capture, decrypted JPEG                              [T]
    GET  /login?token=...     starts an operator session (cookie) and redirects to /
                              (&operator=<name>: the name filed with the captures accepted)
    GET  /health              {"status", "models", "bundle", "camera", "state"}; 503: checks cannot run

[T]: needs the console token when one is configured — `Authorization: Bearer <token>` or the
`kiosk_session` cookie that /login sets (a random session id that expires server-side, never the
token; `Secure` when the console serves HTTPS) — unless `trust_loopback` lets the kiosk's own
screen (a request from 127.0.0.1/::1) in without one, so its sign-in survives browser restarts. Without a token the console must bind to a loopback address (the [console] rules of
kiosk/config.py).

Every request must name an allowed host (loopback names, the bind address, `allowed_hosts`) or
gets 400: a DNS-rebinding page reaches 127.0.0.1 under its own name, so this is what keeps it
out. POSTs whose Origin (or Referer) is not an allowed host on this port get 403. Wrong tokens
are counted per client address; past `max_token_failures` a minute the client gets 429.
Refusals are logged with client address, method and path (never the token), floods collapsed
(`kiosk.service.console.server.FloodFilter`). No HTTP answer carries a filesystem path.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
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

from kiosk.config import (
    LOOPBACK_NAMES,
    WILDCARD_HOSTS,
    ConsoleConfig,
    console_problem,
    is_loopback,
)
from kiosk.config import token_bits as token_bits  # moved to the schema; tests import it here
from kiosk.contract.errors import ConfigError
from kiosk.contract.reasons import LANGUAGE_NAMES, MESSAGES
from kiosk.runtime.cameras.base import downscale
from kiosk.service.loop import KioskService
from kiosk.service.overlay import Overlay
from kiosk.service.state import Accept, Resume, Retake
from kiosk.service.store import StoreError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "kiosk_session"
FAILURE_WINDOW_S = 60.0
MAX_SESSIONS = 64
BOUNDARY = "frame"
COMMAND_TIMEOUT_S = 30.0
REVIEW_WIDTH = 1280
GREEN, RED, AMBER, WHITE = (40, 200, 40), (230, 50, 50), (255, 190, 0), (255, 255, 255)
_LIMIT = re.compile(r"[0-9]{1,4}")
MAX_TEXT = 64  # case reference, retake reason, operator name
WAIT_S = 0.25  # a preview stream notices the service stopping within this
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<rect width="16" height="16" rx="3" fill="#0b5d1e"/><circle cx="8" cy="7" r="3" fill="#fff"/>'
    b'<rect x="3" y="11" width="10" height="3" rx="1.5" fill="#fff"/></svg>'
)
# An absolute path's directories ("/var/lib/kiosk/"), not preceded by a word or URL character.
_PATH_DIRS = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\"]+/)+")


def check_binding(console: ConsoleConfig) -> None:
    """Refuse console settings that expose it or would refuse its own operators: the schema's
    rule (kiosk.config.console_problem), which a ConsoleConfig already obeyed when it was built;
    bounds are the schema's fields."""
    if problem := console_problem(console):
        raise ConfigError(problem)


def allowed_names(console: ConsoleConfig) -> list[str]:
    """Host names (lower case, IPv6 without brackets) the console answers to."""
    names = {*LOOPBACK_NAMES, *(name.lower() for name in console.allowed_hosts)}
    if console.host not in WILDCARD_HOSTS:
        names.add(console.host.lower())
    return sorted(names)


class Sessions:
    """Operator sessions: random ids that expire server-side, so a copied or leftover cookie
    stops working and the token itself never sits in a browser. Runs on the event loop only."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._operators: dict[str, str] = {}  # the name given at /login, filed with captures

    def start(self, operator: str = "") -> str:
        now = time.monotonic()
        for sid in [sid for sid, until in self._expiry.items() if until <= now]:
            del self._expiry[sid]
            self._operators.pop(sid, None)
        while len(self._expiry) >= MAX_SESSIONS:
            self._operators.pop(self._expiry.popitem(last=False)[0], None)
        sid = secrets.token_urlsafe(32)
        self._expiry[sid] = now + self.lifetime_s
        if operator:
            self._operators[sid] = operator
        return sid

    def operator(self, sid: str) -> str:
        return self._operators.get(sid, "") if self.valid(sid) else ""

    def valid(self, sid: str) -> bool:
        until = self._expiry.get(sid)
        if until is None:
            return False
        if until <= time.monotonic():
            del self._expiry[sid]
            return False
        return True


class FailureLimiter:
    """Wrong tokens per client address over the last minute; past `limit` the client must wait
    until the oldest failure is a minute old (Retry-After), even with the right token."""

    MAX_CLIENTS = 1024

    def __init__(self, limit: int, window_s: float = FAILURE_WINDOW_S) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds this client must wait before its next try (0: it may try now)."""
        failures = self._failures.get(client)
        if not failures:
            return 0.0
        now = time.monotonic()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window_s - now

    def failed(self, client: str) -> None:
        failures = self._failures.setdefault(client, deque(maxlen=self.limit))
        failures.append(time.monotonic())
        self._failures.move_to_end(client)
        while len(self._failures) > self.MAX_CLIENTS:
            self._failures.popitem(last=False)


def redact_paths(value: Any) -> Any:
    """`value` with the directories of absolute paths in its strings replaced by "…/"."""
    if isinstance(value, str):
        return _PATH_DIRS.sub("…/", value)
    if isinstance(value, dict):
        return {key: redact_paths(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_paths(item) for item in value]
    return value


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
    """Face boxes (green: every check passed, red: not), the eye/mouth regions (amber) and the
    framing guide (white: the passport crop and the head oval)."""
    if overlay is None:
        return image
    canvas = image.copy()
    thickness = max(2, round(image.shape[1] / 320))
    colour = GREEN if overlay.passing else RED
    for x0, y0, x1, y1 in overlay.faces:
        cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), colour, thickness)
    for _, (x0, y0, x1, y1) in overlay.regions:
        cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), AMBER, 1)
    if overlay.guide is not None:  # where the passport photo will be cut, and the head to fill it
        guide = overlay.guide
        crop = np.array(guide.crop, np.float32).round().astype(np.int32)
        cv2.polylines(canvas, [crop], True, WHITE, thickness)
        centre = tuple(round(v) for v in guide.oval_centre)
        axes = tuple(max(1, round(v)) for v in guide.oval_axes)
        cv2.ellipse(canvas, centre, axes, guide.oval_angle_deg, 0, 360, WHITE, 1)
    return canvas


def create_app(service: KioskService, console: ConsoleConfig) -> Starlette:
    """The console for a started (or about to be started) service."""
    names = allowed_names(console)
    handlers = ConsoleHandlers(service, console, Gate(console, names))
    app = Starlette(routes=handlers.routes(), exception_handlers={HTTPException: _json_error})
    app.add_middleware(BodyLimit, limit=console.max_body_bytes)
    # Outermost: a request naming a foreign host (DNS rebinding) reaches nothing, not even /health.
    hosts = [f"[{name}]" if ":" in name else name for name in names]
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)
    app.state.console = console  # the server's connection limits (kiosk.service.console.server)
    app.state.closing = handlers.closing  # set by the server when it stops: streams end
    app.state.viewers = handlers.viewers  # open preview streams (tests: a page reconnected)
    return app


class Gate:
    """Who may do what: the token (bearer or session cookie), wrong-token limits, same origin."""

    def __init__(self, console: ConsoleConfig, names: list[str]) -> None:
        self.token, self.names = console.token, names
        self.trust_loopback = console.trust_loopback
        self.sessions = Sessions(console.session_s)
        self.failures = FailureLimiter(console.max_token_failures)

    def authorized(self, request: Request) -> bool:
        """A right bearer token or a live session; a wrong bearer token counts as a failure."""
        if not self.token or (self.trust_loopback and _from_loopback(request)):
            return True
        offered = _bearer(request)
        if not offered:
            return self.sessions.valid(request.cookies.get(COOKIE, ""))
        return self.check_token(request, offered)

    def check_token(self, request: Request, offered: str) -> bool:
        client = _client(request)
        wait = self.failures.retry_after(client)
        if wait > 0:
            log.warning("429: %s %s from %s after too many wrong tokens", *_where(request))
            raise HTTPException(
                429,
                f"too many wrong tokens; try again in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        if hmac.compare_digest(offered.encode(), self.token.encode()):
            return True
        self.failures.failed(client)
        log.warning("401: %s %s from %s with a wrong token", *_where(request))
        return False

    def require_token(self, request: Request) -> None:
        if not self.authorized(request):
            if not _bearer(request):  # (a wrong one was logged by check_token)
                log.warning("401: %s %s from %s without a valid token", *_where(request))
            raise HTTPException(401, "operator token required (Authorization: Bearer, or /login)")

    def same_origin(self, request: Request) -> None:
        """A browser names the page that sent a POST; it must be this console (an allowed name on
        the port the request came to), not the Host the request claims."""
        origin = request.headers.get("origin") or request.headers.get("referer")
        if origin is None or _origin_allowed(origin, request.headers.get("host", ""), self.names):
            return
        log.warning("403: %s %s from %s from a page of another origin", *_where(request))
        raise HTTPException(403, "cross-origin request refused")

    def operator(self, request: Request) -> str:
        """Who is deciding: the session's name, "token" for a bearer, "" on an open console."""
        if self.token and _bearer(request):
            return "token"
        return self.sessions.operator(request.cookies.get(COOKIE, ""))


class ConsoleHandlers:
    """One method per route, over one service; `routes()` lists them."""

    def __init__(self, service: KioskService, console: ConsoleConfig, gate: Gate) -> None:
        self.service, self.console, self.gate = service, console, gate
        self.encoder = PreviewEncoder()
        self.viewers = ViewerSlots(console.max_preview_viewers)
        self.closing = threading.Event()  # set by the server on shutdown: streams end at once

    def routes(self) -> list[Route | Mount]:
        return [
            Route("/", self.index),
            Route("/api/state", self.state),
            Route("/api/messages", self.messages),
            Route("/favicon.ico", self.favicon),
            Route("/health", self.health),
            Route("/login", self.login),
            Route("/preview.mjpg", self.preview),
            Route("/api/review.jpg", self.review_still),
            Route("/api/accept", self.accept, methods=["POST"]),
            Route("/api/retake", self.retake, methods=["POST"]),
            Route("/api/resume", self.resume, methods=["POST"]),
            Route("/api/reload", self.reload, methods=["POST"]),
            Route("/api/captures", self.captures),
            Route("/api/captures/{capture_id}", self.capture_image),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def state(self, request: Request) -> Response:
        snapshot = self.service.snapshot()
        snapshot["token_required"] = bool(self.gate.token)
        snapshot["authorized"] = self.gate.authorized(request)
        snapshot["operator"] = self.gate.operator(request)
        snapshot["console"] = {
            "language": self.console.language,
            "mirror_preview": self.console.mirror_preview,
            "countdown_sound": self.console.countdown_sound,
        }
        return JSONResponse(redact_paths(snapshot), headers={"Cache-Control": "no-store"})

    async def messages(self, request: Request) -> Response:
        return JSONResponse(
            {"default": self.console.language, "names": LANGUAGE_NAMES, "messages": MESSAGES},
            headers={"Cache-Control": "max-age=300"},
        )

    async def favicon(self, request: Request) -> Response:
        return Response(
            FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
        )

    async def health(self, request: Request) -> Response:
        status, body = self.service.health()
        return JSONResponse(redact_paths(body), status_code=status)

    async def login(self, request: Request) -> Response:
        offered = request.query_params.get("token", "")
        if not self.gate.token:
            raise HTTPException(404, "this console has no token: nothing to sign in to")
        if not offered or not self.gate.check_token(request, offered):
            raise HTTPException(401, "wrong token")
        operator = request.query_params.get("operator", "").strip()[:MAX_TEXT]
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            self.gate.sessions.start(operator),
            max_age=math.ceil(self.console.session_s),
            httponly=True,
            samesite="strict",
            secure=bool(self.console.ssl_certfile),
        )
        return response

    async def accept(self, request: Request) -> Response:
        return await self._command(request, Accept())

    async def retake(self, request: Request) -> Response:
        return await self._command(request, Retake())

    async def resume(self, request: Request) -> Response:
        return await self._command(request, Resume())

    async def reload(self, request: Request) -> Response:
        return await self._command(request, None)

    async def _command(self, request: Request, event: Accept | Retake | Resume | None) -> Response:
        self.gate.require_token(request)
        self.gate.same_origin(request)
        extra = {Accept: "case_ref", Retake: "reason"}.get(type(event))
        body = await _body_of(request, extra)
        office = None
        if isinstance(event, Accept):
            office = {"case_ref": body.get(extra, ""), "operator": self.gate.operator(request)}
        elif isinstance(event, Retake) and body.get(extra):
            event = Retake(reason=body[extra])
        future = self.service.request(event, body.get("session"), office)
        try:
            result = await anyio.to_thread.run_sync(lambda: future.result(COMMAND_TIMEOUT_S))
        except TimeoutError:
            raise HTTPException(503, "the service loop did not answer; try again") from None
        return JSONResponse(redact_paths(result), status_code=200 if result["accepted"] else 409)

    async def captures(self, request: Request) -> Response:
        self.gate.require_token(request)
        limit_text = request.query_params.get("limit", "100")
        if not _LIMIT.fullmatch(limit_text) or not 1 <= int(limit_text) <= 1000:
            raise HTTPException(400, "limit must be a whole number from 1 to 1000")
        store = _store(self.service)
        records = await anyio.to_thread.run_sync(store.list, int(limit_text))
        return JSONResponse(redact_paths({"captures": records}))

    async def capture_image(self, request: Request) -> Response:
        self.gate.require_token(request)
        store = _store(self.service)
        try:
            jpeg = await anyio.to_thread.run_sync(
                store.load_image, request.path_params["capture_id"]
            )
        except StoreError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def review_still(self, request: Request) -> Response:
        self.gate.require_token(request)
        review = self.service.review_image()
        if review is None:
            raise HTTPException(404, "no photo under review")
        jpeg = await anyio.to_thread.run_sync(_jpeg, downscale(review[1], REVIEW_WIDTH), 90)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def preview(self, request: Request) -> Response:
        self.gate.require_token(request)
        if not self.viewers.take():
            size = self.viewers.size
            log.warning("503: preview from %s: %d viewers already", _client(request), size)
            raise HTTPException(
                503, f"the preview has {size} viewers already; close one and reload"
            )
        return ViewerStream(
            self.viewers,
            self._parts(),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

    async def _parts(self) -> AsyncIterator[bytes]:
        """The MJPEG stream: each new preview frame, at most `preview_fps` a second."""
        period, last = 1.0 / self.console.preview_fps, -1
        while not self.service.stopped and not self.closing.is_set():
            started = time.monotonic()
            got = await anyio.to_thread.run_sync(self.service.wait_preview, last, WAIT_S)
            if got is None:
                continue
            frame, overlay = got
            last = frame.index
            jpeg = await anyio.to_thread.run_sync(
                self.encoder.encode, frame.index, frame.image, overlay
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


class ViewerSlots:
    """A cap on concurrent preview streams: each holds a connection and a worker thread."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._taken = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._taken >= self.size:
                return False
            self._taken += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._taken -= 1

    @property
    def taken(self) -> int:
        return self._taken


class ViewerStream(StreamingResponse):
    """A StreamingResponse that gives its viewer slot back however the stream ends."""

    def __init__(self, slots: ViewerSlots, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.release()


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else ""


def _from_loopback(request: Request) -> bool:
    """The request came from this machine (the socket's peer, not a header a proxy could set)."""
    return is_loopback(_client(request))


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _where(request: Request) -> tuple[str, str, str]:
    return request.method, request.url.path, _client(request)


def _origin_allowed(origin: str, host_header: str, names: Iterable[str]) -> bool:
    """Origin/Referer URL on an allowed name and on the port the request was sent to."""
    try:
        page, target = urlsplit(origin), urlsplit(f"//{host_header}")
        page_port = page.port or {"http": 80, "https": 443}.get(page.scheme)
        return (
            page.scheme in ("http", "https")
            and page.hostname in names
            and page_port == (target.port or 80)
        )
    except ValueError:  # a port that is not a number
        return False


async def _body_of(request: Request, extra: str | None = None) -> dict[str, Any]:
    """The optional `{"session": n}` body (the photo the operator saw: a stale click is
    refused), with Accept's `case_ref` or Retake's `reason` (short text) where `extra` names it."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # (bad JSON or UTF-8; nesting deeper than Python's stack)
        raise HTTPException(400, "request body is not valid JSON") from None
    allowed = {"session", extra} - {None}
    if not isinstance(data, dict) or set(data) - allowed:
        shown = ", ".join(f'"{key}"' for key in sorted(allowed))
        raise HTTPException(422, f"body must be an object with {shown} or empty")
    session = data.get("session")
    if session is not None and (not isinstance(session, int) or isinstance(session, bool)):
        raise HTTPException(422, "session must be a whole number")
    text = data.get(extra) if extra else None
    if text is not None and (not isinstance(text, str) or len(text) > MAX_TEXT):
        raise HTTPException(422, f"{extra} must be text of at most {MAX_TEXT} characters")
    if text is not None:
        data[extra] = text.strip()
    return data


def _store(service: KioskService) -> Any:
    if service.store is None:
        raise HTTPException(503, f"capture store unavailable: {service.store_error}")
    return service.store


async def _json_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse(
        {"error": redact_paths(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )
