"""The installer's web page: a Starlette app that is a client of the door's control socket.

Pages are static HTML that fetch JSON from ``/api/...``; the live view is server-sent events. The
app never opens a device, the device key or the state directory: everything goes through the
control socket, which authorises this process by its user (see docs/web.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from importlib import resources
from typing import Callable
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse,
                                 Response, StreamingResponse)
from starlette.routing import Route

from daemon.config import Config, is_loopback
from daemon.challenge.enrol import DIGIT_FILE
from daemon.control.protocol import (MAX_DIGIT_FILE_BYTES, MAX_DIGIT_TAKES, MAX_FILE_BYTES, MAX_FILES,
                                     MAX_PAYLOAD_BYTES, ControlError)
from daemon.fuse.calibration import REPORT_KEYS
from daemon.inference.tflite import SHIPPED_CALIBRATION
from daemon.web.auth import LoginBackoff, Sessions, read_passwords, verify_password
from daemon.web.doorlink import DoorLink, LiveEnrolment

log = logging.getLogger(__name__)

COOKIE = "avid_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PAGES = {"/": "status.html", "/people": "people.html", "/lockout": "lockout.html",
          "/calibration": "calibration.html"}
#: Security headers on every response: no framing, no sniffing, scripts only from this origin.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send "Origin: null" on form posts and the Origin check fails.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _static(name: str) -> bytes:
    return resources.files("daemon.web").joinpath("static", name).read_bytes()


class WebApp:
    """The web page's state (sessions, backoff, door link) and its request handlers.

    :param config: the validated configuration (``web`` and ``control`` sections are used)
    :param clock: monotonic clock for sessions and the login backoff
    """

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic):
        self.config = config
        web = config.web
        self.sessions = Sessions(web.session_idle_minutes * 60, web.session_max_hours * 3600, clock)
        self.backoff = LoginBackoff(clock=clock)
        self.door = DoorLink(config.control.socket_path, web.poll_seconds)
        self.https = bool(web.tls_cert_file)
        self.allowed_hosts = {h.lower() for h in web.allowed_hosts} | {web.host.lower()}
        self._login_lock = asyncio.Lock()

    # --- guards -----------------------------------------------------------------------------------
    def host_allowed(self, request: Request) -> bool:
        """A Host header naming loopback, the bind address or an allowed name (no DNS rebinding)."""
        host = request.headers.get("host", "")
        name = urlsplit(f"//{host}").hostname or ""
        return is_loopback(name) or name.lower() in self.allowed_hosts

    def origin_ok(self, request: Request) -> bool:
        """A state-changing request must come from a page of this very origin."""
        origin = request.headers.get("origin")
        if not origin or origin == "null":
            return False
        scheme = "https" if self.https else "http"
        return origin == f"{scheme}://{request.headers.get('host', '')}"

    def user_of(self, request: Request) -> str | None:
        session = self.sessions.get(request.cookies.get(COOKIE))
        return session.user if session else None

    def audit(self, user: str, op: str, outcome: str, **fields) -> None:
        """One journal line per administrative act, naming the web user (never biometric data)."""
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(level, "web: user=%s op=%s%s outcome=%s", user, op, extra, outcome)

    # --- ASGI -------------------------------------------------------------------------------------
    def build(self) -> Starlette:
        """The Starlette application."""
        routes = [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/static/{name}", self.static, methods=["GET"]),
            *[Route(path, self.page, methods=["GET"]) for path in _PAGES],
            Route("/api/status", self.api_status, methods=["GET"]),
            Route("/api/events", self.api_events, methods=["GET"]),
            Route("/api/people", self.api_people, methods=["GET"]),
            Route("/api/people", self.api_enrol_files, methods=["POST"]),
            Route("/api/people/live", self.api_enrol_live, methods=["POST"]),
            Route("/api/people/{name}/delete", self.api_delete, methods=["POST"]),
            Route("/api/lockout", self.api_lockout, methods=["GET"]),
            Route("/api/lockout/clear", self.api_clear_lockout, methods=["POST"]),
            Route("/api/calibration", self.api_calibration, methods=["GET"]),
            Route("/api/det.png", self.api_det, methods=["GET"]),
        ]
        @contextlib.asynccontextmanager
        async def lifespan(app):
            yield
            await self.door.close()

        # The largest request is an upload the control socket would take, plus multipart framing.
        app = Starlette(routes=routes, lifespan=lifespan, max_body_size=MAX_PAYLOAD_BYTES + 2**20)
        return _Guard(app, self)

    # --- pages ------------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        return HTMLResponse(_static("login.html"))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        types = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in types:
            return PlainTextResponse("not found", 404)
        return Response(_static(name), media_type=types[name])

    async def page(self, request: Request) -> Response:
        if self.user_of(request) is None:
            return RedirectResponse("/login", 303)
        return HTMLResponse(_static(_PAGES[request.url.path]))

    async def login(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=4)
        user, password = str(form.get("user", "")), str(form.get("password", ""))
        client = request.client.host if request.client else "-"
        # One check at a time: parallel guesses must not slip through the backoff together.
        async with self._login_lock:
            wait = self.backoff.wait_seconds()
            if wait > 0:
                self.audit(user or "-", "login", "backoff", client=client)
                return PlainTextResponse(f"too many failed logins: try again in {wait:.0f} s", 429,
                                         headers={"Retry-After": str(int(wait) + 1)})
            users = await run_in_threadpool(read_passwords, self.config.web.password_file)
            stored = users.get(user)
            ok = await run_in_threadpool(verify_password, password, stored) if stored else False
            if not ok:
                self.backoff.failed()
                self.audit(user or "-", "login", "refused", client=client)
                return RedirectResponse("/login?failed=1", 303)
            self.backoff.succeeded()
        token = self.sessions.create(user)
        self.audit(user, "login", "ok", client=client)
        response = RedirectResponse("/", 303)
        # Secure is honoured on http://localhost too (a secure context), so it is always set.
        response.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="strict", path="/")
        return response

    async def logout(self, request: Request) -> Response:
        user = self.user_of(request)
        self.sessions.end(request.cookies.get(COOKIE))
        if user:
            self.audit(user, "logout", "ok")
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    # --- API: reading -----------------------------------------------------------------------------
    async def _ask(self, call: Callable, *args) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(call, *args))
        except ControlError as exc:
            return JSONResponse({"error": {"code": exc.code, "message": str(exc)}}, 502)

    async def api_status(self, request: Request) -> Response:
        return await self._ask(lambda: self.door.client().status())

    async def api_people(self, request: Request) -> Response:
        return await self._ask(lambda: {"people": self.door.client().list_people()})

    async def api_lockout(self, request: Request) -> Response:
        return await self._ask(lambda: self.door.client().lockout())

    async def api_events(self, request: Request) -> Response:
        queue = self.door.subscribe()
        token = request.cookies.get(COOKIE)

        async def stream():
            try:
                yield "retry: 2000\n\n"
                # An open page keeps its stream, but not past its session (logout, expiry).
                while self.sessions.alive(token):
                    try:
                        event, data = await asyncio.wait_for(queue.get(), timeout=15)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    # Only status fields and decision log fields: never images or embeddings.
                    yield f"event: {event}\ndata: {json.dumps(data, sort_keys=True)}\n\n"
            finally:
                self.door.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    async def api_calibration(self, request: Request) -> Response:
        def summary():
            try:
                door_status = self.door.client().status()
            except (ControlError, OSError):
                door_status = None  # the door is not running: the files are all there is
            return calibration_summary(self.config, door_status)
        return JSONResponse(await run_in_threadpool(summary))

    async def api_det(self, request: Request) -> Response:
        report = self.config.web.report_dir
        if report is None or not (report / "det.png").is_file():
            return PlainTextResponse("no evaluation report", 404)
        return FileResponse(report / "det.png", media_type="image/png")

    # --- API: acting (each audited) -------------------------------------------------------------
    async def _act(self, user: str, op: str, call: Callable, **fields) -> Response:
        try:
            result = await run_in_threadpool(call)
        except ControlError as exc:
            self.audit(user, op, exc.code, **fields)
            return JSONResponse({"error": {"code": exc.code, "message": str(exc)}},
                                400 if exc.code in ("refused", "bad_request", "too_large") else 502)
        self.audit(user, op, "ok", **fields)
        return JSONResponse(result if isinstance(result, dict) else {"result": result})

    async def api_delete(self, request: Request) -> Response:
        name = request.path_params["name"]
        return await self._act(request.state.user, "delete",
                               lambda: {"deleted": self.door.client().delete(name)}, name=name)

    async def api_clear_lockout(self, request: Request) -> Response:
        def clear():
            self.door.client().clear_lockout()
            return {"cleared": True}
        return await self._act(request.state.user, "clear_lockout", clear)

    async def api_enrol_files(self, request: Request) -> Response:
        user = request.state.user
        form = await request.form(max_files=2 * MAX_FILES + 10 * MAX_DIGIT_TAKES, max_fields=4, max_part_size=1024)
        name = str(form.get("name", ""))
        try:
            contents = {kind: await _read_uploads(form.getlist(kind), kind, MAX_FILES, MAX_FILE_BYTES)
                        for kind in ("faces", "voices")}
            digits: dict[str, list[bytes]] = {}
            for upload in [u for u in form.getlist("digits") if hasattr(u, "read") and u.filename]:
                match = DIGIT_FILE.match(upload.filename)
                if not match:
                    raise _UploadRefused(f"{upload.filename}: a digit recording is named after its digit "
                                         "(7_1.wav)")
                digits.setdefault(match.group(1), []).append(upload)
            digits = {d: await _read_uploads(files, f"recordings of {d}", MAX_DIGIT_TAKES, MAX_DIGIT_FILE_BYTES)
                      for d, files in sorted(digits.items())}
        except _UploadRefused as exc:
            code = "too_large" if exc.too_large else "bad_request"
            self.audit(user, "enrol_files", code, name=name or "-")
            return JSONResponse({"error": {"code": code, "message": str(exc)}}, 400)
        finally:
            await form.close()
        return await self._act(user, "enrol_files", lambda: self.door.client().enrol_files(
            name, contents["faces"], contents["voices"], digits=digits), name=name or "-",
            faces=len(contents["faces"]), voices=len(contents["voices"]),
            **({"digits": sum(map(len, digits.values()))} if digits else {}))

    async def api_enrol_live(self, request: Request) -> Response:
        user = request.state.user
        try:
            body = await request.json()
            name, samples = str(body["name"]), int(body.get("samples", 1))
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": {"code": "bad_request", "message": "expected {name, samples}"}}, 400)
        enrolment = LiveEnrolment(self.config.control.socket_path)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def progress(event: dict) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("progress", event))

        async def work():
            try:
                # A challenge door refuses anyone without digit recordings: take them too.
                result = await asyncio.to_thread(enrolment.run, name, samples, progress,
                                                 self.config.prompt.challenge_on)
            except ControlError as exc:
                self.audit(user, "enrol_live", exc.code, name=name)
                await queue.put(("error", {"code": exc.code, "message": str(exc)}))
            else:
                self.audit(user, "enrol_live", "ok", name=name, samples=samples)
                await queue.put(("done", result))

        async def stream():
            task = asyncio.create_task(work())
            try:
                while True:
                    event, data = await queue.get()
                    yield f"event: {event}\ndata: {json.dumps(data, sort_keys=True)}\n\n"
                    if event in ("done", "error"):
                        break
            finally:
                # The page went away (or the stream ended): closing the connection makes the
                # daemon cancel a running enrolment and resume the door.
                enrolment.cancel()
                await asyncio.wait([task], timeout=10)

        return StreamingResponse(stream(), media_type="text/event-stream")


class _Guard:
    """Checks every request before the app sees it: Host, session, Origin (ASGI middleware)."""

    _OPEN = ("/login", "/static/")

    def __init__(self, app, web: WebApp):
        self.app, self.web = app, web

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        response = self.check(request)
        if response is not None:
            for key, value in _HEADERS.items():
                response.headers.setdefault(key, value)
            return await response(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k.lower().encode(), v.encode()) for k, v in _HEADERS.items()
                            if k.lower().encode() not in present]
                if self.web.https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def check(self, request: Request) -> Response | None:
        path, method = request.url.path, request.method
        if not self.web.host_allowed(request):
            return PlainTextResponse("unknown host", 421)
        if method not in _SAFE_METHODS and not self.web.origin_ok(request):
            user = self.web.user_of(request) or "-"
            self.web.audit(user, "request", "refused_origin", method=method, path=path,
                           origin=request.headers.get("origin", "-").replace(" ", "_"))
            return PlainTextResponse("cross-origin request refused", 403)
        if path.startswith(self._OPEN):
            return None
        user = self.web.user_of(request)
        if user is None:
            if path.startswith("/api/") or method not in _SAFE_METHODS:
                if method not in _SAFE_METHODS:
                    self.web.audit("-", "request", "refused_no_session", method=method, path=path)
                return JSONResponse({"error": {"code": "unauthorised", "message": "log in first"}}, 401)
            return RedirectResponse("/login", 303)
        request.scope.setdefault("state", {})["user"] = user
        return None


class _UploadRefused(ValueError):
    """An uploaded enrolment file breaks the page's limits (``too_large``) or naming."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


