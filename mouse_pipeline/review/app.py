"""The review web app (Starlette): its routes, the token gate, and what each route may reach.

Every request needs the session's token (:class:`TokenGate`): in the URL's ``token``
query on first load (answered with a cookie and a redirect to the bare URL), then the
cookie; writes (``POST``) need it in the ``X-Review-Token`` header as well, which a page
of another site cannot set. Without it: 403.

Nothing from a request becomes a path. Videos are addressed by id and looked up in the
dictionary of the session's videos, built at start; static files by name in a
dictionary of the package's files, read at start; frame numbers must be decimal digits
inside the video. Anything else is 404, whatever ``../``, ``%2e%2e%2f``, absolute path or
symbolic link it holds. Writes go only through :class:`~.store.LabelStore`, into the
labels folder.

Routes::

    GET  /                                  the page
    GET  /static/<name>                     app.js, app.css
    GET  /api/session                       videos, behaviours, queue, whether writable
    GET  /api/videos/<id>                   predictions, annotations, current labels, version
    GET  /api/videos/<id>/frames/<i>        frame i as JPEG (cropped as the run crops)
    POST /api/videos/<id>/labels            {"version", "edits"} -> the new labels; 409 stale
    POST /api/videos/<id>/export/boris      write boris/<id>.tsv into the labels folder
"""

from __future__ import annotations

import html
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import InputError, LockError
from .frames import FramePool
from .sources import ReviewVideo
from .store import EditError, LabelStore, ReadOnly, StaleEdit, runs

log = logging.getLogger(__name__)

COOKIE = "mp_review"
HEADER = "x-review-token"
MAX_BODY = 8 << 20  # bytes of one save
STATIC = {"app.js": "application/javascript", "app.css": "text/css"}
_FRAME = re.compile(r"\d{1,9}")


@dataclass
class Session:
    """What one review server serves: its videos, frames, labels, queue and token."""

    videos: dict[str, ReviewVideo]
    frames: FramePool
    store: LabelStore
    queue: list[dict[str, Any]] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    user: str = ""


class TokenGate:
    """ASGI middleware: 403 unless the request carries the session token (module docstring)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    def _ok(self, value: str | None) -> bool:
        return value is not None and secrets.compare_digest(value.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get(HEADER)
        cookie = _cookie(request.headers.get("cookie", ""))
        query = request.query_params.get("token")
        if scope["method"] == "POST":
            allowed = self._ok(header) and (self._ok(cookie) or self._ok(query))
        else:
            allowed = self._ok(cookie) or self._ok(header) or self._ok(query)
        if not allowed:
            await PlainTextResponse("forbidden: open the URL review printed (it holds the token)",
                                    status_code=403)(scope, receive, send)
            return
        if scope["method"] == "GET" and self._ok(query) and scope["path"] == "/":
            response = RedirectResponse("/", status_code=303)  # the token leaves the address bar
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _cookie(header: str) -> str | None:
    try:
        morsel = SimpleCookie(header).get(COOKIE)
    except Exception:  # a malformed Cookie header is no token
        return None
    return morsel.value if morsel is not None else None


def _static_files() -> dict[str, bytes]:
    root = resources.files("mouse_pipeline.review").joinpath("static")
    return {name: root.joinpath(name).read_bytes() for name in [*STATIC, "index.html"]}


def _not_found() -> Response:
    return PlainTextResponse("not found", status_code=404)


class _Endpoints:
    """The request handlers of one review session (:func:`create_app` routes them)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.files = _static_files()
        self.page = self.files["index.html"].decode().replace("{{TOKEN}}", html.escape(session.token))

    def video_of(self, request: Request) -> ReviewVideo | None:
        return self.session.videos.get(request.path_params["vid"])

    async def index(self, request: Request) -> Response:
        return Response(self.page, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return _not_found()
        return Response(self.files[name], media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    async def session_info(self, request: Request) -> Response:
        videos = [{"id": v.video_id, "file": v.path.name, "n_frames": v.n_frames, "fps": v.fps,
                   "predictions": v.predictions is not None,
                   "annotated": bool((v.annotations.matrix != -1).any())}
                  for v in self.session.videos.values()]
        return JSONResponse({"videos": videos, "behaviors": list(self.session.store.behaviors),
                             "queue": self.session.queue, "writable": self.session.store.writable,
                             "out": str(self.session.store.out) if self.session.store.out else None,
                             "user": self.session.user})

    def video_info(self, request: Request) -> Response:
        video = self.video_of(request)
        if video is None:
            return _not_found()
        behaviors = video.annotations.behaviors
        pred = None
        if video.predictions is not None:
            p = video.predictions
            probs = np.round(np.nan_to_num(p.probs, nan=0.0), 3)
            pred = {"probs": {b: probs[:, j].tolist() for j, b in enumerate(behaviors)},
                    "labels": {b: runs(p.binary[:, j]) for j, b in enumerate(behaviors)},
                    "thresholds": dict(zip(behaviors, p.thresholds, strict=True)), "source": p.source}
        original = {b: runs(video.annotations.matrix[:, j]) for j, b in enumerate(behaviors)}
        return JSONResponse({"id": video.video_id, "file": video.path.name, "fps": video.fps,
                             "n_frames": video.n_frames, "behaviors": list(behaviors),
                             "predictions": pred, "original": original,
                             "current": self.session.store.state(video.video_id)})

    def frame(self, request: Request) -> Response:
        video, index = self.video_of(request), request.path_params["index"]
        if video is None or not _FRAME.fullmatch(index) or int(index) >= video.n_frames:
            return _not_found()
        try:
            data = self.session.frames.jpeg(video.video_id, int(index))
        except InputError as err:
            log.warning("%s", err)
            return PlainTextResponse(str(err), status_code=500)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def save(self, request: Request) -> Response:
        video = self.video_of(request)
        if video is None:
            return _not_found()
        body = await _json_body(request)
        if body is None:
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        try:
            state = await run_in_threadpool(self.session.store.save, video.video_id, str(body.get("version")),
                                            body.get("edits"))
        except (StaleEdit, LockError) as err:  # LockError: another server is saving this video
            return JSONResponse({"error": str(err)}, status_code=409)
        except (ReadOnly, InputError) as err:  # InputError: a symbolic link where the file goes
            return JSONResponse({"error": str(err)}, status_code=403)
        except EditError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        log.info("%s: saved (%s)", video.video_id, state["version"][:12])
        return JSONResponse(state)

    def export_boris(self, request: Request) -> Response:
        video = self.video_of(request)
        if video is None:
            return _not_found()
        try:
            path = self.session.store.export_boris(video.video_id)
        except LockError as err:  # another server is saving this video
            return JSONResponse({"error": str(err)}, status_code=409)
        except (ReadOnly, InputError) as err:
            return JSONResponse({"error": str(err)}, status_code=403)
        return JSONResponse({"path": str(path)})


def create_app(session: Session) -> ASGIApp:
    """The ASGI app of one review session, behind its token gate."""
    e = _Endpoints(session)
    routes = [
        Route("/", e.index, methods=["GET"]),
        Route("/static/{name}", e.static, methods=["GET"]),
        Route("/api/session", e.session_info, methods=["GET"]),
        Route("/api/videos/{vid}", e.video_info, methods=["GET"]),
        Route("/api/videos/{vid}/frames/{index}", e.frame, methods=["GET"]),
        Route("/api/videos/{vid}/labels", e.save, methods=["POST"]),
        Route("/api/videos/{vid}/export/boris", e.export_boris, methods=["POST"]),
    ]
    return TokenGate(Starlette(routes=routes), session.token)


async def _json_body(request: Request) -> dict | None:
    size = request.headers.get("content-length")
    if size is None or not size.isdigit() or int(size) > MAX_BODY:
        return None
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