async def _read_uploads(uploads: list, kind: str, max_files: int, max_bytes: int) -> list[bytes]:
    """The bytes of a form field's uploaded files, within the control protocol's limits."""
    uploads = [u for u in uploads if hasattr(u, "read") and u.filename]
    if len(uploads) > max_files:
        raise _UploadRefused(f"at most {max_files} {kind}", too_large=True)
    contents = []
    for upload in uploads:
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise _UploadRefused(f"{upload.filename}: over {max_bytes // 1024} KiB", too_large=True)
        contents.append(data)
    return contents


#: The operating point and what its fit expected: the same report keys the door gives operators.
_CALIBRATION_KEYS = ("threshold", "margin", *REPORT_KEYS)


def calibration_summary(config: Config, door_status: dict | None = None) -> dict:
    """The operating point in use and, when configured, the evaluation report's headline figures.

    The running door says what it decides with (``door_status``, from the control socket): the
    installer's calibration lives in the state folder, which the web service may not read. Without
    a running door the files are read: the installer's, else the one shipped with the models."""
    decision = config.decision
    out = {"config": {"threshold": decision.threshold, "margin": decision.margin,
                      "face_weight": decision.face_weight, "voice_weight": decision.voice_weight,
                      "min_modality_llr": decision.min_modality_llr,
                      "missing_modality": decision.missing_modality},
           "calibration_file": str(config.calibration_path), "calibration": None, "report": None}
    point = (door_status or {}).get("operating_point")
    if isinstance(point, dict):
        out["calibration"] = {k: point.get(k) for k in _CALIBRATION_KEYS}
        out["calibration_file"] = point.get("calibration")
        out["calibration_note"] = "in use by the running door"
    else:
        path = config.calibration_path
        try:
            if not path.exists():
                path = SHIPPED_CALIBRATION
            data = json.loads(path.read_text(encoding="utf-8"))
            out["calibration"] = {k: data.get(k) for k in _CALIBRATION_KEYS}
            out["calibration_file"] = str(path)
            out["calibration_note"] = ("the door is not running; the calibration shipped with the models "
                                       "(no 'avid calibrate' yet)" if path == SHIPPED_CALIBRATION else
                                       "the door is not running; its calibration file")
        except (OSError, ValueError, AttributeError) as exc:
            out["calibration_note"] = (f"the door is not running and {path} is not readable by the web "
                                       f"service ({exc.__class__.__name__})")
    report = config.web.report_dir
    if report is not None:
        try:
            metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
            fused = metrics.get("fused", {})
            points = fused.get("fnmr_at_fmr") or {}
            out["report"] = {"fused_eer": fused.get("eer"),
                             "fnmr_at_fmr": {fmr: p.get("fnmr") for fmr, p in points.items() if isinstance(p, dict)},
                             "face_eer": metrics.get("face", {}).get("eer"),
                             "voice_eer": metrics.get("voice", {}).get("eer"),
                             "det": (report / "det.png").is_file()}
        except (OSError, ValueError, AttributeError) as exc:
            out["report_note"] = f"no usable report in {report} ({exc.__class__.__name__})"
    return out


def create_app(config: Config, clock: Callable[[], float] = time.monotonic):
    """The ASGI application of ``avid web`` for ``config`` (the integration point for servers/tests)."""
    return WebApp(config, clock).build()
